package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestHostileInput sends oversized, malformed and repeated credentials and
// checks that every answer is a proper 4xx, never a 5xx, and that the
// process keeps serving. The server takes headers up to 1 MB (Caddy's
// default is 16 KiB), so that big values reach the handlers.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	s := startServer(t, config{
		Global: `
servers {
	max_header_size 1MB
}
taskgate {
	# Many refusals from one address: not the throttle's test.
	auth_failures off
	account alpha {
		key key-alpha
	}
}`,
		Sites: fmt.Sprintf(`
http://:%d {
	api_key_auth
	ip_allowlist
	account_rate_limit
	respond "ok {http.auth.user.id}" 200
}`, port),
	})
	u := siteURL(port, "/v3/tasks")
	big := strings.Repeat("k", 64<<10)
	manyHeaders := creds("alpha", "key-alpha")
	for i := 0; i < 2000; i++ {
		manyHeaders.Set(fmt.Sprintf("X-Junk-%d", i), "junk")
	}

	tests := []struct {
		name   string
		header http.Header
		status int
		code   string
	}{
		{"64 KiB api-key", creds("alpha", big), 403, "INVALID_CREDENTIALS"},
		{"64 KiB account-id", creds(big, "key-alpha"), 403, "INVALID_CREDENTIALS"},
		{"512 KiB api-key", creds("alpha", strings.Repeat("k", 512<<10)), 403, "INVALID_CREDENTIALS"},
		{"non-UTF-8 account-id", creds("al\xffpha\xfe", "key-alpha"), 403, "INVALID_CREDENTIALS"},
		{"non-UTF-8 api-key", creds("alpha", "key-\xc3\x28alpha"), 403, "INVALID_CREDENTIALS"},
		{"UTF-8 account-id", creds("ålphä", "key-alpha"), 403, "INVALID_CREDENTIALS"},
		{"whitespace-only api-key", creds("alpha", "   "), 401, "MISSING_CREDENTIALS"},
		{"empty both", creds("", ""), 401, "MISSING_CREDENTIALS"},
		{"empty first of two account-ids", http.Header{"Account-Id": {"", "alpha"}, "Api-Key": {"key-alpha"}}, 401, "MISSING_CREDENTIALS"},
		{"1000 account-id headers", http.Header{"Account-Id": repeat("alpha", 1000), "Api-Key": {"key-alpha"}}, 403, "INVALID_CREDENTIALS"},
		{"1000 api-key headers", http.Header{"Account-Id": {"alpha"}, "Api-Key": repeat("key-alpha", 1000)}, 403, "INVALID_CREDENTIALS"},
		{"key with a comma list", creds("alpha", "key-alpha, key-alpha"), 403, "INVALID_CREDENTIALS"},
		{"underscore header names", http.Header{"Account_id": {"alpha"}, "Api_key": {"key-alpha"}}, 401, "MISSING_CREDENTIALS"},
		{"2000 other headers", manyHeaders, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.get(t, u, tc.header)
			if tc.code == "" {
				wantOK(t, r, "ok alpha")
				return
			}
			wantError(t, r, tc.status, tc.code)
		})
	}

	// What Go's HTTP server refuses before any handler runs: still a 4xx.
	raw := []struct {
		name    string
		request string
		status  int
	}{
		{"header over the 1 MB limit", "GET / HTTP/1.1\r\nHost: x\r\nAccount-Id: alpha\r\nApi-Key: " + strings.Repeat("k", 2<<20) + "\r\n\r\n", 431},
		{"NUL in account-id", "GET / HTTP/1.1\r\nHost: x\r\nAccount-Id: al\x00pha\r\nApi-Key: key-alpha\r\n\r\n", 400},
		{"control byte in api-key", "GET / HTTP/1.1\r\nHost: x\r\nAccount-Id: alpha\r\nApi-Key: key\x01alpha\r\n\r\n", 400},
		{"bare LF line endings", "GET / HTTP/1.1\nHost: x\nAccount-Id: alpha\nApi-Key: key-alpha\n\n", 200},
		{"obs-fold continuation line", "GET / HTTP/1.1\r\nHost: x\r\nAccount-Id: alpha\r\nApi-Key: key-\r\n alpha\r\n\r\n", 403}, // key "key- alpha"
		{"no Host", "GET / HTTP/1.1\r\nAccount-Id: alpha\r\nApi-Key: key-alpha\r\n\r\n", 400},
	}
	for _, tc := range raw {
		t.Run("raw/"+tc.name, func(t *testing.T) {
			if got := rawRequest(t, fmt.Sprintf("127.0.0.1:%d", port), []byte(tc.request)); got != tc.status {
				t.Errorf("status %d, want %d", got, tc.status)
			}
		})
	}

	t.Run("concurrent mix", func(t *testing.T) {
		headers := []http.Header{
			nil,
			creds("alpha", "key-alpha"),
			creds("alpha", big),
			creds("al\xffpha", "key-alpha"),
			{"Account-Id": repeat("alpha", 50), "Api-Key": {"key-alpha"}},
		}
		var wg sync.WaitGroup
		errs := make(chan string, 200)
		for g := 0; g < 10; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					h := headers[(g+i)%len(headers)]
					req, _ := http.NewRequest(http.MethodGet, u, nil)
					for k, v := range h {
						req.Header[k] = v
					}
					resp, err := s.client.Do(req)
					if err != nil {
						errs <- err.Error()
						return
					}
					resp.Body.Close()
					if resp.StatusCode >= 500 {
						errs <- fmt.Sprintf("status %d for headers of %d bytes", resp.StatusCode, headerSize(h))
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})

	if !s.alive() {
		t.Fatal("taskgate exited")
	}
	// Still serving, and the limiter still counts: alpha has used part of
	// its default burst above, but not all of it in this moment's refill.
	if r := s.get(t, u, creds("alpha", "key-alpha")); r.status != http.StatusOK && r.status != http.StatusTooManyRequests {
		t.Errorf("after the hostile input: %d %s", r.status, r.body)
	}
	wantError(t, s.get(t, u, nil), http.StatusUnauthorized, "MISSING_CREDENTIALS")
	if out := s.output(); strings.Contains(out, "panic") {
		t.Errorf("the output mentions a panic:\n%s", out)
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func headerSize(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	return n
}
