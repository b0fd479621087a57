package source_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/source"
)

// benchRequest is a typical task: a PAN check.
var benchRequest = source.Request{
	RequestID: "8a3c6f0e-6a57-4a8e-9f43-5d2b1c0e7f11",
	TaskID:    "task-1",
	GroupID:   "group-1",
	Action:    "verify_with_source",
	Type:      "ind_pan",
	Data:      json.RawMessage(`{"id_number":"ABCDE1234F","name":"Ravi Kumar","dob":"1990-01-01"}`),
}

// benchAnswer is a typical source answer.
const benchAnswer = `{"status":"id_found","name_match":true,"name_on_card":"RAVI KUMAR","pan_status":"Existing and Valid"}`

// fastSource starts a loopback source that answers at once.
func fastSource(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, benchAnswer)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func call(b *testing.B, c *source.Client, url string) {
	if out := c.Call(b.Context(), url, 10*time.Second, benchRequest); out.Kind != source.Completed {
		b.Fatalf("outcome %v %q", out.Kind, out.Message)
	}
}

// BenchmarkCall measures one call to a fast local source from one
// goroutine, loopback HTTP round trip included.
func BenchmarkCall(b *testing.B) {
	srv := fastSource(b)
	c := source.NewClient(source.ClientConfig{})
	b.Cleanup(c.CloseIdleConnections)
	b.ReportAllocs()
	for b.Loop() {
		call(b, c, srv.URL)
	}
}

// BenchmarkCallParallel measures calls from about 32 goroutines sharing one
// source, as the workers of a task type with concurrency 32 do.
func BenchmarkCallParallel(b *testing.B) {
	srv := fastSource(b)
	c := source.NewClient(source.ClientConfig{})
	b.Cleanup(c.CloseIdleConnections)
	b.ReportAllocs()
	b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			call(b, c, srv.URL)
		}
	})
}
