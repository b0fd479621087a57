package webhook_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/egress"
	"github.com/taskgate/taskgate/backend/internal/clocktest"
)

// loopback is the egress policy of tests whose receivers listen on
// loopback (httptest servers).
var loopback = egress.New(egress.Config{AllowPrivate: []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
}})

// patience bounds every wait for a signal; tests never sleep.
const patience = 10 * time.Second

// receive returns the next value of ch, failing the test after patience.
func receive[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(patience):
		t.Fatal("no signal within", patience)
		panic("unreachable")
	}
}

// fakeClock is a clock that moves only when told.
type fakeClock = clocktest.Clock

func newFakeClock() *fakeClock {
	return clocktest.New(time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC))
}

// request is what a receiver got.
type request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	Remote string
}

// receiver is a loopback webhook receiver that reports every request on Got
// (dropping those past 1024 unread).
type receiver struct {
	*httptest.Server
	Got chan request
}

// newReceiver starts a receiver that the test closes. answer gives the
// status of each request (and may set headers); it may block on hold, which
// returns when the test ends or the sender goes away.
func newReceiver(t testing.TB, answer func(w http.ResponseWriter, r *http.Request, hold func()) int) *receiver {
	t.Helper()
	return newReceiverOn(t, nil, answer)
}

// newReceiverOn is newReceiver on the listener ln (nil: a new one on
// 127.0.0.1).
func newReceiverOn(t testing.TB, ln net.Listener, answer func(w http.ResponseWriter, r *http.Request, hold func()) int) *receiver {
	t.Helper()
	gate := make(chan struct{})
	rc := &receiver{Got: make(chan request, 1024)}
	rc.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices a sender going away only once the body is
		// consumed.
		body, _ := io.ReadAll(r.Body)
		select {
		case rc.Got <- request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, Remote: r.RemoteAddr}:
		default:
		}
		w.WriteHeader(answer(w, r, func() {
			select {
			case <-gate:
			case <-r.Context().Done():
			}
		}))
	}))
	if ln != nil {
		_ = rc.Listener.Close()
		rc.Listener = ln
	}
	rc.Start()
	t.Cleanup(rc.Close)
	// Cleanups run last-registered first: the gate opens before Close
	// waits for the handlers.
	t.Cleanup(func() { close(gate) })
	return rc
}

// answering returns an answer function that always gives status.
func answering(status int) func(http.ResponseWriter, *http.Request, func()) int {
	return func(http.ResponseWriter, *http.Request, func()) int { return status }
}

// held is an answer that holds every request until the test ends or the
// sender goes away.
func held(_ http.ResponseWriter, _ *http.Request, hold func()) int {
	hold()
	return http.StatusOK
}

func mustParseURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// closedURL returns the URL of a loopback port nobody listens on.
func closedURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr + "/hooks"
}

// forwardProxy is a loopback HTTP forward proxy for http:// URLs that
// reports the webhook-id of every request it forwards.
type forwardProxy struct {
	*httptest.Server
	Seen chan string
}

func newForwardProxy(t testing.TB) *forwardProxy {
	t.Helper()
	p := &forwardProxy{Seen: make(chan string, 1024)}
	upstream := &http.Transport{Proxy: nil}
	t.Cleanup(upstream.CloseIdleConnections)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.IsAbs() || r.URL.Scheme != "http" {
			http.Error(w, "forward proxy for http:// URLs only", http.StatusBadRequest)
			return
		}
		p.Seen <- r.Header.Get("webhook-id")
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.Header.Del("Proxy-Connection")
		resp, err := upstream.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(p.Close)
	return p
}
