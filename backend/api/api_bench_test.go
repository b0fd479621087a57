package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/taskgate/taskgate/backend/account"
	"github.com/taskgate/taskgate/backend/quota"
	"github.com/taskgate/taskgate/backend/task"
)

// benchBodies are create bodies of a usual size and of a larger data.
var benchBodies = []struct{ name, body string }{
	{"small", panBody},
	{"2KiB", `{"task_id":"t1","group_id":"g1","data":{"id_number":"ABCDE1234F","note":"` + strings.Repeat("x", 2<<10) + `","list":[1,2,3,{"k":"v"}]}}`},
}

// BenchmarkDecodeCreateBody is the cost of the checks and the decoding of
// a create body, apart from the store.
func BenchmarkDecodeCreateBody(b *testing.B) {
	for _, bb := range benchBodies {
		body := []byte(bb.body)
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if e := checkJSON(body); e != nil {
					b.Fatal(e)
				}
				if _, e := decodeCreateBody(body); e != nil {
					b.Fatal(e)
				}
			}
		})
	}
}

// BenchmarkCreateAsync is a whole async create through the API, with the
// memory store.
func BenchmarkCreateAsync(b *testing.B) {
	f := newFixture(b)
	f.api.MaxBody = 1 << 20
	// Nobody is told of the tasks queued.
	f.api.Service = task.NewService(task.ServiceConfig{Store: f.store, Hub: f.hub})
	for _, bb := range benchBodies {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/v3/tasks/async/verify_with_source/ind_pan", strings.NewReader(bb.body))
				r.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				f.api.Serve(w, r, acme)
				if w.Code != http.StatusAccepted {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}

// BenchmarkCreateQuota is an async create of a small body through the
// API, with the memory store, by an account without quotas and by one
// with a daily and a monthly quota (each create spends both).
func BenchmarkCreateQuota(b *testing.B) {
	f := newFixture(b)
	withQuotas(b, f)
	for _, acct := range []*account.Account{
		{ID: "none"},
		{ID: "quotas", Quotas: []quota.Quota{{Limit: 1 << 40, Period: quota.Day}, {Limit: 1 << 40, Period: quota.Month}}},
	} {
		b.Run(acct.ID, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/v3/tasks/async/verify_with_source/ind_pan", strings.NewReader(panBody))
				w := httptest.NewRecorder()
				f.api.Serve(w, r, acct)
				if w.Code != http.StatusAccepted {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
