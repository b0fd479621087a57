package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/taskgate/taskgate/backend/clock"
	"github.com/taskgate/taskgate/backend/egress"
)

// Target is how to send a delivery to its webhook as configured now.
type Target struct {
	// Secret is the HMAC key of the webhook-signature (ParseSecret); nil
	// sends the delivery unsigned.
	Secret []byte
	// PreviousSecret, when set, signs too, after Secret: during a secret
	// rotation the receiver may check either ("v1,<new> v1,<old>", as
	// Standard Webhooks allows several signatures).
	PreviousSecret []byte
	// Disabled, with a Resolver's false, tells that the webhook is there
	// but disabled: the attempt fails with ErrorDisabled.
	Disabled bool
	// Authorization, when set, is sent verbatim as the Authorization
	// header.
	Authorization string
}

// SenderConfig configure a Sender. The zero value is usable.
type SenderConfig struct {
	// Proxy, when set, is the HTTP proxy every delivery goes through, so
	// receivers can allowlist its address. Without it deliveries go
	// direct: proxy environment variables are ignored.
	Proxy *url.URL
	// SourceIP, when valid, is the local address connections are made
	// from (to the receiver, or to Proxy). A receiver of the other address
	// family cannot be reached.
	SourceIP netip.Addr
	// UserAgent is sent with every delivery. Default DefaultUserAgent.
	UserAgent string
	// Timeout bounds each attempt, from dialing to reading the answer.
	// Default DefaultTimeout.
	Timeout time.Duration
	// Clock tells the time of attempts and of webhook-timestamp. Default
	// time.Now.
	Clock clock.Clock
	// Egress decides which receivers may be reached: checked on the URL
	// before each attempt and, without a Proxy, on every address
	// connected to. Default: egress.New(egress.Config{}), which refuses
	// every loopback, private and other special-purpose address.
	Egress *egress.Policy
	// Resolver resolves receivers' names. Default: the system's.
	Resolver *net.Resolver
	// Logger is told, at warn level, of each attempt refused by Egress
	// with the address and range (which the attempt's record does not
	// show the account). Default: no logs.
	Logger *zap.Logger
}

// ErrorDestinationNotAllowed is the error of an attempt whose receiver the
// egress policy refuses (a loopback, private or other special-purpose
// address, or the admin endpoint). It is final: the attempt is not retried.
const ErrorDestinationNotAllowed = "DESTINATION_NOT_ALLOWED"

// DefaultUserAgent is the User-Agent of deliveries unless configured.
const DefaultUserAgent = "taskgate-webhooks"

// maxAnswerBytes is how much of a receiver's answer is read: enough to keep
// the connection of a usual answer for reuse, and a bound on what a hostile
// receiver can make us read. The answer's content is never used.
const maxAnswerBytes = 64 << 10

// Sender makes delivery attempts over HTTP. One per process (or per config);
// safe for concurrent use.
type Sender struct {
	client    *http.Client
	userAgent string
	timeout   time.Duration
	clock     clock.Clock
	egress    *egress.Policy
	logger    *zap.Logger
}

// NewSender returns a sender with the options.
func NewSender(opts SenderConfig) *Sender {
	s := &Sender{userAgent: opts.UserAgent, timeout: opts.Timeout, clock: opts.Clock, egress: opts.Egress, logger: opts.Logger}
	if s.userAgent == "" {
		s.userAgent = DefaultUserAgent
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.egress == nil {
		s.egress = egress.New(egress.Config{})
	}
	if s.logger == nil {
		s.logger = zap.NewNop()
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Resolver: opts.Resolver}
	if opts.Proxy == nil {
		// Checked on the address connected to, after name resolution: a
		// name that resolves inward, or whose answer changed since the URL
		// was checked, is refused all the same. Through a proxy the only
		// address dialed is the proxy's, which is the operator's: the
		// proxy resolves receivers' names and is where its own egress rules
		// belong.
		dialer.ControlContext = s.control
	}
	if opts.SourceIP.IsValid() {
		dialer.LocalAddr = &net.TCPAddr{IP: opts.SourceIP.AsSlice(), Zone: opts.SourceIP.Zone()}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = dialer.DialContext
	// Receivers are the accounts' own URLs: an HTTP_PROXY set for something
	// else must not reroute them, nor let them bypass the egress proxy.
	t.Proxy = nil
	if opts.Proxy != nil {
		t.Proxy = http.ProxyURL(opts.Proxy)
	}
	t.MaxIdleConns = 1024
	// Through a proxy every plain-HTTP delivery shares the proxy's pool, so
	// keep enough for the dispatcher's default concurrency.
	t.MaxIdleConnsPerHost = 64
	t.MaxResponseHeaderBytes = maxAnswerBytes
	// The answer is read only to be thrown away.
	t.DisableCompression = true
	s.client = &http.Client{
		Transport: t,
		// A 3xx is the receiver's answer, and a final failure: following it
		// would POST the delivery to a URL nobody configured.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

// Timeout returns the bound of one attempt.
func (s *Sender) Timeout() time.Duration { return s.timeout }

// Send makes one attempt at d: it POSTs d.Body to d.URL with the Standard
// Webhooks headers, signed and authorized as target says, reads at most
// 64 KiB of the answer and reports the outcome. The attempt is bounded by
// the sender's timeout and by ctx; when ctx ends first, Error is "canceled"
// unless the receiver had already answered.
func (s *Sender) Send(ctx context.Context, d *Delivery, target Target) Attempt {
	at := s.clock()
	start := time.Now()
	a := s.exchange(ctx, d, target, at)
	a.At = at
	a.DurationMS = time.Since(start).Milliseconds()
	return a
}

func (s *Sender) exchange(ctx context.Context, d *Delivery, target Target, at time.Time) Attempt {
	callCtx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tried := new(dialTrack)
	req, err := http.NewRequestWithContext(context.WithValue(callCtx, dialTrackKey{}, tried), http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil || req.URL.Host == "" {
		return Attempt{Error: "invalid webhook URL"}
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return Attempt{Error: "unsupported URL scheme"}
	}
	// A URL stored before the policy changed (or before it existed) is
	// refused here, before any connection.
	if err := s.egress.CheckParsedURL(req.URL); err != nil {
		return s.refused(d, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.userAgent)
	req.Header.Set("webhook-id", d.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	if target.Secret != nil {
		sig := Sign(target.Secret, d.ID, at, d.Body)
		if target.PreviousSecret != nil {
			sig += " " + Sign(target.PreviousSecret, d.ID, at, d.Body)
		}
		req.Header.Set("webhook-signature", sig)
	}
	if target.Authorization != "" {
		req.Header.Set("Authorization", target.Authorization)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// Refused only when no address was allowed: a name with an allowed
		// address that failed for now is a transport error, retried.
		if errors.Is(err, egress.ErrNotAllowed) && !tried.allowed.Load() {
			return s.refused(d, err)
		}
		return Attempt{Error: s.describe(ctx, callCtx, err)}
	}
	// The status is the answer; the body is read only so the connection
	// can be reused, and a receiver that stalls it changes nothing.
	_, _ = io.CopyN(io.Discard, resp.Body, maxAnswerBytes)
	_ = resp.Body.Close()
	a := Attempt{StatusCode: resp.StatusCode, Error: statusError(resp.StatusCode)}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		a.RetryAfterMS = retryAfter(resp.Header.Get("Retry-After"), s.clock()).Milliseconds()
	}
	return a
}

// dialTrack records, for one attempt, whether the dialer was allowed to
// connect to any address (a name may resolve to several).
type dialTrack struct{ allowed atomic.Bool }

// dialTrackKey carries an attempt's dialTrack in its context.
type dialTrackKey struct{}

// control is the dialer's check of every address connected to: the egress
// policy's, noting in the attempt's dialTrack an address it allowed.
func (s *Sender) control(ctx context.Context, network, address string, c syscall.RawConn) error {
	err := s.egress.Control(network, address, c)
	if tr, ok := ctx.Value(dialTrackKey{}).(*dialTrack); ok && err == nil {
		tr.allowed.Store(true)
	}
	return err
}

// refused is the attempt of a delivery whose receiver the egress policy
// refuses. The record says only DESTINATION_NOT_ALLOWED: the address a
// name resolved to is the operator's to see, in the log.
func (s *Sender) refused(d *Delivery, err error) Attempt {
	reason := err.Error()
	var e *egress.Error
	if errors.As(err, &e) {
		reason = e.Error()
	}
	s.logger.Warn("webhook destination not allowed; the delivery fails without retry (webhooks { allow_private } opens a range)",
		zap.String("delivery_id", d.ID),
		zap.String("account_id", d.AccountID),
		zap.String("webhook_host", urlHost(d.URL)),
		zap.String("reason", reason))
	return Attempt{Error: ErrorDestinationNotAllowed}
}

// maxRetryAfter bounds what a receiver may ask for; the policy's own
// maximum delay bounds it further.
const maxRetryAfter = 24 * time.Hour

// retryAfter reads a Retry-After value: seconds, or an HTTP date. Anything
// else, or a time past, is 0.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		d = time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return max(0, min(d, maxRetryAfter))
}

// statusError says what is wrong with an answer's status, or nothing for a
// 2xx.
func statusError(code int) string {
	if code >= 200 && code < 300 {
		return ""
	}
	text := strconv.Itoa(code)
	if t := http.StatusText(code); t != "" {
		text += " " + t
	}
	if code >= 300 && code < 400 {
		text += " (redirects are not followed)"
	}
	return text
}

// describe turns a transport error into the short text of an attempt. It
// does not repeat the error itself, which may name resolved addresses the
// account's client has no business seeing.
func (s *Sender) describe(ctx, callCtx context.Context, err error) string {
	if ctx.Err() != nil {
		return "canceled"
	}
	var prefix string
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "proxyconnect" {
		prefix = "proxy: "
	}
	var dnsErr *net.DNSError
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(callCtx.Err(), context.DeadlineExceeded):
		return prefix + "timeout after " + s.timeout.String()
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return prefix + "no such host"
		}
		return prefix + "DNS lookup failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return prefix + "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return prefix + "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return prefix + "no route to host"
	case errors.Is(err, syscall.ENETUNREACH):
		return prefix + "network unreachable"
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr):
		return prefix + "TLS certificate not valid for the webhook"
	case errors.As(err, &recordErr):
		return prefix + "TLS handshake failed: the receiver does not speak TLS"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return prefix + "connection closed before an answer"
	case errors.As(err, &netErr) && netErr.Timeout():
		return prefix + "timeout"
	}
	return prefix + "request failed"
}

// CloseIdleConnections closes the connections kept for reuse, for a sender
// being replaced (a config reload). Attempts in flight are not affected.
func (s *Sender) CloseIdleConnections() { s.client.CloseIdleConnections() }
