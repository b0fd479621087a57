package egress

import "net/netip"

// reservedRange is a network a webhook may not reach, and what to call it.
type reservedRange struct {
	prefix netip.Prefix
	reason string
}

// reserved lists the IANA special-purpose ranges (RFC 6890 and its
// successors) that are not globally reachable unicast: loopback, the
// unspecified and "this network" ranges, private networks (RFC 1918, ULA),
// link-local (where cloud metadata services live), shared address space
// (CGNAT), multicast, documentation, benchmarking and reserved space, and
// the IPv6 transition ranges that embed an IPv4 address a relay would
// reach for us (6to4, Teredo; NAT64 is checked on its embedded address).
var reserved = func() []reservedRange {
	var rs []reservedRange
	add := func(reason string, prefixes ...string) {
		for _, p := range prefixes {
			rs = append(rs, reservedRange{netip.MustParsePrefix(p), reason})
		}
	}
	add("loopback", "127.0.0.0/8", "::1/128")
	add("unspecified", "0.0.0.0/8", "::/128")
	add("private", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
	add("link-local", "169.254.0.0/16", "fe80::/10")
	add("shared (CGNAT)", "100.64.0.0/10")
	add("multicast", "224.0.0.0/4", "ff00::/8")
	add("reserved", "240.0.0.0/4", // 255.255.255.255 included
		"192.0.0.0/24",   // IETF protocol assignments
		"192.88.99.0/24", // 6to4 relay anycast
		"::/8",           // IPv4-compatible, IPv4-translated and other reserved IPv6
		"100::/64",       // discard-only
		"2001::/23",      // IETF protocol assignments, Teredo included
		"2002::/16",      // 6to4
		"64:ff9b:1::/48", // local-use NAT64
		"5f00::/16",      // SRv6 SIDs
		"fec0::/10",      // site-local (deprecated)
	)
	add("documentation", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
	add("benchmarking", "198.18.0.0/15")
	return rs
}()

// nat64 is the well-known NAT64 prefix (RFC 6052): its addresses reach the
// IPv4 address in their last 32 bits.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Reserved names the special-purpose range addr is in ("loopback",
// "private", …), or returns "" for a globally reachable unicast address.
// IPv4-mapped addresses are judged as their IPv4 address, NAT64 ones by the
// IPv4 address they embed.
func Reserved(addr netip.Addr) string {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return "invalid"
	}
	if nat64.Contains(addr) {
		b := addr.As16()
		if r := Reserved(netip.AddrFrom4([4]byte(b[12:]))); r != "" {
			return r
		}
		return ""
	}
	for _, r := range reserved {
		if r.prefix.Contains(addr) {
			return r.reason
		}
	}
	return ""
}
