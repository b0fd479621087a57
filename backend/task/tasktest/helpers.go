package tasktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/task"
	"github.com/taskgate/taskgate/backend/webhook"
)

// newTask returns an in-progress task of the account and type ("action/
// type"), created at the given time, with a new request id.
func newTask(accountID, typeName string, created time.Time) *task.Task {
	action, typ, _ := strings.Cut(typeName, "/")
	return &task.Task{
		RequestID: fmt.Sprintf("req-%08d", lastID.Add(1)),
		AccountID: accountID,
		Action:    action,
		Type:      typ,
		TaskID:    "task-1",
		GroupID:   "group-1",
		Data:      json.RawMessage(`{"id_number":"ABCDE1234F"}`),
		Status:    task.InProgress,
		CreatedAt: created,
		Async:     true,
	}
}

// finished returns a copy of tk that ended with status at the given time.
func finished(tk *task.Task, status task.Status, at time.Time) *task.Task {
	end := clone(tk)
	end.Status = status
	end.CompletedAt = &at
	end.Result = json.RawMessage(`{"source_output":{"status":"id_found","name":"A B"}}`)
	return end
}

// clone returns a deep copy of tk.
func clone(tk *task.Task) *task.Task {
	c := *tk
	c.Data = bytes.Clone(tk.Data)
	c.Result = bytes.Clone(tk.Result)
	if tk.CompletedAt != nil {
		at := *tk.CompletedAt
		c.CompletedAt = &at
	}
	if tk.Error != nil {
		c.Error = ptr(*tk.Error)
	}
	if tk.Message != nil {
		c.Message = ptr(*tk.Message)
	}
	return &c
}

func ptr(s string) *string { return &s }

func mustCreate(t *testing.T, s task.Store, tasks ...*task.Task) {
	t.Helper()
	for _, tk := range tasks {
		if got, err := s.Create(t.Context(), tk, nil, time.Time{}); err != nil || got != nil {
			t.Fatalf("Create %s = %v, %v; want nil, nil", tk.RequestID, got, err)
		}
	}
}

func mustGet(t *testing.T, s task.Store, tk *task.Task) *task.Task {
	t.Helper()
	got, err := s.Get(t.Context(), tk.AccountID, tk.RequestID)
	if err != nil {
		t.Fatalf("Get %s: %v", tk.RequestID, err)
	}
	return got
}

// mustFinish finishes tk with the deliveries. A tk without Attempts ends
// as the holder of the task's latest claim: its Attempts are set to the
// stored ones.
func mustFinish(t *testing.T, s task.Store, tk *task.Task, deliveries ...*webhook.Delivery) {
	t.Helper()
	holdLatestClaim(t, s, tk)
	if err := s.Finish(t.Context(), tk, deliveries, nil); err != nil {
		t.Fatalf("Finish %s: %v", tk.RequestID, err)
	}
}

// claim claims up to n tasks of the type and checks the answer is a
// non-nil slice of in-progress tasks of that type.
func claim(t *testing.T, s task.Store, typeName string, n int, leaseUntil time.Time) []*task.Task {
	t.Helper()
	got, err := s.Claim(t.Context(), typeName, n, leaseUntil)
	if err != nil {
		t.Fatalf("Claim(%s, %d): %v", typeName, n, err)
	}
	if got == nil {
		t.Errorf("Claim(%s, %d) returned a nil slice, want an empty one", typeName, n)
	}
	for _, tk := range got {
		if tk.TypeName() != typeName || tk.Status != task.InProgress {
			t.Errorf("Claim(%s) returned %s of type %s, status %s", typeName, tk.RequestID, tk.TypeName(), tk.Status)
		}
	}
	return got
}

func wantDepth(t *testing.T, s task.Store, typeName string, want int) {
	t.Helper()
	n, err := s.QueueDepth(t.Context(), typeName)
	if err != nil || n != want {
		t.Errorf("QueueDepth(%s) = %d, %v; want %d", typeName, n, err, want)
	}
}

// wantIDs checks that got holds the wanted tasks, in that order.
func wantIDs(t *testing.T, what string, got []*task.Task, want ...*task.Task) {
	t.Helper()
	g := make([]string, len(got))
	for i, tk := range got {
		g[i] = tk.RequestID
	}
	w := make([]string, len(want))
	for i, tk := range want {
		w[i] = tk.RequestID
	}
	if strings.Join(g, ",") != strings.Join(w, ",") {
		t.Errorf("%s: got %v, want %v", what, g, w)
	}
}

// sameTask checks every field of got against want: JSON by its compact
// form (nil and null alike), times by the instant.
func sameTask(t *testing.T, got, want *task.Task) {
	t.Helper()
	var diffs []string
	check := func(field string, equal bool, got, want any) {
		if !equal {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", field, got, want))
		}
	}
	check("RequestID", got.RequestID == want.RequestID, got.RequestID, want.RequestID)
	check("AccountID", got.AccountID == want.AccountID, got.AccountID, want.AccountID)
	check("Action", got.Action == want.Action, got.Action, want.Action)
	check("Type", got.Type == want.Type, got.Type, want.Type)
	check("TaskID", got.TaskID == want.TaskID, fmt.Sprintf("%q", got.TaskID), fmt.Sprintf("%q", want.TaskID))
	check("GroupID", got.GroupID == want.GroupID, fmt.Sprintf("%q", got.GroupID), fmt.Sprintf("%q", want.GroupID))
	check("Data", sameJSON(got.Data, want.Data), string(got.Data), string(want.Data))
	check("Status", got.Status == want.Status, got.Status, want.Status)
	check("CreatedAt", got.CreatedAt.Equal(want.CreatedAt), got.CreatedAt, want.CreatedAt)
	check("CompletedAt", sameTime(got.CompletedAt, want.CompletedAt), show(got.CompletedAt), show(want.CompletedAt))
	check("Result", sameJSON(got.Result, want.Result), string(got.Result), string(want.Result))
	check("Error", sameString(got.Error, want.Error), show(got.Error), show(want.Error))
	check("Message", sameString(got.Message, want.Message), show(got.Message), show(want.Message))
	check("Async", got.Async == want.Async, got.Async, want.Async)
	check("Attempts", got.Attempts == want.Attempts, got.Attempts, want.Attempts)
	if len(diffs) > 0 {
		t.Errorf("task %s:\n\t%s", want.RequestID, strings.Join(diffs, "\n\t"))
	}
}

func sameIdempotency(t *testing.T, got, want *task.Idempotency) {
	t.Helper()
	if got == nil {
		t.Fatalf("no idempotency record, want %+v", want)
	}
	if got.AccountID != want.AccountID || got.Key != want.Key || got.Fingerprint != want.Fingerprint ||
		got.RequestID != want.RequestID || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("idempotency record = %+v, want %+v", got, want)
	}
}

func sameJSON(a, b json.RawMessage) bool {
	return bytes.Equal(compact(a), compact(b))
}

func compact(raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return []byte("null")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func sameString(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// show prints what a pointer points to, or nil.
func show[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// wantEachOnce checks that want distinct things were claimed, each once:
// claims counts the claims of each id.
func wantEachOnce(t *testing.T, what string, claims map[string]int, want int) {
	t.Helper()
	if len(claims) != want {
		t.Errorf("%d %s claimed, want %d", len(claims), what, want)
	}
	for id, n := range claims {
		if n != 1 {
			t.Errorf("%s claimed %d times, want once", id, n)
		}
	}
}

// newDelivery returns a pending delivery of tk's end to url, created and
// due at the given times, with a new id.
func newDelivery(tk *task.Task, url string, created, next time.Time) *webhook.Delivery {
	return &webhook.Delivery{
		ID:        fmt.Sprintf("dlv-%08d", lastDeliveryID.Add(1)),
		AccountID: tk.AccountID,
		RequestID: tk.RequestID,
		URL:       url,
		Event:     webhook.EventTask,
		Body:      json.RawMessage(`{"request_id":"` + tk.RequestID + `","status":"completed","note":"<b>&amp;</b> \u00e9"}`),
		Status:    webhook.Pending,
		CreatedAt: created,
		NextAt:    next,
	}
}

// claimed creates an in-progress task of the account and claims it. The
// store must have no other queued task of its type.
func claimed(t *testing.T, s task.Store, accountID string, created time.Time) *task.Task {
	t.Helper()
	tk := newTask(accountID, typePAN, created)
	mustCreate(t, s, tk)
	wantIDs(t, "claim", claim(t, s, typePAN, 1, farFuture), tk)
	tk.Attempts = 1 // the claim's
	return tk
}

// attempted returns a copy of d after the attempts, with the status and
// NextAt they gave.
func attempted(d *webhook.Delivery, status webhook.Status, next time.Time, attempts ...webhook.Attempt) *webhook.Delivery {
	c := cloneDelivery(d)
	c.Status, c.NextAt = status, next
	c.Attempts = append(c.Attempts, attempts...)
	return c
}

// cloneDelivery returns a deep copy of d.
func cloneDelivery(d *webhook.Delivery) *webhook.Delivery {
	c := *d
	c.Body = bytes.Clone(d.Body)
	c.Attempts = slices.Clone(d.Attempts)
	return &c
}

func mustGetDelivery(t *testing.T, s webhook.Store, d *webhook.Delivery) *webhook.Delivery {
	t.Helper()
	got, err := s.GetDelivery(t.Context(), d.AccountID, d.ID)
	if err != nil {
		t.Fatalf("GetDelivery %s: %v", d.ID, err)
	}
	return got
}

// mustRecord records d's attempt with the deliveries in also.
func mustRecord(t *testing.T, s webhook.Store, d *webhook.Delivery, also ...*webhook.Delivery) {
	t.Helper()
	holdLatestDeliveryClaim(t, s, d)
	if err := s.RecordAttempt(t.Context(), d, also); err != nil {
		t.Fatalf("RecordAttempt %s: %v", d.ID, err)
	}
}

// claimDeliveries claims up to n deliveries and checks the answer is a
// non-nil slice of pending deliveries due at now.
func claimDeliveries(t *testing.T, s webhook.Store, now time.Time, n int, leaseUntil time.Time, skip func(string) bool) []*webhook.Delivery {
	t.Helper()
	got, err := s.ClaimDeliveries(t.Context(), now, n, leaseUntil, skip)
	if err != nil {
		t.Fatalf("ClaimDeliveries(%v, %d): %v", now, n, err)
	}
	if got == nil {
		t.Errorf("ClaimDeliveries(%v, %d) returned a nil slice, want an empty one", now, n)
	}
	for _, d := range got {
		if d.Status != webhook.Pending || d.NextAt.After(now) {
			t.Errorf("ClaimDeliveries(%v) returned %s with status %s, due at %v", now, d.ID, d.Status, d.NextAt)
		}
	}
	return got
}

func wantCount(t *testing.T, s webhook.Store, status webhook.Status, want int) {
	t.Helper()
	if n, err := s.CountDeliveries(t.Context(), status); err != nil || n != want {
		t.Errorf("CountDeliveries(%s) = %d, %v; want %d", status, n, err, want)
	}
}

// wantDeliveries checks that got holds the wanted deliveries, in that
// order.
func wantDeliveries(t *testing.T, what string, got []*webhook.Delivery, want ...*webhook.Delivery) {
	t.Helper()
	if g, w := deliveryIDs(got), deliveryIDs(want); !slices.Equal(g, w) {
		t.Errorf("%s: got %v, want %v", what, g, w)
	}
}

// wantDeliverySet checks that got holds the wanted deliveries, in any
// order.
func wantDeliverySet(t *testing.T, what string, got []*webhook.Delivery, want ...*webhook.Delivery) {
	t.Helper()
	g, w := deliveryIDs(got), deliveryIDs(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("%s: got %v, want %v (in any order)", what, g, w)
	}
}

func deliveryIDs(ds []*webhook.Delivery) []string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	return ids
}

// sameDelivery checks every field of got against want: the body by its
// compact form, times by the instant, attempts one by one.
func sameDelivery(t *testing.T, got, want *webhook.Delivery) {
	t.Helper()
	var diffs []string
	check := func(field string, equal bool, got, want any) {
		if !equal {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", field, got, want))
		}
	}
	check("ID", got.ID == want.ID, got.ID, want.ID)
	check("AccountID", got.AccountID == want.AccountID, got.AccountID, want.AccountID)
	check("RequestID", got.RequestID == want.RequestID, got.RequestID, want.RequestID)
	check("URL", got.URL == want.URL, got.URL, want.URL)
	check("Event", got.Event == want.Event, got.Event, want.Event)
	check("Body", sameJSON(got.Body, want.Body), string(got.Body), string(want.Body))
	check("Status", got.Status == want.Status, got.Status, want.Status)
	check("CreatedAt", got.CreatedAt.Equal(want.CreatedAt), got.CreatedAt, want.CreatedAt)
	check("NextAt", got.NextAt.Equal(want.NextAt), got.NextAt, want.NextAt)
	check("len(Attempts)", len(got.Attempts) == len(want.Attempts), len(got.Attempts), len(want.Attempts))
	for i := range min(len(got.Attempts), len(want.Attempts)) {
		g, w := got.Attempts[i], want.Attempts[i]
		field := fmt.Sprintf("Attempts[%d]", i)
		check(field+".At", g.At.Equal(w.At), g.At, w.At)
		check(field+".StatusCode", g.StatusCode == w.StatusCode, g.StatusCode, w.StatusCode)
		check(field+".Error", g.Error == w.Error, fmt.Sprintf("%q", g.Error), fmt.Sprintf("%q", w.Error))
		check(field+".DurationMS", g.DurationMS == w.DurationMS, g.DurationMS, w.DurationMS)
	}
	if len(diffs) > 0 {
		t.Errorf("delivery %s:\n\t%s", want.ID, strings.Join(diffs, "\n\t"))
	}
}

// holdLatestClaim sets the Attempts of a tk that has none to the stored
// task's, so that it may end it.
func holdLatestClaim(t *testing.T, s task.Store, tk *task.Task) {
	t.Helper()
	if tk.Attempts != 0 {
		return
	}
	if got, err := s.Get(t.Context(), tk.AccountID, tk.RequestID); err == nil {
		tk.Attempts = got.Attempts
	}
}

// holdLatestDeliveryClaim sets the Claim of a d that has none to the
// stored delivery's, so that it may record it: mustRecord records as the
// worker holding the delivery.
func holdLatestDeliveryClaim(t *testing.T, s webhook.Store, d *webhook.Delivery) {
	t.Helper()
	if d.Claim != 0 {
		return
	}
	if got, err := s.GetDelivery(t.Context(), d.AccountID, d.ID); err == nil {
		d.Claim = got.Claim
	}
}
