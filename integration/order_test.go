package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"testing"
)

// TestDirectiveOrder checks that the edge directives need no `order` lines:
// at the top level of a site, written in reverse, they run as auth →
// allowlist → limit → respond; inside `route` they run as written.
func TestDirectiveOrder(t *testing.T) {
	t.Parallel()
	top, routed := freePort(t), freePort(t)
	s := startServer(t, config{
		Global: `
taskgate {
	account lim-top {
		key key-lim-top
		rate_limit 1/h
	}
	account ten-top {
		key key-ten-top
		rate_limit 1/h
		allow 10.0.0.0/8
	}
	account lim-route {
		key key-lim-route
		rate_limit 1/h
	}
	account ten-route {
		key key-ten-route
		rate_limit 1/h
		allow 10.0.0.0/8
	}
}`,
		Sites: fmt.Sprintf(`
http://:%d {
	respond "top {http.auth.user.id}" 200
	account_rate_limit
	ip_allowlist
	api_key_auth
}

http://:%d {
	route {
		api_key_auth
		ip_allowlist
		account_rate_limit
		respond "route {http.auth.user.id}" 200
	}
}`, top, routed),
	})

	for _, site := range []struct {
		name string
		port int
	}{{"top", top}, {"route", routed}} {
		t.Run(site.name, func(t *testing.T) {
			u := siteURL(site.port, "/v3/tasks")
			lim, ten := "lim-"+site.name, "ten-"+site.name

			// Nothing runs before authentication.
			wantError(t, s.get(t, u, nil), http.StatusUnauthorized, "MISSING_CREDENTIALS")
			// Authentication runs before the allow list (which would
			// answer 401 MISSING_CREDENTIALS without it).
			wantError(t, s.get(t, u, creds(ten, "key-wrong")), http.StatusForbidden, "INVALID_CREDENTIALS")
			// The allow list runs before the limit: ten's burst of 1
			// would give 429 from the second request on.
			for i := 0; i < 3; i++ {
				r := s.get(t, u, creds(ten, "key-"+ten))
				wantError(t, r, http.StatusForbidden, "IP_NOT_ALLOWED")
				if v := r.header.Get("RateLimit"); v != "" {
					t.Errorf("the rate limit ran before the allow list: RateLimit %q", v)
				}
			}
			// The limit runs before respond.
			r := s.get(t, u, creds(lim, "key-"+lim))
			wantOK(t, r, site.name+" "+lim)
			if v := r.header.Get("RateLimit"); v == "" {
				t.Error("no RateLimit header: the limit did not run")
			}
			wantError(t, s.get(t, u, creds(lim, "key-"+lim)), http.StatusTooManyRequests, "TOO_MANY_REQUESTS")
		})
	}

	t.Run("adapted handler order", func(t *testing.T) {
		out, errOut, code := taskgateCmd(t, s.dir, "adapt", "--config", "Caddyfile", "--adapter", "caddyfile")
		if code != 0 {
			t.Fatalf("adapt: exit %d\n%s", code, errOut)
		}
		var cfg struct {
			Apps struct {
				HTTP struct {
					Servers map[string]json.RawMessage `json:"servers"`
				} `json:"http"`
			} `json:"apps"`
		}
		if err := json.Unmarshal([]byte(out), &cfg); err != nil {
			t.Fatalf("adapt output: %v\n%s", err, out)
		}
		if len(cfg.Apps.HTTP.Servers) != 2 {
			t.Fatalf("got %d servers, want 2:\n%s", len(cfg.Apps.HTTP.Servers), out)
		}
		handler := regexp.MustCompile(`"handler":"(\w+)"`)
		want := []string{"api_key_auth", "ip_allowlist", "account_rate_limit", "static_response"}
		for name, srv := range cfg.Apps.HTTP.Servers {
			var got []string
			for _, m := range handler.FindAllStringSubmatch(string(srv), -1) {
				if slices.Contains(want, m[1]) {
					got = append(got, m[1])
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("server %s: handlers in order %v, want %v", name, got, want)
			}
		}
	})
}
