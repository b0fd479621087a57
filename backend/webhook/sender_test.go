package webhook_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/webhook"
)

func testDelivery(url string) *webhook.Delivery {
	return &webhook.Delivery{
		ID:        "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
		AccountID: "acme",
		RequestID: "8a3c6f0e-6a57-4a8e-9f43-5d2b1c0e7f11",
		URL:       url,
		Event:     webhook.EventTask,
		Body:      []byte(`{"request_id":"8a3c6f0e-6a57-4a8e-9f43-5d2b1c0e7f11","status":"completed"}`),
		Status:    webhook.Pending,
	}
}

func mustKey(t testing.TB, secret string) []byte {
	t.Helper()
	key, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestSendHeadersAndSignature(t *testing.T) {
	rc := newReceiver(t, answering(http.StatusNoContent))
	clock := newFakeClock()
	s := webhook.NewSender(webhook.SenderConfig{Egress: loopback, UserAgent: "taskgate/test", Clock: clock.Now})
	d := testDelivery(rc.URL + "/hooks?token=abc")
	a := s.Send(t.Context(), d, webhook.Target{Secret: mustKey(t, vectorSecret), Authorization: "Bearer s3cret"})
	if a.StatusCode != http.StatusNoContent || a.Error != "" || !a.At.Equal(clock.Now()) || a.DurationMS < 0 {
		t.Fatalf("attempt %+v", a)
	}
	got := receive(t, rc.Got)
	h := got.Header
	for k, want := range map[string]string{
		"Content-Type":      "application/json",
		"User-Agent":        "taskgate/test",
		"Authorization":     "Bearer s3cret",
		"webhook-id":        d.ID,
		"webhook-timestamp": strconv.FormatInt(clock.Now().Unix(), 10),
	} {
		if h.Get(k) != want {
			t.Errorf("%s: %q, want %q", k, h.Get(k), want)
		}
	}
	if got.Method != http.MethodPost || got.Path != "/hooks" || string(got.Body) != string(d.Body) {
		t.Errorf("received %s %s %s", got.Method, got.Path, got.Body)
	}
	if !verify(vectorSecret, h.Get("webhook-id"), h.Get("webhook-timestamp"), got.Body, h.Get("webhook-signature")) {
		t.Errorf("signature %q does not verify", h.Get("webhook-signature"))
	}
}

func TestSendUnsigned(t *testing.T) {
	rc := newReceiver(t, answering(http.StatusOK))
	s := webhook.NewSender(webhook.SenderConfig{Egress: loopback})
	if a := s.Send(t.Context(), testDelivery(rc.URL), webhook.Target{}); a.StatusCode != http.StatusOK || a.Error != "" {
		t.Fatalf("attempt %+v", a)
	}
	h := receive(t, rc.Got).Header
	if _, ok := h["Webhook-Signature"]; ok {
		t.Errorf("unsigned delivery has webhook-signature %q", h.Get("webhook-signature"))
	}
	if _, ok := h["Authorization"]; ok {
		t.Errorf("delivery without authorization has Authorization %q", h.Get("Authorization"))
	}
	if h.Get("User-Agent") != webhook.DefaultUserAgent || h.Get("webhook-id") == "" || h.Get("webhook-timestamp") == "" {
		t.Errorf("headers %v", h)
	}
}

func TestSendReportsStatuses(t *testing.T) {
	elsewhere := newReceiver(t, answering(http.StatusOK))
	tests := []struct {
		status int
		error  string
	}{
		{http.StatusOK, ""},
		{http.StatusAccepted, ""},
		{http.StatusInternalServerError, "500 Internal Server Error"},
		{http.StatusBadRequest, "400 Bad Request"},
		{http.StatusTooManyRequests, "429 Too Many Requests"},
		{599, "599"},
		{http.StatusFound, "302 Found (redirects are not followed)"},
		{http.StatusPermanentRedirect, "308 Permanent Redirect (redirects are not followed)"},
	}
	s := webhook.NewSender(webhook.SenderConfig{Egress: loopback})
	for _, tc := range tests {
		rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ func()) int {
			w.Header().Set("Location", elsewhere.URL+"/moved")
			return tc.status
		})
		a := s.Send(t.Context(), testDelivery(rc.URL), webhook.Target{})
		if a.StatusCode != tc.status || a.Error != tc.error {
			t.Errorf("%d: attempt %+v, want error %q", tc.status, a, tc.error)
		}
	}
	select {
	case r := <-elsewhere.Got:
		t.Errorf("a redirect was followed: %s %s", r.Method, r.Path)
	default:
	}
}

func TestSendTransportErrors(t *testing.T) {
	hung := newReceiver(t, held)
	s := webhook.NewSender(webhook.SenderConfig{Egress: loopback, Timeout: 100 * time.Millisecond})
	tests := []struct {
		url, error string
	}{
		{closedURL(t), "connection refused"},
		{hung.URL, "timeout after 100ms"},
		{"ftp://127.0.0.1/hooks", "unsupported URL scheme"},
		{"http://%zz/", "invalid webhook URL"},
		{"/relative", "invalid webhook URL"},
		{"http://receiver.invalid/hooks", "no such host"},
	}
	for _, tc := range tests {
		a := s.Send(t.Context(), testDelivery(tc.url), webhook.Target{})
		// Without a resolver to say NXDOMAIN, .invalid merely fails to
		// resolve.
		if tc.error == "no such host" && a.Error == "DNS lookup failed" {
			continue
		}
		if a.StatusCode != 0 || a.Error != tc.error {
			t.Errorf("%s: attempt %+v, want error %q", tc.url, a, tc.error)
		}
	}
}

func TestSendCanceled(t *testing.T) {
	started := make(chan struct{}, 1)
	hung := newReceiver(t, func(_ http.ResponseWriter, _ *http.Request, hold func()) int {
		started <- struct{}{}
		hold()
		return http.StatusOK
	})
	s := webhook.NewSender(webhook.SenderConfig{Egress: loopback})
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan webhook.Attempt, 1)
	go func() { got <- s.Send(ctx, testDelivery(hung.URL), webhook.Target{}) }()
	receive(t, started)
	cancel()
	if a := receive(t, got); a.StatusCode != 0 || a.Error != "canceled" {
		t.Fatalf("attempt %+v", a)
	}
}

// TestSendReadsBoundedAnswer checks that an answer that never ends does not
// hold the attempt: its status is taken and the rest dropped.
func TestSendReadsBoundedAnswer(t *testing.T) {
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat("x", 32<<10))
		for {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(rc.Close)
	s := webhook.NewSender(webhook.SenderConfig{Egress: loopback, Timeout: patience})
	if a := s.Send(t.Context(), testDelivery(rc.URL), webhook.Target{}); a.StatusCode != http.StatusOK || a.Error != "" {
		t.Fatalf("attempt %+v", a)
	}
}

func TestSendFromSourceIP(t *testing.T) {
	rc := newReceiver(t, answering(http.StatusOK))
	s := webhook.NewSender(webhook.SenderConfig{Egress: loopback, SourceIP: netip.MustParseAddr("127.0.0.2")})
	if a := s.Send(t.Context(), testDelivery(rc.URL), webhook.Target{}); a.StatusCode != http.StatusOK {
		t.Skipf("cannot send from 127.0.0.2 here: %+v", a)
	}
	host, _, _ := net.SplitHostPort(receive(t, rc.Got).Remote)
	if host != "127.0.0.2" {
		t.Fatalf("delivery came from %s, want 127.0.0.2", host)
	}
}

func TestSendThroughProxy(t *testing.T) {
	rc := newReceiver(t, answering(http.StatusOK))
	proxy := newForwardProxy(t)
	s := webhook.NewSender(webhook.SenderConfig{Egress: loopback, Proxy: mustParseURL(t, proxy.URL)})
	d := testDelivery(rc.URL)
	if a := s.Send(t.Context(), d, webhook.Target{}); a.StatusCode != http.StatusOK || a.Error != "" {
		t.Fatalf("attempt %+v", a)
	}
	if id := receive(t, proxy.Seen); id != d.ID {
		t.Fatalf("the proxy saw %q, want %q", id, d.ID)
	}
	receive(t, rc.Got)

	// A proxy that is down fails the attempt; it is not bypassed.
	s = webhook.NewSender(webhook.SenderConfig{Egress: loopback, Proxy: mustParseURL(t, closedURL(t))})
	if a := s.Send(t.Context(), d, webhook.Target{}); a.StatusCode != 0 || a.Error != "proxy: connection refused" {
		t.Fatalf("attempt through a closed proxy %+v", a)
	}
}

func TestSendReadsRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := webhook.NewSender(webhook.SenderConfig{Egress: loopback, Clock: func() time.Time { return now }})
	for _, tc := range []struct {
		status int
		header string
		want   int64
	}{
		{http.StatusTooManyRequests, "120", 120_000},
		{http.StatusServiceUnavailable, now.Add(90 * time.Second).Format(http.TimeFormat), 90_000},
		{http.StatusServiceUnavailable, "999999999", int64(24 * time.Hour / time.Millisecond)},
		{http.StatusTooManyRequests, "-5", 0},
		{http.StatusTooManyRequests, "soon", 0},
		{http.StatusTooManyRequests, now.Add(-time.Minute).Format(http.TimeFormat), 0},
		// Only "try later" answers are read.
		{http.StatusInternalServerError, "120", 0},
		{http.StatusOK, "120", 0},
	} {
		rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ func()) int {
			w.Header().Set("Retry-After", tc.header)
			return tc.status
		})
		if a := s.Send(t.Context(), testDelivery(rc.URL), webhook.Target{}); a.RetryAfterMS != tc.want {
			t.Errorf("%d Retry-After %q: %d ms, want %d", tc.status, tc.header, a.RetryAfterMS, tc.want)
		}
	}
}
