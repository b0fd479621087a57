package integration

import (
	"fmt"
	"net/http"
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
