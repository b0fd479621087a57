package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// quotaView is a quota as GET /v3/account and the admin usage report show
// it.
type quotaView struct {
	Limit     int64    `json:"limit"`
	Period    string   `json:"period"`
	TaskTypes []string `json:"task_types"`
	Used      int64    `json:"used"`
	Left      int64    `json:"left"`
	ResetsAt  string   `json:"resets_at"`
}

// quotaSource answers a task whose data holds "down" 503 (the task ends
// SOURCE_DOWN), and every other at once.
func quotaSource(t *testing.T) *fakeSource {
	return newFakeSource(t, func(f *fakeSource, w http.ResponseWriter, r *http.Request, c sourceCall) {
		if bytes.Contains(c.Body, []byte("down")) {
			answerJSON(w, http.StatusServiceUnavailable, `{"error":"down"}`)
			return
		}
		answerJSON(w, http.StatusOK, `{"status":"done"}`)
	})
}

// accountQuotas returns the quotas GET /v3/account shows the client.
func accountQuotas(t *testing.T, c taskClient) []quotaView {
	t.Helper()
	var v struct {
		Quotas []quotaView `json:"quotas"`
	}
	decodeAnswer(t, c.s.get(t, c.url("/v3/account"), c.auth), http.StatusOK, &v)
	return v.Quotas
}

// wantOverQuota checks a 429 QUOTA_EXCEEDED whose Retry-After is at most a
// day away.
func wantOverQuota(t *testing.T, r response) {
	t.Helper()
	wantError(t, r, http.StatusTooManyRequests, "QUOTA_EXCEEDED")
	after, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || after < 1 || after > 86400 {
		t.Errorf("Retry-After %q, want 1 to 86400 seconds", r.header.Get("Retry-After"))
	}
	if got := r.header.Values("RateLimit"); !strings.Contains(strings.Join(got, ","), `"daily";r=0;`) {
		t.Errorf("RateLimit %q: want the daily quota with nothing left", got)
	}
}

func TestQuota(t *testing.T) {
	forEachStorage(t, testQuota)
}

func testQuota(t *testing.T, storage string) {
	src := quotaSource(t)
	port := freePort(t)
	s := newServer(t)
	s.start(config{Global: adminGlobal(s.storageOption(storage), src.url), Sites: taskSite(port)})
	a := createAccount(t, s, `{"id":"metered","name":"Metered","quotas":[{"limit":3,"period":"day"},{"limit":100,"period":"month","task_types":["adm/other"]}]}`)
	c := taskClient{s: s, port: port, auth: creds("metered", a.APIKey)}

	first := c.post(t, "async", "adm/echo", createBody("t1", "g", `{}`), nil)
	wantAccepted(t, first)
	if got := first.header.Values("RateLimit-Policy"); len(got) != 1 || !strings.HasPrefix(got[0], `"default";`) || !strings.HasSuffix(got[0], `, "daily";q=3;w=86400`) {
		t.Errorf("RateLimit-Policy %q: want the rate limit's, then the daily quota's", got)
	}
	if got := first.header.Values("RateLimit"); len(got) != 1 || !strings.Contains(got[0], `, "daily";r=2;t=`) {
		t.Errorf("RateLimit %q: want the daily quota with 2 left", got)
	}
	wantAccepted(t, c.post(t, "async", "adm/echo", createBody("t2", "g", `{}`), nil))
	down := wantAccepted(t, c.post(t, "async", "adm/echo", createBody("t3", "g", `{"down":true}`), nil))
	if o := c.waitTerminal(t, down); o.Error == nil || *o.Error != "SOURCE_DOWN" {
		t.Fatalf("task %s ended %+v, want SOURCE_DOWN", down, o)
	}
	// The task that ended SOURCE_DOWN gives its unit back.
	deadline := time.Now().Add(taskWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		qs := accountQuotas(t, c)
		if len(qs) != 2 || qs[0].Limit != 3 || qs[0].Period != "day" || qs[1].Period != "month" || qs[1].Used != 0 {
			t.Fatalf("quotas %+v", qs)
		}
		if qs[0].Used == 2 && qs[0].Left == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daily quota %+v: the SOURCE_DOWN task's unit was not given back", qs[0])
		}
		<-tick.C
	}
	key := http.Header{"Idempotency-Key": {"k-t4"}}
	t4 := wantAccepted(t, c.post(t, "async", "adm/echo", createBody("t4", "g", `{}`), key))
	wantOverQuota(t, c.post(t, "async", "adm/echo", createBody("refused", "g", `{}`), nil))
	// A retry of an accepted request gets its answer, quota spent or not;
	// another body under its key is a mismatch.
	if again := wantAccepted(t, c.post(t, "async", "adm/echo", createBody("t4", "g", `{}`), key)); again != t4 {
		t.Errorf("replay over quota answered %s, want the original %s", again, t4)
	}
	wantError(t, c.post(t, "async", "adm/echo", createBody("t4-other", "g", `{}`), key), http.StatusUnprocessableEntity, "IDEMPOTENCY_MISMATCH")
	wantOverQuota(t, c.post(t, "sync", "adm/echo", createBody("refused", "g", `{}`), nil))
	if got := c.list(t, "task_id", "refused"); len(got) != 0 {
		t.Errorf("refused tasks stored: %+v", got)
	}
	if m, _ := s.metrics(t, "taskgate_quotas_refusals_total"); m[`taskgate_quotas_refusals_total{period="day",task_type="adm/echo"}`] != 2 {
		t.Errorf("taskgate_quotas_refusals_total = %v, want 2 for adm/echo, day", m)
	}

	var u struct {
		Quotas []quotaView `json:"quotas"`
	}
	decodeAnswer(t, adminCall(t, s, http.MethodGet, "/taskgate/accounts/metered/usage", ""), http.StatusOK, &u)
	if len(u.Quotas) != 2 || u.Quotas[0].Used != 3 || u.Quotas[0].Left != 0 || u.Quotas[0].ResetsAt == "" {
		t.Errorf("usage report quotas %+v, want the daily one spent", u.Quotas)
	}
	// Without quotas, the account creates again.
	var changed struct {
		Quotas []any `json:"quotas"`
	}
	decodeAnswer(t, adminCall(t, s, http.MethodPatch, "/taskgate/accounts/metered", `{"quotas":null}`), http.StatusOK, &changed)
	if changed.Quotas == nil || len(changed.Quotas) != 0 {
		t.Errorf("quotas after PATCH null: %v, want []", changed.Quotas)
	}
	wantAccepted(t, c.post(t, "async", "adm/echo", createBody("t5", "g", `{}`), nil))
	wantError(t, adminCall(t, s, http.MethodPatch, "/taskgate/accounts/metered", `{"quotas":[{"limit":1,"period":"week"}]}`), http.StatusBadRequest, "BAD_REQUEST")
	wantError(t, adminCall(t, s, http.MethodPatch, "/taskgate/accounts/metered", `{"quotas":[{"limit":1,"period":"day","task_types":["adm/nope"]}]}`), http.StatusBadRequest, "BAD_REQUEST")
}

// TestQuotaRedisNodes sends concurrent creates to two nodes sharing Redis:
// together they admit exactly the quota.
func TestQuotaRedisNodes(t *testing.T) {
	r := startRedis(t)
	src := quotaSource(t)
	const limit, tries = 5, 24
	global := redisGlobal(r, fmt.Sprintf(`account shared {
	key key-shared
	rate_limit 1000/s
	quota %d/day
}
task_type q/echo {
	source %s/echo
}
`, limit, src.url))
	nodes := startNodes(t, 2, global)
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range tries {
		wg.Go(func() {
			c := nodes[i%2].client("shared", "key-shared")
			resp := c.post(t, "async", "q/echo", createBody(fmt.Sprintf("t%d", i), "g", `{}`), nil)
			if resp.status == http.StatusTooManyRequests {
				wantOverQuota(t, resp)
			}
			mu.Lock()
			codes[resp.status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[http.StatusAccepted] != limit || codes[http.StatusTooManyRequests] != tries-limit {
		t.Errorf("answers by status %v, want %d accepted and %d over quota", codes, limit, tries-limit)
	}
	for _, n := range nodes {
		qs := accountQuotas(t, n.client("shared", "key-shared"))
		if len(qs) != 1 || qs[0].Used != limit || qs[0].Left != 0 {
			t.Errorf("%s: quotas %+v, want all %d used", n.name, qs, limit)
		}
	}
}
