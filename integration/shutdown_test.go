package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestShutdownEndsWaits stops the process (SIGTERM) while a sync call and
// a long poll wait on a task whose source never answers: both answer at
// once with the task as it stands, and the process exits without waiting
// out sync_timeout. A reload before that ends neither wait.
func TestShutdownEndsWaits(t *testing.T) {
	t.Parallel()
	src := newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		if f.hold(r) {
			answerJSON(w, http.StatusOK, `{"status":"late"}`)
		}
	})
	port := freePort(t)
	cfg := func(body string) config {
		return config{
			Global: fmt.Sprintf(`
taskgate {
	sync_timeout 60s
	account alpha {
		key key-alpha
	}
	task_type wait/slow {
		source %s/slow
	}
}`, src.url),
			Sites: taskSite(port) + "\n:" + fmt.Sprint(freePort(t)) + " {\n\trespond \"" + body + "\"\n}\n",
		}
	}
	s := startServer(t, cfg("one"))
	c := taskClient{s: s, port: port, auth: creds("alpha", "key-alpha")}

	rid := c.createAsync(t, "wait/slow", "t-poll", "g", `{}`)
	src.waitCalls(t, 1)
	// The waiting calls run in goroutines: they report errors through
	// their channel, not t.Fatal.
	client := &http.Client{Timeout: 60 * time.Second}
	// wrote gets one signal per call once its request is on the wire, so
	// that the SIGTERM below comes after both requests reached the server.
	wrote := make(chan struct{}, 2)
	call := func(method, url, body string) chan result {
		done := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest(method, url, strings.NewReader(body))
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				WroteRequest: func(httptrace.WroteRequestInfo) { wrote <- struct{}{} },
			}))
			req.Header = c.header(nil)
			resp, err := client.Do(req)
			if err != nil {
				done <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			done <- result{status: resp.StatusCode, body: b, err: err}
		}()
		return done
	}
	syncDone := call(http.MethodPost, c.url("/v3/tasks/sync/wait/slow"), createBody("t-sync", "g", `{}`))
	pollDone := call(http.MethodGet, c.url("/v3/tasks?wait=30&request_id="+rid), "")
	src.waitCalls(t, 2)

	// A reload lets the waits go on.
	if r := s.load(t, cfg("two")); r.status != http.StatusOK {
		t.Fatalf("reload: %d %s", r.status, r.body)
	}
	select {
	case r := <-syncDone:
		t.Fatalf("the reload ended the sync call: %d %s %v", r.status, r.body, r.err)
	case r := <-pollDone:
		t.Fatalf("the reload ended the long poll: %d %s %v", r.status, r.body, r.err)
	default:
	}

	for range 2 {
		select {
		case <-wrote:
		case <-time.After(10 * time.Second):
			t.Fatal("a waiting call was not sent within 10s")
		}
	}
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the process did not exit within 20s of SIGTERM")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("exit took %v after SIGTERM", took)
	}
	if r := <-syncDone; r.err != nil || r.status != http.StatusGatewayTimeout {
		t.Errorf("sync call answered %d %s %v, want 504 TIMEOUT", r.status, r.body, r.err)
	}
	if r := <-pollDone; r.err != nil || r.status != http.StatusOK {
		t.Errorf("long poll answered %d %s %v, want 200", r.status, r.body, r.err)
	}
}

// result is the answer to a call made in a goroutine.
type result struct {
	status int
	body   []byte
	err    error
}
