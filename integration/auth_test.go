package integration

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestAPIKeyAuth checks api_key_auth's answers: 401 when a credential is
// missing, 403 for any wrong one, and the account id in
// {http.auth.user.id} for a right one, whichever way the key was
// configured.
func TestAPIKeyAuth(t *testing.T) {
	t.Parallel()
	const (
		alphaOld = "tg_alpha_old_4b1f0e"
		alphaNew = "tg_alpha_new_9c7d22"
		betaKey  = "tg_beta_from_env_51aa03"
		gammaKey = "tg_gamma_plain_e6b812"
	)
	port := freePort(t)
	s := startServer(t, config{
		Global: fmt.Sprintf(`
taskgate {
	# Many refusals from one address: not the throttle's test.
	auth_failures off
	account alpha {
		key_sha256 %s
		key_sha256 %s
	}
	account beta {
		key {env.TG_TEST_BETA_KEY}
	}
	account gamma {
		key %s
	}
}`, sha256Hex(alphaOld), strings.ToUpper(sha256Hex(alphaNew)), gammaKey),
		Sites: fmt.Sprintf(`
http://:%d {
	api_key_auth
	respond "user={http.auth.user.id}" 200
}`, port),
		Env: []string{"TG_TEST_BETA_KEY=" + betaKey},
	})

	tests := []struct {
		name   string
		header http.Header
		status int
		code   string // error code; empty for 200
		user   string // {http.auth.user.id} on 200
	}{
		{name: "no headers", header: nil, status: 401, code: "MISSING_CREDENTIALS"},
		{name: "only account-id", header: http.Header{"Account-Id": {"alpha"}}, status: 401, code: "MISSING_CREDENTIALS"},
		{name: "only api-key", header: http.Header{"Api-Key": {alphaOld}}, status: 401, code: "MISSING_CREDENTIALS"},
		{name: "empty account-id", header: creds("", alphaOld), status: 401, code: "MISSING_CREDENTIALS"},
		{name: "empty api-key", header: creds("alpha", ""), status: 401, code: "MISSING_CREDENTIALS"},
		{name: "unknown account", header: creds("nobody", alphaOld), status: 403, code: "INVALID_CREDENTIALS"},
		{name: "wrong key", header: creds("alpha", "tg_alpha_guess"), status: 403, code: "INVALID_CREDENTIALS"},
		{name: "key of another account", header: creds("alpha", betaKey), status: 403, code: "INVALID_CREDENTIALS"},
		{name: "key differing in case", header: creds("alpha", strings.ToUpper(alphaOld)), status: 403, code: "INVALID_CREDENTIALS"},
		{name: "key_sha256 value as key", header: creds("alpha", sha256Hex(alphaOld)), status: 403, code: "INVALID_CREDENTIALS"},
		{name: "placeholder text as key", header: creds("beta", "{env.TG_TEST_BETA_KEY}"), status: 403, code: "INVALID_CREDENTIALS"},
		{name: "duplicate api-key headers", header: http.Header{"Account-Id": {"alpha"}, "Api-Key": {alphaOld, alphaOld}}, status: 403, code: "INVALID_CREDENTIALS"},
		{name: "duplicate api-key, both keys of the account", header: http.Header{"Account-Id": {"alpha"}, "Api-Key": {alphaOld, alphaNew}}, status: 403, code: "INVALID_CREDENTIALS"},
		{name: "duplicate account-id headers", header: http.Header{"Account-Id": {"alpha", "alpha"}, "Api-Key": {alphaOld}}, status: 403, code: "INVALID_CREDENTIALS"},
		{name: "old key during rotation", header: creds("alpha", alphaOld), status: 200, user: "alpha"},
		{name: "new key during rotation (upper-case key_sha256)", header: creds("alpha", alphaNew), status: 200, user: "alpha"},
		{name: "key from environment", header: creds("beta", betaKey), status: 200, user: "beta"},
		{name: "plain key", header: creds("gamma", gammaKey), status: 200, user: "gamma"},
		{name: "lower-case header names", header: http.Header{"account-id": {"gamma"}, "api-key": {gammaKey}}, status: 200, user: "gamma"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				r := doWith(t, s.client, method, siteURL(port, "/v3/tasks"), tc.header, strings.NewReader(`{}`))
				if tc.code != "" {
					wantError(t, r, tc.status, tc.code)
					continue
				}
				wantOK(t, r, "user="+tc.user)
			}
		})
	}
}

// TestAuthFailuresThrottle checks the throttle of failed authentications:
// with auth_failures 5/m burst 5, an address's 6th failure in a row is
// answered 429 TOO_MANY_FAILED_AUTHENTICATIONS with Retry-After, and so is
// then a right key from it, while a right key from another address
// passes; behind a trusted proxy the address throttled is the forwarded
// client's (the right-most untrusted one, whatever the client writes to its
// left).
func TestAuthFailuresThrottle(t *testing.T) {
	t.Parallel()
	const key = "tg_throttle_right_7a21c4"
	port, port6 := freePort(t), freePort6(t)
	site := func(port int, bind string) string {
		return fmt.Sprintf(`
http://:%d {
	bind %s
	api_key_auth
	respond "user={http.auth.user.id}" 200
}`, port, bind)
	}
	s := startServer(t, config{
		Global: fmt.Sprintf(`
servers {
	trusted_proxies static 127.0.0.1/32
}
taskgate {
	auth_failures 5/m burst 5
	account alpha {
		key_sha256 %s
	}
}`, sha256Hex(key)),
		Sites: site(port, "127.0.0.1") + site(port6, "::1"),
	})
	v4, v6 := siteURL(port, "/v3/tasks"), "http://"+net.JoinHostPort("::1", fmt.Sprint(port6))+"/v3/tasks"
	with := func(h http.Header, xff string) http.Header {
		if xff != "" {
			h.Set("X-Forwarded-For", xff)
		}
		return h
	}
	throttled := func(t *testing.T, r response) {
		t.Helper()
		wantError(t, r, http.StatusTooManyRequests, "TOO_MANY_FAILED_AUTHENTICATIONS")
		ra, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || ra < 1 || ra > 12 {
			t.Errorf("Retry-After %q, want 1 to 12 seconds (one failure back every 12 s)", r.header.Get("Retry-After"))
		}
	}
	spend := func(t *testing.T, xff string) {
		t.Helper()
		for i := range 5 {
			h := creds("alpha", fmt.Sprintf("tg_throttle_guess_%d", i))
			if i == 4 {
				h = http.Header{"Account-Id": {"alpha"}}
			}
			r := s.get(t, v4, with(h, xff))
			if r.status != http.StatusForbidden && r.status != http.StatusUnauthorized {
				t.Fatalf("failure %d: %d %s, want 403 or 401", i+1, r.status, r.body)
			}
		}
		throttled(t, s.get(t, v4, with(creds("alpha", "tg_throttle_guess_6"), xff)))
	}

	t.Run("direct", func(t *testing.T) {
		spend(t, "")
		throttled(t, s.get(t, v4, creds("alpha", key)))
		throttled(t, s.get(t, v4, nil))
		wantOK(t, s.get(t, v6, creds("alpha", key)), "user=alpha")
	})
	t.Run("behind a trusted proxy", func(t *testing.T) {
		wantOK(t, s.get(t, v6, creds("alpha", key)), "user=alpha")
		const client, other = "198.51.100.1", "198.51.100.2"
		spend(t, client)
		throttled(t, s.get(t, v4, with(creds("alpha", key), client)))
		throttled(t, s.get(t, v4, with(creds("alpha", key), other+", "+client)))
		wantOK(t, s.get(t, v4, with(creds("alpha", key), other)), "user=alpha")
		wantOK(t, s.get(t, v4, with(creds("alpha", key), client+", "+other)), "user=alpha")
		if out := s.output(); !strings.Contains(out, `"client":"`+client+`"`) {
			t.Errorf("no log line names the throttled client %s:\n%s", client, out)
		}
	})
}
