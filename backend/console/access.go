package console

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// forwardingHeaders are those a proxy adds to a request it passes on.
var forwardingHeaders = [...]string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"}

// FromThisMachine tells whether a request comes from a program on this
// machine, for this machine: the peer is a loopback address; no proxy
// passed it on (a proxy or tunnel on this machine would make every remote
// client a loopback peer); and the Host names loopback, so that a page of
// another site whose name was made to resolve to 127.0.0.1 (DNS
// rebinding) does not count as the console's own.
func FromThisMachine(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	if peer, err := netip.ParseAddr(host); err != nil || !peer.Unmap().IsLoopback() {
		return false
	}
	for _, name := range forwardingHeaders {
		if _, ok := r.Header[name]; ok {
			return false
		}
	}
	return loopbackHost(r.Host)
}

// loopbackHost tells whether a Host header names this machine: localhost
// or a loopback address, with or without a port.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}
