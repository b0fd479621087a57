package integration

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestMetrics makes a known mix of requests and checks the decision
// counters on the admin endpoint's /metrics, and that no metric carries an
// account id or a key.
func TestMetrics(t *testing.T) {
	t.Parallel()
	const (
		openID, openKey     = "acct-metrics-open-3c9", "tg_metrics_open_key_a81f"
		fencedID, fencedKey = "acct-metrics-fenced-7d2", "tg_metrics_fenced_key_5be0"
		wrongKey            = "tg_metrics_wrong_key_e4c7"
	)
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
metrics
taskgate {
	auth_failures 1/h burst 7
	account %s {
		key %s
		rate_limit 10/m burst 2
	}
	account %s {
		key %s
		allow 10.0.0.0/8
	}
}`, openID, openKey, fencedID, fencedKey),
		Sites: fmt.Sprintf(`
http://:%d {
	api_key_auth
	ip_allowlist
	account_rate_limit
	respond "ok" 200
}`, port),
	})

	u := siteURL(port, "/v3/tasks")
	requests := []struct {
		header http.Header
		status int
		times  int
	}{
		{nil, 401, 2},
		{http.Header{"Account-Id": {openID}}, 401, 1},
		{creds("acct-metrics-unknown", openKey), 403, 1},
		{creds(openID, wrongKey), 403, 1},
		{http.Header{"Account-Id": {openID}, "Api-Key": {openKey, openKey}}, 403, 1},
		{creds(fencedID, fencedKey), 403, 2},
		{creds(openID, openKey), 200, 2},
		{creds(openID, openKey), 429, 3},
		// The 7th failed authentication, then the address is throttled.
		{creds(openID, wrongKey), 403, 1},
		{creds(openID, openKey), 429, 1},
	}
	for _, rq := range requests {
		for i := 0; i < rq.times; i++ {
			if r := s.get(t, u, rq.header); r.status != rq.status {
				t.Fatalf("headers %v: status %d, want %d (body %s)", rq.header, r.status, rq.status, r.body)
			}
		}
	}

	const name = "taskgate_edge_decisions_total"
	sample := func(handler, outcome string) string {
		return fmt.Sprintf(`%s{handler="%s",outcome="%s"}`, name, handler, outcome)
	}
	want := map[string]float64{
		sample("api_key_auth", "allowed"):                   7,
		sample("api_key_auth", "missing_credentials"):       3,
		sample("api_key_auth", "invalid_credentials"):       4,
		sample("api_key_auth", "too_many_failures"):         1,
		sample("ip_allowlist", "allowed"):                   5,
		sample("ip_allowlist", "missing_credentials"):       0,
		sample("ip_allowlist", "ip_not_allowed"):            2,
		sample("account_rate_limit", "allowed"):             2,
		sample("account_rate_limit", "missing_credentials"): 0,
		sample("account_rate_limit", "too_many_requests"):   3,
		sample("account_rate_limit", "store_error"):         0,
		// Only a shared store (redis) can be out of reach.
		"taskgate_rate_limit_store_degraded": 0,
		// Leases are Redis's: none here.
		"taskgate_rate_limit_leased_tokens_total":     0,
		"taskgate_rate_limit_lease_tokens_lost_total": 0,
		// Present from the start, so that an alert sees the first.
		`taskgate_panics_recovered_total{component="runner"}`:   0,
		`taskgate_panics_recovered_total{component="webhooks"}`: 0,
		"taskgate_webhooks_destinations_refused_total":          0,
	}
	got, all := s.metrics(t, "taskgate_")
	if !maps.Equal(got, want) {
		keys := slices.Sorted(maps.Keys(got))
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "  %s %v\n", k, got[k])
		}
		t.Errorf("taskgate metrics:\n%swant:\n%v", b.String(), want)
	}
	// Caddy's own HTTP metrics are on too (the metrics option): the check
	// below covers their labels as well.
	if !strings.Contains(all, "caddy_http_requests_total") {
		t.Errorf("no caddy_http_requests_total: the metrics option did not take effect")
	}
	for _, secret := range []string{openID, fencedID, "acct-metrics-unknown", openKey, fencedKey, wrongKey} {
		if strings.Contains(all, secret) {
			for _, line := range strings.Split(all, "\n") {
				if strings.Contains(line, secret) {
					t.Errorf("metrics expose %q: %s", secret, line)
				}
			}
		}
	}
}
