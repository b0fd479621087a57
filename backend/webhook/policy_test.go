package webhook_test

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/webhook"
)

// fixed returns a jitter source that always draws v.
func fixed(v float64) func() float64 { return func() float64 { return v } }

func TestDelayDoublesUpToMax(t *testing.T) {
	p := webhook.DefaultPolicy()
	want := []time.Duration{2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600, 3600}
	for i, w := range want {
		retry := i + 1
		// The middle of the jitter range is the exponential value itself,
		// except at the cap, where the range lies below Max.
		if got := p.Delay(retry, fixed(0.5)); w != 3600 && got != w*time.Second {
			t.Errorf("Delay(%d) = %v, want %v", retry, got, w*time.Second)
		}
		lo, hi := time.Duration(float64(w*time.Second)*0.8), min(time.Duration(float64(w*time.Second)*1.2), p.Max)
		if got := p.Delay(retry, fixed(0)); got != lo {
			t.Errorf("Delay(%d) at the lowest draw = %v, want %v", retry, got, lo)
		}
		if got := p.Delay(retry, fixed(0.999999999)); got < hi-time.Millisecond || got > hi {
			t.Errorf("Delay(%d) at the highest draw = %v, want %v", retry, got, hi)
		}
	}
	if got := p.Delay(1000, fixed(0.999999999)); got > p.Max || got < p.Max-time.Millisecond {
		t.Errorf("Delay(1000) = %v, want just under %v", got, p.Max)
	}
	if got := p.Delay(0, fixed(0.5)); got != p.First {
		t.Errorf("Delay(0) = %v, want %v", got, p.First)
	}
}

func TestDelayStaysInBounds(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, p := range []webhook.Policy{
		webhook.DefaultPolicy(),
		{First: time.Second, Max: time.Second, GiveUp: time.Hour, Timeout: time.Second},
		{First: 3 * time.Second, Max: 10 * time.Second, GiveUp: time.Hour, Timeout: time.Second},
		{First: time.Hour, Max: 100 * 24 * time.Hour, GiveUp: 1000 * time.Hour, Timeout: time.Second},
	} {
		for retry := 1; retry < 200; retry++ {
			exp := min(float64(p.First)*float64(uint64(1)<<min(retry-1, 62)), float64(p.Max))
			got := p.Delay(retry, rnd.Float64)
			if got < p.First/2 || got > p.Max || float64(got) < exp*0.8-1 || float64(got) > exp*1.2+1 {
				t.Fatalf("%+v: Delay(%d) = %v, outside ±20%% of %v within [%v, %v]", p, retry, got, time.Duration(exp), p.First/2, p.Max)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		code                 int
		err                  error
		delivered, retryable bool
	}{
		{200, nil, true, false},
		{204, nil, true, false},
		{299, nil, true, false},
		{0, errors.New("connection refused"), false, true},
		{0, nil, false, true},
		{500, nil, false, true},
		{502, nil, false, true},
		{503, nil, false, true},
		{599, nil, false, true},
		{408, nil, false, true},
		{429, nil, false, true},
		{400, nil, false, false},
		{401, nil, false, false},
		{404, nil, false, false},
		{410, nil, false, false},
		{301, nil, false, false},
		{302, nil, false, false},
		{307, nil, false, false},
		{100, nil, false, false},
	}
	for _, tc := range tests {
		d, r := webhook.Classify(tc.code, tc.err)
		if d != tc.delivered || r != tc.retryable {
			t.Errorf("Classify(%d, %v) = %v, %v; want %v, %v", tc.code, tc.err, d, r, tc.delivered, tc.retryable)
		}
	}
}

// withAttempts returns a delivery created at created with attempts of the
// status codes (0: no answer).
func withAttempts(created time.Time, codes ...int) *webhook.Delivery {
	d := &webhook.Delivery{ID: "msg_1", CreatedAt: created, Status: webhook.Pending}
	for _, c := range codes {
		a := webhook.Attempt{At: created, StatusCode: c}
		if c == 0 {
			a.Error = "connection refused"
		}
		d.Attempts = append(d.Attempts, a)
	}
	return d
}

func TestNext(t *testing.T) {
	p := webhook.DefaultPolicy()
	created := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	now := created.Add(time.Minute)
	tests := []struct {
		name   string
		d      *webhook.Delivery
		now    time.Time
		status webhook.Status
		next   time.Time
	}{
		{"delivered", withAttempts(created, 500, 200), now, webhook.Delivered, time.Time{}},
		{"first retry", withAttempts(created, 503), now, webhook.Pending, now.Add(2 * time.Second)},
		{"third retry", withAttempts(created, 0, 500, 0), now, webhook.Pending, now.Add(8 * time.Second)},
		{"429", withAttempts(created, 429), now, webhook.Pending, now.Add(2 * time.Second)},
		{"408", withAttempts(created, 408), now, webhook.Pending, now.Add(2 * time.Second)},
		{"400 at once", withAttempts(created, 400), now, webhook.Failed, time.Time{}},
		{"404 after retries", withAttempts(created, 500, 500, 404), now, webhook.Failed, time.Time{}},
		{"302", withAttempts(created, 302), now, webhook.Failed, time.Time{}},
		{"Retry-After longer than the backoff", retryAfter(withAttempts(created, 429), 90*time.Second), now, webhook.Pending, now.Add(90 * time.Second)},
		{"Retry-After shorter than the backoff", retryAfter(withAttempts(created, 503), time.Second), now, webhook.Pending, now.Add(2 * time.Second)},
		{"Retry-After past the longest delay", retryAfter(withAttempts(created, 503), 3*time.Hour), now, webhook.Pending, now.Add(p.Max)},
		{"no attempt", withAttempts(created), now, webhook.Pending, now},
		// The retry would fall exactly at the give-up time: still made.
		{"retry at give-up", withAttempts(created, 500), created.Add(p.GiveUp - 2*time.Second), webhook.Pending, created.Add(p.GiveUp)},
		{"retry past give-up", withAttempts(created, 500), created.Add(p.GiveUp - 2*time.Second + 1), webhook.Failed, time.Time{}},
	}
	for _, tc := range tests {
		status, next := p.Next(tc.d, tc.now, fixed(0.5))
		if status != tc.status || !next.Equal(tc.next) {
			t.Errorf("%s: Next = %s, %v; want %s, %v", tc.name, status, next, tc.status, tc.next)
		}
	}
}

// retryAfter sets the Retry-After of d's last attempt.
func retryAfter(d *webhook.Delivery, after time.Duration) *webhook.Delivery {
	d.Attempts[len(d.Attempts)-1].RetryAfterMS = after.Milliseconds()
	return d
}

// TestNextGivesUpOnSchedule walks a delivery that always fails through the
// default policy: it is retried on the exponential schedule and failed at
// the first retry that would come after 24 h.
func TestNextGivesUpOnSchedule(t *testing.T) {
	p := webhook.DefaultPolicy()
	created := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	d := withAttempts(created)
	now := created
	for {
		d.Attempts = append(d.Attempts, webhook.Attempt{At: now, StatusCode: 500})
		status, next := p.Next(d, now, fixed(0.5))
		if status == webhook.Failed {
			break
		}
		if status != webhook.Pending || next.After(created.Add(p.GiveUp)) {
			t.Fatalf("after %d attempts: %s, %v", len(d.Attempts), status, next)
		}
		now = next
	}
	// 2+4+…+2048 s is 4094 s after the first attempt at 0; then each retry
	// waits the capped delay until the next would pass 24 h.
	capped := p.Delay(100, fixed(0.5))
	want := 12 + int((p.GiveUp-4094*time.Second)/capped)
	if len(d.Attempts) != want {
		t.Fatalf("%d attempts before giving up, want %d", len(d.Attempts), want)
	}
	if !now.Add(capped).After(created.Add(p.GiveUp)) {
		t.Fatalf("gave up at %v, while another retry fitted before %v", now, created.Add(p.GiveUp))
	}
}

func TestPolicyDefaultsAndValidate(t *testing.T) {
	if got := (webhook.Policy{}).WithDefaults(); got != webhook.DefaultPolicy() {
		t.Errorf("zero policy with defaults = %+v", got)
	}
	if got := (webhook.Policy{First: 2 * time.Hour}).WithDefaults(); got.Max != 2*time.Hour {
		t.Errorf("a first delay above the default cap gives Max %v", got.Max)
	}
	if err := webhook.DefaultPolicy().Validate(); err != nil {
		t.Error(err)
	}
	for _, p := range []webhook.Policy{
		{},
		{First: time.Second, Max: time.Millisecond, GiveUp: time.Hour, Timeout: time.Second},
		{First: time.Second, Max: time.Hour, GiveUp: -time.Hour, Timeout: time.Second},
		{First: time.Second, Max: time.Hour, GiveUp: time.Hour},
	} {
		if p.Validate() == nil {
			t.Errorf("%+v is valid", p)
		}
	}
}
