package apierr

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// recorder records codes, as the usage counter's writer does.
type recorder struct {
	http.ResponseWriter
	code string
}

func (r *recorder) RecordErrorCode(code string) { r.code = code }

// wrapper is another handler's writer around the recorder.
type wrapper struct{ http.ResponseWriter }

func (w wrapper) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func TestWriteTellsTheRecorderThroughWrappers(t *testing.T) {
	rec := &recorder{ResponseWriter: httptest.NewRecorder()}
	Write(wrapper{wrapper{rec}}, TooManyRequests)
	if rec.code != "TOO_MANY_REQUESTS" {
		t.Fatalf("recorded %q, want TOO_MANY_REQUESTS", rec.code)
	}
	// No recorder anywhere: nothing to tell, no trouble.
	Write(wrapper{httptest.NewRecorder()}, NotFound)
}

func TestCleanPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/v3/tasks": true, "/v3/webhooks/deliveries/": true, "/": true,
		"/v3/../v3/tasks": false, "//v3/tasks": false, "/v3/./tasks": false, "/v3/tasks//": false, "": false,
	} {
		if got := CleanPath(p); got != want {
			t.Errorf("CleanPath(%q) = %v, want %v", p, got, want)
		}
	}
}
