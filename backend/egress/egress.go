// Package egress decides which network destinations the gateway may reach
// for an account. Webhook and failure-webhook URLs come from customers: one
// aimed inward (loopback, a private network, a cloud metadata address, the
// admin endpoint) would make the gateway an open door into the network it
// runs in. A Policy refuses such destinations twice: when a URL is set
// (CheckURL, on its literal host), and when a connection is made (Control,
// on the address actually connected to, after every DNS answer).
//
// Sources are not checked: the operator writes their URLs, and they are
// usually on private networks.
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// ErrNotAllowed is the error of a destination the policy refuses; every
// *Error wraps it.
var ErrNotAllowed = errors.New("destination not allowed")

// Error says why a destination is refused.
type Error struct {
	// Host is the destination as given (a URL's host) or connected to.
	Host string
	// Reason names the range the address is in ("loopback", "private", …)
	// or says it is the admin endpoint.
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("destination %s is not allowed: %s", e.Host, e.Reason)
}

// Unwrap makes errors.Is(err, ErrNotAllowed) hold.
func (e *Error) Unwrap() error { return ErrNotAllowed }

// Config configures a Policy. The zero value refuses every special-purpose
// address.
type Config struct {
	// AllowPrivate lists networks that may be reached although they are in
	// a refused range (a receiver on the operator's own network, a demo on
	// loopback).
	AllowPrivate []netip.Prefix
	// ProtectedPorts are ports that are never reachable on any address of
	// this machine (loopback, unspecified, or an interface's), whatever
	// AllowPrivate says: the admin endpoint's.
	ProtectedPorts []uint16
	// LocalAddrs lists this machine's addresses, for ProtectedPorts.
	// Default: the addresses of its network interfaces, read once by New.
	LocalAddrs []netip.Addr
}

// Policy decides whether a destination may be reached. Safe for concurrent
// use; its methods do not allocate unless they refuse.
type Policy struct {
	allow []netip.Prefix
	ports []uint16
	local []netip.Addr
}

// New returns the policy of c.
func New(c Config) *Policy {
	p := &Policy{ports: slices.Clone(c.ProtectedPorts)}
	for _, pfx := range c.AllowPrivate {
		if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		}
		p.allow = append(p.allow, pfx.Masked())
	}
	local := c.LocalAddrs
	if local == nil && len(p.ports) > 0 {
		local = interfaceAddrs()
	}
	for _, a := range local {
		p.local = append(p.local, a.Unmap().WithZone(""))
	}
	return p
}

// interfaceAddrs returns the addresses of this machine's interfaces; none
// when they cannot be read (the loopback and unspecified ranges are
// protected all the same).
func interfaceAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// CheckAddr tells whether a connection to ap is allowed: nil, or an *Error.
func (p *Policy) CheckAddr(ap netip.AddrPort) error {
	return p.check(ap.Addr(), ap.Port(), "")
}

func (p *Policy) check(addr netip.Addr, port uint16, host string) error {
	addr = addr.Unmap().WithZone("")
	if p.isProtected(addr, port) {
		return &Error{Host: hostOr(host, addr, port), Reason: "the admin endpoint is never a destination"}
	}
	reason := Reserved(addr)
	if reason == "" {
		return nil
	}
	for _, pfx := range p.allow {
		if pfx.Contains(addr) {
			return nil
		}
	}
	return &Error{Host: hostOr(host, addr, port), Reason: reason + " address"}
}

func hostOr(host string, addr netip.Addr, port uint16) string {
	if host != "" {
		return host
	}
	return netip.AddrPortFrom(addr, port).String()
}

// isProtected tells whether addr:port is one of the protected ports on this
// machine. A NAT64 address reaches the IPv4 address it embeds: this
// machine's own, through the network's translator.
func (p *Policy) isProtected(addr netip.Addr, port uint16) bool {
	if !slices.Contains(p.ports, port) {
		return false
	}
	if nat64.Contains(addr) {
		b := addr.As16()
		addr = netip.AddrFrom4([4]byte(b[12:]))
	}
	// 0.0.0.0 and :: connect to this machine too.
	return addr.IsLoopback() || addr.IsUnspecified() || slices.Contains(p.local, addr)
}

// Control is a net.Dialer's Control function: it refuses a connection to an
// address the policy does not allow. It runs after name resolution, once
// for each address tried, so a name that resolves inward, or whose answer
// changed since it was checked, is caught on the address itself.
func (p *Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &Error{Host: address, Reason: "not an IP address and port"}
	}
	return p.CheckAddr(ap)
}

// CheckURL checks a URL's destination as far as it can be known without
// resolving it: a literal address (in any spelling that a resolver takes,
// IPv4-mapped and inet_aton forms such as "2130706433" or "0x7f.1"
// included) and the names localhost and *.localhost, which always mean
// loopback. Other names pass; Control checks what they resolve to. It does
// not check the URL's form (account.ValidateWebhookURL does).
func (p *Policy) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return &Error{Host: raw, Reason: "not a URL"}
	}
	return p.CheckParsedURL(u)
}

// CheckParsedURL is CheckURL of a URL already parsed (a request's).
func (p *Policy) CheckParsedURL(u *url.URL) error {
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	var port uint16 = 80
	if u.Scheme == "https" {
		port = 443
	}
	if s := u.Port(); s != "" {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return &Error{Host: u.Host, Reason: "not a valid port"}
		}
		port = uint16(n)
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		for _, a := range loopbacks {
			if err := p.check(a, port, u.Host); err != nil {
				return err
			}
		}
		return nil
	}
	if addr, ok := ParseLiteral(host); ok {
		return p.check(addr, port, u.Host)
	}
	return nil
}

var loopbacks = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()}

// ParseLiteral reads host as an IP address the way resolvers do: the forms
// netip takes (IPv6 with or without zone, dotted IPv4), and the inet_aton
// forms of IPv4 that getaddrinfo takes without a DNS look-up: one to four
// parts, each decimal, octal (leading 0) or hex (0x), the last filling the
// remaining bytes ("127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1").
func ParseLiteral(host string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, true
	}
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, s := range parts {
		v, ok := atonPart(s)
		if !ok {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if last >= 1<<(32-8*(len(vals)-1)) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// atonPart parses one part of an inet_aton address.
func atonPart(s string) (uint64, bool) {
	base := 10
	switch {
	case s == "":
		return 0, false
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	for _, c := range s {
		if c == '+' || c == '-' || c == '_' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, base, 32)
	return v, err == nil
}
