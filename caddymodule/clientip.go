package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"unsafe"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/taskgate/taskgate/backend/ipallow"
)

// The client address modes of the app's ClientIP.
const (
	// clientIPRightmost is the right-most address of the client IP
	// headers that is not a trusted proxy, whatever the server's
	// trusted_proxies_strict says.
	clientIPRightmost = "rightmost_untrusted"
	// clientIPCaddy is Caddy's client IP as it is: behind trusted proxies
	// without trusted_proxies_strict, the left-most forwarded address,
	// which the client chooses.
	clientIPCaddy = "caddy"
)

// validateClientIP checks a client_ip mode.
func validateClientIP(mode string) error {
	switch mode {
	case "", clientIPRightmost, clientIPCaddy:
		return nil
	}
	return fmt.Errorf("client_ip %q: want %s or %s", mode, clientIPRightmost, clientIPCaddy)
}

// clientIPMode is the app's ClientIP: how handlers find the client's
// address.
type clientIPMode string

// clientAddr is clientIPMode(a.ClientIP).addr.
func (a *App) clientAddr(r *http.Request) netip.Addr { return clientIPMode(a.ClientIP).addr(r) }

// addr returns the address of the request's client as ip_allowlist
// and the auth_failures throttle see it: the zero Addr when there is none.
//
// From an untrusted peer it is Caddy's client IP. From a trusted proxy,
// unless the app's client_ip is "caddy", it is the right-most address of
// the client IP headers that is not a trusted proxy, read by
// ipallow.RightmostUntrusted: without trusted_proxies_strict Caddy takes
// the left-most one, which the client writes, and with it Caddy skips an
// entry that is not an address (a proxy's "unknown"), which lets the one
// the client wrote to its left count.
func (mode clientIPMode) addr(r *http.Request) netip.Addr {
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	ip, _ := vars[caddyhttp.ClientIPVarKey].(string)
	if trusted, _ := vars[caddyhttp.TrustedProxyVarKey].(bool); !trusted || mode == clientIPCaddy {
		return parseClientIP(ip)
	}
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil {
		return parseClientIP(ip)
	}
	var ranges []netip.Prefix
	if src := trustedProxies(srv); src != nil {
		ranges = src.GetIPRanges(r)
	}
	for _, name := range srv.ClientIPHeaders {
		if addr, ok := ipallow.RightmostUntrusted(r.Header.Values(name), ranges); ok {
			return addr
		}
	}
	// Every forwarded address is a trusted proxy's, or none was sent:
	// the client is the peer, as Caddy has it then.
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return parseClientIP(host)
}

func parseClientIP(s string) netip.Addr {
	addr, err := ipallow.ParseClientIP(s)
	if err != nil {
		return netip.Addr{}
	}
	return addr
}

// trustedProxiesOffset is where a Caddy server keeps its trusted_proxies
// source once provisioned. Caddy does not export it, and reading the
// client IP headers from the right needs it; a test checks that it is
// found in the Caddy version built against. Should a later Caddy move it,
// it is not found and no proxy counts as trusted here: the right-most
// forwarded address is used, which the nearest proxy wrote and no client
// can choose (behind a chain of several proxies, requests would then be
// refused, never let through).
var trustedProxiesOffset, trustedProxiesFound = func() (uintptr, bool) {
	f, ok := reflect.TypeFor[caddyhttp.Server]().FieldByName("trustedProxies")
	return f.Offset, ok && f.Type == reflect.TypeFor[caddyhttp.IPRangeSource]()
}()

// trustedProxies returns the trusted_proxies source of a provisioned
// server, nil when it has none or it cannot be read.
func trustedProxies(srv *caddyhttp.Server) caddyhttp.IPRangeSource {
	if !trustedProxiesFound {
		return nil
	}
	return *(*caddyhttp.IPRangeSource)(unsafe.Add(unsafe.Pointer(srv), trustedProxiesOffset))
}
