package tasktest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/egress"
	"github.com/taskgate/taskgate/backend/webhook"
)

// DispatchRetries is the body of a store's benchmark of the dispatcher
// under retries: backlog deliveries spread over urls receiver URLs (one
// loopback server that answers 503 at once) are due, and a dispatcher with
// its defaults (64 workers, 4 per URL) retries them under a policy of 1 to
// 2 ms, recording every attempt in s. Each op is one attempt. It reports
// attempts/s: with urls > 4 the per-URL cap does not bind, and what is
// left is the store's claims and records.
func DispatchRetries(b *testing.B, s Store, urls, backlog int) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	for i := range urls {
		storeBacklog(b, s, fmt.Sprintf("%s/hooks/%d", srv.URL, i), backlog/urls, base)
	}
	// The deliveries are due at base: the dispatcher's clock runs from
	// an hour after it.
	offset := base.Add(time.Hour).Sub(time.Now())
	var attempts atomic.Int64
	var once sync.Once
	enough := make(chan struct{})
	want := int64(b.N)
	d := webhook.NewDispatcher(webhook.DispatcherConfig{
		Store: s,
		Sender: webhook.NewSender(webhook.SenderConfig{
			Egress:  egress.New(egress.Config{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}),
			Timeout: 5 * time.Second,
		}),
		Resolve: func(*webhook.Delivery) (webhook.Target, string, bool) { return webhook.Target{}, "", true },
		Policy:  webhook.Policy{First: time.Millisecond, Max: 2 * time.Millisecond, GiveUp: 100 * 24 * time.Hour},
		Clock:   func() time.Time { return time.Now().Add(offset) },
		OnAttempt: func(*webhook.Delivery, webhook.Attempt) {
			if attempts.Add(1) >= want {
				once.Do(func() { close(enough) })
			}
		},
	})
	ctx, cancel := context.WithCancel(b.Context())
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	wg.Go(func() { d.Run(ctx) })
	select {
	case <-enough:
	case <-time.After(5 * time.Minute):
		b.Errorf("%d attempts of %d after 5 minutes", attempts.Load(), want)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	wg.Wait()
	b.ReportMetric(float64(attempts.Load())/elapsed.Seconds(), "attempts/s")
}
