package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// receiverPath is where the receiver takes deliveries.
const receiverPath = "/hook"

// timestampTolerance is how far a delivery's webhook-timestamp may be from
// the receiver's clock, as Standard Webhooks advises receivers to check.
const timestampTolerance = 5 * time.Minute

// receiver is the webhook receiver of the run, served by this process on
// loopback. It checks every delivery as a careful receiver would (the
// webhook-signature against the secret, the webhook-timestamp against its
// clock), notes when each attempt arrived and the task's completed_at, and
// answers 204, or 503 while failing is set.
type receiver struct {
	url string
	// secret is the webhook's secret as configured ("whsec_…"), key the
	// HMAC key it encodes.
	secret   string
	key      []byte
	srv      *http.Server
	failing  atomic.Bool
	served   chan struct{} // closed when Serve has returned
	serveErr error         // valid once served is closed

	mu  sync.Mutex
	log *receipts
}

// receipts is what the receiver saw since its last reset.
type receipts struct {
	byID map[string]*receivedDelivery // by webhook-id
	// attempts counts every POST, malformed ones included.
	attempts int
	// badSignature counts the POSTs whose signature or timestamp did not
	// check out, badRequest those without a webhook-id or a task body.
	badSignature, badRequest int
	// seen counts the deliveries that had a first attempt, delivered
	// those that were first answered 2xx.
	seen, delivered counter
}

// receivedDelivery is one webhook-id as the receiver saw it.
type receivedDelivery struct {
	requestID   string
	completedAt time.Time // zero when the body had none
	// attempts holds when each attempt arrived, answered holds the
	// status each was answered with.
	attempts []time.Time
	answered []int
}

// firstDelivered returns when the delivery was first answered 2xx, and how
// many times it was.
func (d *receivedDelivery) firstDelivered() (at time.Time, times int) {
	for i, code := range d.answered {
		if code/100 != 2 {
			continue
		}
		if times == 0 {
			at = d.attempts[i]
		}
		times++
	}
	return at, times
}

// startReceiver serves a receiver with a new random secret on a free
// loopback port.
func startReceiver() (*receiver, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("webhook receiver: %w", err)
	}
	r := &receiver{
		url:    "http://" + ln.Addr().String() + receiverPath,
		secret: "whsec_" + base64.StdEncoding.EncodeToString(key),
		key:    key,
		served: make(chan struct{}),
		log:    newReceipts(),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+receiverPath, r.receive)
	// The tenants' webhooks: a URL each under it.
	mux.HandleFunc("POST "+receiverPath+"/", r.receive)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(r.served)
		r.serveErr = r.srv.Serve(ln)
	}()
	return r, nil
}

func newReceipts() *receipts { return &receipts{byID: make(map[string]*receivedDelivery)} }

// reset starts a new log and returns the one it ends.
func (r *receiver) reset() *receipts {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.log
	r.log = newReceipts()
	return old
}

// current returns the log being written. Its counters may be waited on;
// its other fields are read only after a reset.
func (r *receiver) current() *receipts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log
}

// receive checks and notes one attempt and answers it.
func (r *receiver) receive(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		return // the sender went away; it sees no answer either
	}
	id := req.Header.Get("webhook-id")
	signed := verifySignature(r.key, id, req.Header.Get("webhook-timestamp"), body, req.Header.Get("webhook-signature"), at)
	var task struct {
		RequestID   string  `json:"request_id"`
		CompletedAt *string `json:"completed_at"`
	}
	var completedAt time.Time
	wellFormed := id != "" && json.Unmarshal(body, &task) == nil && task.RequestID != ""
	if wellFormed && task.CompletedAt != nil {
		completedAt, err = time.Parse(time.RFC3339Nano, *task.CompletedAt)
		wellFormed = err == nil
	}
	code := http.StatusNoContent
	if r.failing.Load() {
		code = http.StatusServiceUnavailable
	}

	r.mu.Lock()
	log := r.log
	log.attempts++
	if !signed {
		log.badSignature++
	}
	var first, delivered bool
	if wellFormed {
		d := log.byID[id]
		if d == nil {
			d = &receivedDelivery{requestID: task.RequestID, completedAt: completedAt}
			log.byID[id] = d
			first = true
		}
		_, before := d.firstDelivered()
		d.attempts = append(d.attempts, at)
		d.answered = append(d.answered, code)
		delivered = before == 0 && code/100 == 2
	} else {
		log.badRequest++
	}
	r.mu.Unlock()

	if first {
		log.seen.add()
	}
	if delivered {
		log.delivered.add()
	}
	w.WriteHeader(code)
}

// verifySignature checks a delivery's webhook-signature (space-separated
// "v1,<base64>" entries, one of which must be the HMAC-SHA256 under key of
// "id.timestamp.body") and that its timestamp is within
// timestampTolerance of now, per Standard Webhooks.
func verifySignature(key []byte, id, timestamp string, body []byte, header string, now time.Time) bool {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || id == "" {
		return false
	}
	if skew := now.Sub(time.Unix(ts, 0)); skew > timestampTolerance || skew < -timestampTolerance {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(header) {
		version, encoded, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(encoded)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

// stop closes every connection and waits for Serve to return.
func (r *receiver) stop() error {
	err := r.srv.Close()
	<-r.served
	if !errors.Is(r.serveErr, http.ErrServerClosed) {
		err = errors.Join(err, r.serveErr)
	}
	return err
}
