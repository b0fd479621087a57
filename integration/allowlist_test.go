package integration

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
)

// allowlistAccounts are the accounts of the ip_allowlist tests; each key is
// "key-" + the account id.
const allowlistAccounts = `
taskgate {
	account loop4 {
		key key-loop4
		allow 127.0.0.1/32
	}
	account single {
		key key-single
		allow 127.0.0.1
	}
	account mapped {
		key key-mapped
		allow ::ffff:127.0.0.1/128
	}
	account ten {
		key key-ten
		allow 10.0.0.0/8
	}
	account several {
		key key-several
		allow 10.0.0.0/8 192.0.2.0/24
		allow 127.0.0.0/8
	}
	account loop6 {
		key key-loop6
		allow ::1/128
	}
	account any {
		key key-any
	}
}`

// allowlistSite is a site running the chain on port, bound to bind.
func allowlistSite(port int, bind string) string {
	return fmt.Sprintf(`
http://:%d {
	bind %s
	api_key_auth
	ip_allowlist
	respond "ok {http.auth.user.id}" 200
}`, port, bind)
}

type allowlistCase struct {
	name    string
	account string
	header  http.Header // added to the credentials
	allowed bool
}

func runAllowlistCases(t *testing.T, s *server, base string, cases []allowlistCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := creds(tc.account, "key-"+tc.account)
			for k, v := range tc.header {
				h[k] = v
			}
			r := s.get(t, base+"/v3/tasks", h)
			if tc.allowed {
				wantOK(t, r, "ok "+tc.account)
				return
			}
			wantError(t, r, http.StatusForbidden, "IP_NOT_ALLOWED")
		})
	}
}

// TestIPAllowlist checks the allow lists against the peer address over
// IPv4, that forwarding headers from an untrusted peer are ignored, and that
// ip_allowlist without authentication before it refuses every request.
func TestIPAllowlist(t *testing.T) {
	t.Parallel()
	port, bare := freePort(t), freePort(t)
	s := startServer(t, config{
		Global: allowlistAccounts,
		Sites: allowlistSite(port, "127.0.0.1") + fmt.Sprintf(`
http://:%d {
	ip_allowlist
	respond "should not be reached" 200
}`, bare),
	})
	xff := http.Header{"X-Forwarded-For": {"10.1.2.3"}}
	runAllowlistCases(t, s, siteURL(port, ""), []allowlistCase{
		{name: "127.0.0.1/32 from 127.0.0.1", account: "loop4", allowed: true},
		{name: "single address", account: "single", allowed: true},
		{name: "IPv4-mapped prefix", account: "mapped", allowed: true},
		{name: "several allow lines", account: "several", allowed: true},
		{name: "no list", account: "any", allowed: true},
		{name: "10.0.0.0/8 from 127.0.0.1", account: "ten", allowed: false},
		{name: "::1/128 from 127.0.0.1", account: "loop6", allowed: false},
		{name: "spoofed X-Forwarded-For", account: "ten", header: xff, allowed: false},
		{name: "spoofed X-Real-IP and Forwarded", account: "ten", header: http.Header{
			"X-Real-Ip": {"10.1.2.3"}, "Forwarded": {"for=10.1.2.3"}, "X-Forwarded-For": {"10.1.2.3, 10.9.9.9"},
		}, allowed: false},
		{name: "X-Forwarded-For does not refuse an allowed peer", account: "loop4", header: xff, allowed: true},
	})

	t.Run("wrong key is refused before the allow list", func(t *testing.T) {
		wantError(t, s.get(t, siteURL(port, "/"), creds("ten", "key-wrong")), http.StatusForbidden, "INVALID_CREDENTIALS")
	})
	t.Run("without authentication", func(t *testing.T) {
		for _, h := range []http.Header{nil, creds("loop4", "key-loop4"), creds("any", "key-any")} {
			wantError(t, s.get(t, siteURL(bare, "/"), h), http.StatusUnauthorized, "MISSING_CREDENTIALS")
		}
	})
}

// TestIPAllowlistIPv6 checks the allow lists of requests that come from ::1.
func TestIPAllowlistIPv6(t *testing.T) {
	t.Parallel()
	port := freePort6(t)
	s := startServer(t, config{Global: allowlistAccounts, Sites: allowlistSite(port, "::1")})
	base := "http://" + net.JoinHostPort("::1", fmt.Sprint(port))
	runAllowlistCases(t, s, base, []allowlistCase{
		{name: "::1/128 from ::1", account: "loop6", allowed: true},
		{name: "no list", account: "any", allowed: true},
		{name: "127.0.0.1/32 from ::1", account: "loop4", allowed: false},
		{name: "IPv4-mapped 127.0.0.1 from ::1", account: "mapped", allowed: false},
		{name: "127.0.0.0/8 and others from ::1", account: "several", allowed: false},
		{name: "spoofed X-Forwarded-For", account: "ten", header: http.Header{"X-Forwarded-For": {"10.1.2.3"}}, allowed: false},
	})
}

// TestIPAllowlistTrustedProxies checks that with trusted_proxies the
// forwarded client address is the one checked.
func TestIPAllowlistTrustedProxies(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	s := startServer(t, config{
		Global: `
servers {
	trusted_proxies static 127.0.0.1/32
}` + allowlistAccounts,
		Sites: allowlistSite(port, "127.0.0.1"),
	})
	fwd := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	runAllowlistCases(t, s, siteURL(port, ""), []allowlistCase{
		{name: "forwarded 10.1.2.3 in 10.0.0.0/8", account: "ten", header: fwd("10.1.2.3"), allowed: true},
		{name: "forwarded 192.0.2.1 not in 10.0.0.0/8", account: "ten", header: fwd("192.0.2.1"), allowed: false},
		{name: "forwarded 192.0.2.1 in a second network", account: "several", header: fwd("192.0.2.1"), allowed: true},
		{name: "forwarded 10.1.2.3 not in 127.0.0.1/32", account: "loop4", header: fwd("10.1.2.3"), allowed: false},
		{name: "forwarded 2001:db8::1 not in ::1/128", account: "loop6", header: fwd("2001:db8::1"), allowed: false},
		{name: "not forwarded: the proxy's own address", account: "ten", allowed: false},
		{name: "not forwarded, proxy allowed", account: "loop4", allowed: true},
	})
}

// TestIPAllowlistRightmostUntrusted checks that behind trusted_proxies,
// without trusted_proxies_strict, the address checked is the right-most
// forwarded one that is not a trusted proxy: an allowed address written
// to its left by the client does not pass. With client_ip caddy (unsafe,
// documented as such) Caddy's left-most address is checked instead.
func TestIPAllowlistRightmostUntrusted(t *testing.T) {
	t.Parallel()
	const proxies = `
servers {
	trusted_proxies static 127.0.0.1/32 172.16.0.0/12
}`
	port := freePort(t)
	s := startServer(t, config{Global: proxies + allowlistAccounts, Sites: allowlistSite(port, "127.0.0.1")})
	xff := func(values ...string) http.Header { return http.Header{"X-Forwarded-For": values} }
	runAllowlistCases(t, s, siteURL(port, ""), []allowlistCase{
		{name: "allowed address left of a refused one", account: "ten", header: xff("10.1.2.3, 192.0.2.1"), allowed: false},
		{name: "allowed address on an earlier header line", account: "ten", header: xff("10.1.2.3", "192.0.2.1"), allowed: false},
		{name: "allowed right-most address", account: "ten", header: xff("192.0.2.1, 10.1.2.3"), allowed: true},
		{name: "allowed address behind a trusted hop", account: "ten", header: xff("192.0.2.1, 10.1.2.3, 172.16.0.9"), allowed: true},
		{name: "refused address behind a trusted hop", account: "ten", header: xff("10.1.2.3, 192.0.2.1, 172.16.0.9"), allowed: false},
		{name: "every forwarded address trusted: the peer", account: "loop4", header: xff("172.16.0.8, 172.16.0.9"), allowed: true},
	})

	t.Run("client_ip caddy", func(t *testing.T) {
		t.Parallel()
		port := freePort(t)
		s := startServer(t, config{
			Global: proxies + strings.Replace(allowlistAccounts, "taskgate {", "taskgate {\n\tclient_ip caddy", 1),
			Sites:  allowlistSite(port, "127.0.0.1"),
		})
		runAllowlistCases(t, s, siteURL(port, ""), []allowlistCase{
			{name: "Caddy's left-most address", account: "ten", header: xff("10.1.2.3, 192.0.2.1"), allowed: true},
		})
	})
}
