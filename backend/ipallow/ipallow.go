// Package ipallow decides whether a client address is in an account's list
// of allowed networks.
package ipallow

import (
	"fmt"
	"net/netip"
	"strings"
)

// List is a set of allowed networks. The empty list allows every address.
type List []netip.Prefix

// ParsePrefix parses a CIDR ("10.0.0.0/8", "2001:db8::/32") or a single
// address ("192.0.2.7", "::1"), which stands for itself alone. IPv4-mapped
// IPv6 forms are unmapped, and zones are refused: client addresses carry
// none.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("network %q: zones are not allowed", s)
	}
	if !strings.Contains(s, "/") {
		addr, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("network %q: not a CIDR or IP address", s)
		}
		addr = addr.Unmap()
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("network %q: not a CIDR or IP address", s)
	}
	if p.Addr().Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			return netip.Prefix{}, fmt.Errorf("network %q: IPv4-mapped prefix shorter than /96", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), bits)
	}
	return p.Masked(), nil
}

// Parse parses each network of networks with ParsePrefix.
func Parse(networks []string) (List, error) {
	if len(networks) == 0 {
		return nil, nil
	}
	l := make(List, 0, len(networks))
	for _, n := range networks {
		p, err := ParsePrefix(n)
		if err != nil {
			return nil, err
		}
		l = append(l, p)
	}
	return l, nil
}

// Allows tells whether addr is in the list (always, for the empty list).
func (l List) Allows(addr netip.Addr) bool {
	if len(l) == 0 {
		return true
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range l {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ParseClientIP parses a client address as Caddy records it ("192.0.2.7",
// "::1", possibly with a zone or in IPv4-mapped form).
func ParseClientIP(s string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return addr.Unmap().WithZone(""), nil
}

// RightmostUntrusted reads the values of a forwarding header such as
// X-Forwarded-For (each a comma-separated list of addresses, optionally
// with a port, several lines read as one list) from the right and returns
// the first valid address that trusted does not contain. Each proxy
// appends the address it was connected from, so that address is the one
// the nearest untrusted hop connected from: a client can put anything to
// its left, but not there. IPv4-mapped addresses are unmapped and zones
// dropped; empty entries are skipped. An entry that is not an address
// (a proxy's "unknown", or an obfuscated name) ends the reading: the hop
// it stands for is unknown, and what lies to its left may be the client's
// own writing, so addr is the zero address (which no allowlist holds),
// with ok true. ok is false when every entry is a trusted address.
func RightmostUntrusted(values []string, trusted []netip.Prefix) (addr netip.Addr, ok bool) {
	for i := len(values) - 1; i >= 0; i-- {
		list := values[i]
		for list != "" {
			entry := list
			if comma := strings.LastIndexByte(list, ','); comma >= 0 {
				entry, list = list[comma+1:], list[:comma]
			} else {
				list = ""
			}
			if strings.TrimSpace(entry) == "" {
				continue
			}
			a, valid := parseForwarded(entry)
			if !valid {
				return netip.Addr{}, true
			}
			if !containsAddr(trusted, a) {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// parseForwarded parses one entry of a forwarding header: "192.0.2.7",
// "192.0.2.7:443", "2001:db8::1", "[2001:db8::1]:443", possibly with
// spaces around and a zone.
func parseForwarded(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		s = s[1:end]
	} else if colon := strings.IndexByte(s, ':'); colon >= 0 && strings.IndexByte(s[colon+1:], ':') < 0 {
		// One colon: an IPv4 address with a port. IPv6 has two or more.
		s = s[:colon]
	}
	if pct := strings.IndexByte(s, '%'); pct >= 0 {
		s = s[:pct]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// containsAddr tells whether a prefix of ps contains a, comparing
// IPv4-mapped prefixes as IPv4.
func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 && netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Contains(a) {
			return true
		}
	}
	return false
}
