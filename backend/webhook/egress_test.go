package webhook_test

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/taskgate/taskgate/backend/egress"
	"github.com/taskgate/taskgate/backend/webhook"
)

// TestSendRefusesDestination checks the URL check before any connection:
// a receiver on loopback is refused by the default policy, with a final
// DESTINATION_NOT_ALLOWED, and never reached.
func TestSendRefusesDestination(t *testing.T) {
	rc := newReceiver(t, answering(http.StatusNoContent))
	s := webhook.NewSender(webhook.SenderConfig{})
	for _, u := range []string{rc.URL, "http://localhost:1/", "http://[::ffff:127.0.0.1]:1/", "http://2130706433:1/"} {
		a := s.Send(context.Background(), testDelivery(u), webhook.Target{})
		if a.Error != webhook.ErrorDestinationNotAllowed || a.StatusCode != 0 {
			t.Errorf("attempt at %s = %+v, want %s", u, a, webhook.ErrorDestinationNotAllowed)
		}
		d := testDelivery(u)
		d.Attempts = []webhook.Attempt{a}
		if status, _ := webhook.DefaultPolicy().Next(d, time.Now(), nil); status != webhook.Failed {
			t.Errorf("after a refused attempt the delivery is %s, want failed without retry", status)
		}
	}
	select {
	case r := <-rc.Got:
		t.Fatalf("the receiver got %s %s", r.Method, r.Path)
	default:
	}
}

// TestSendChecksResolvedAddress checks the dial-time check: a name whose
// DNS answer is a refused address is refused on that address, and each
// connection is checked on its own answer, so an answer that changes
// (DNS rebinding) cannot slip through. The policy allows 127.0.0.2 (the
// "outside" receiver here) and refuses the rest of loopback.
func TestSendChecksResolvedAddress(t *testing.T) {
	lnOut, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Skip("no 127.0.0.2 on this machine:", err)
	}
	_, port, _ := net.SplitHostPort(lnOut.Addr().String())
	lnIn, err := net.Listen("tcp4", "127.0.0.1:"+port)
	if err != nil {
		t.Skip("port taken on 127.0.0.1:", err)
	}
	outside := newReceiverOn(t, lnOut, answering(http.StatusNoContent))
	inside := newReceiverOn(t, lnIn, answering(http.StatusNoContent))

	var answer atomic.Value
	answer.Store([4]byte{127, 0, 0, 2})
	dns := fakeDNS(t, func() [4]byte { return answer.Load().([4]byte) })
	s := webhook.NewSender(webhook.SenderConfig{
		Egress:   egress.New(egress.Config{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}),
		Resolver: dns,
	})
	url := "http://hooks.test:" + port + "/hook"
	if a := s.Send(context.Background(), testDelivery(url), webhook.Target{}); a.StatusCode != http.StatusNoContent {
		t.Fatalf("attempt while the name resolves outside = %+v, want 204", a)
	}
	receive(t, outside.Got)

	answer.Store([4]byte{127, 0, 0, 1})
	s.CloseIdleConnections()
	if a := s.Send(context.Background(), testDelivery(url), webhook.Target{}); a.Error != webhook.ErrorDestinationNotAllowed {
		t.Fatalf("attempt once the name resolves to loopback = %+v, want %s", a, webhook.ErrorDestinationNotAllowed)
	}
	select {
	case r := <-inside.Got:
		t.Fatalf("the inside receiver got %s %s", r.Method, r.Path)
	default:
	}
}

// fakeDNS serves A answers on loopback UDP for every name, the address
// answer returns at the time of the query, and returns a resolver that asks
// it alone.
func fakeDNS(t *testing.T, answer func() [4]byte) *net.Resolver {
	return fakeDNSMany(t, func() [][4]byte { return [][4]byte{answer()} })
}

// fakeDNSMany is fakeDNS answering several A records at once.
func fakeDNSMany(t *testing.T, answer func() [][4]byte) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			if q.Type == dnsmessage.TypeA {
				for _, a := range answer() {
					_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0},
						dnsmessage.AResource{A: a})
				}
			}
			msg, err := b.Finish()
			if err == nil {
				_, _ = pc.WriteTo(msg, from)
			}
		}
	}()
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp4", addr)
	}}
}

// TestSendMixedAnswerIsRetried checks a name with a refused address and an
// allowed one that does not answer: the attempt is a transport failure,
// retried, not a refused destination.
func TestSendMixedAnswerIsRetried(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Skip("no 127.0.0.2 on this machine:", err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	_ = ln.Close() // nothing listens there now: connection refused
	dns := fakeDNSMany(t, func() [][4]byte { return [][4]byte{{127, 0, 0, 1}, {127, 0, 0, 2}} })
	s := webhook.NewSender(webhook.SenderConfig{
		Egress:   egress.New(egress.Config{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}),
		Resolver: dns,
	})
	a := s.Send(context.Background(), testDelivery("http://hooks.test:"+port+"/hook"), webhook.Target{})
	if a.Error == webhook.ErrorDestinationNotAllowed || a.Error == "" {
		t.Fatalf("attempt = %+v, want a transport error (the allowed address refused the connection)", a)
	}
	d := testDelivery("http://hooks.test:" + port + "/hook")
	d.CreatedAt = time.Now()
	d.Attempts = []webhook.Attempt{a}
	if status, _ := webhook.DefaultPolicy().Next(d, time.Now(), nil); status != webhook.Pending {
		t.Errorf("after the attempt the delivery is %s, want pending (retried)", status)
	}
}
