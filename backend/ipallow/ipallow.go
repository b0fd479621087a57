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
