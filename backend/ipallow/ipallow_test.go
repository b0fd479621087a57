package ipallow

import (
	"net/netip"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":             "10.0.0.0/8",
		"10.1.2.3/8":             "10.0.0.0/8",
		"192.0.2.7":              "192.0.2.7/32",
		"::1":                    "::1/128",
		"2001:db8::/32":          "2001:db8::/32",
		"::ffff:192.0.2.0/120":   "192.0.2.0/24",
		"::ffff:192.0.2.7":       "192.0.2.7/32",
		" 127.0.0.1/32 ":         "127.0.0.1/32",
		"2001:db8:1:2:3:4:5:6/0": "::/0",
	} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "::/129", "300.1.1.1", "10.0.0.0/x", "fe80::1%eth0", "fe80::%eth0/64", "::ffff:0.0.0.0/80", "example.com", "10.0.0.0/8/8"} {
		if _, err := ParsePrefix(bad); err == nil {
			t.Errorf("ParsePrefix(%q): want an error", bad)
		}
	}
}

func TestAllows(t *testing.T) {
	l, err := Parse([]string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.2.3.4":         true,
		"::ffff:10.2.3.4":  true, // IPv4-mapped is unmapped
		"11.0.0.1":         false,
		"2001:db8::5":      true,
		"2001:db9::5":      false,
		"192.0.2.7":        true,
		"192.0.2.8":        false,
		"fe80::1%eth0":     false,
		"::ffff:192.0.2.7": true,
	} {
		a := netip.MustParseAddr(addr)
		if got := l.Allows(a); got != want {
			t.Errorf("Allows(%s) = %v, want %v", addr, got, want)
		}
	}
	if !List(nil).Allows(netip.MustParseAddr("203.0.113.1")) {
		t.Error("the empty list must allow every address")
	}
}

func TestParseClientIP(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1":        "127.0.0.1",
		"::1":              "::1",
		"::ffff:127.0.0.1": "127.0.0.1",
		"fe80::1%eth0":     "fe80::1",
	} {
		a, err := ParseClientIP(in)
		if err != nil || a.String() != want {
			t.Errorf("ParseClientIP(%q) = %v, %v; want %s", in, a, err, want)
		}
	}
	if _, err := ParseClientIP(""); err == nil {
		t.Error("ParseClientIP(\"\"): want an error")
	}
}

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "::1", "::ffff:1.2.3.4/120", "fe80::1%x/64", "1.2.3.4/33", ""} {
		f.Add(s, "10.1.2.3")
	}
	f.Fuzz(func(t *testing.T, network, client string) {
		p, err := ParsePrefix(network)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("ParsePrefix(%q) = %v: not a canonical prefix", network, p)
		}
		// The prefix's own address is allowed by a list holding it.
		if !(List{p}).Allows(p.Addr()) {
			t.Fatalf("%v does not allow its own address", p)
		}
		if addr, err := ParseClientIP(client); err == nil {
			_ = List{p}.Allows(addr)
		}
	})
}

func TestRightmostUntrusted(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::ffff:192.168.0.0/112")}
	for _, tc := range []struct {
		name   string
		values []string
		want   string // empty: none; "unknown": the zero address
	}{
		{"one address", []string{"192.0.2.7"}, "192.0.2.7"},
		{"client-chosen left entry", []string{"198.51.100.1, 192.0.2.7"}, "192.0.2.7"},
		{"trusted hops skipped", []string{"192.0.2.7, 10.1.1.1, 127.0.0.1"}, "192.0.2.7"},
		{"several lines", []string{"198.51.100.1", "192.0.2.7, 10.0.0.1"}, "192.0.2.7"},
		{"empty entries skipped", []string{"192.0.2.7, , "}, "192.0.2.7"},
		{"a hop unknown", []string{"192.0.2.7, unknown"}, "unknown"},
		{"a hop unknown behind a trusted one", []string{"192.0.2.7, _hidden, 10.0.0.1"}, "unknown"},
		{"garbage left of the client", []string{"not-an-ip, 192.0.2.7"}, "192.0.2.7"},
		{"ports", []string{"198.51.100.1:1234, 192.0.2.7:443"}, "192.0.2.7"},
		{"bracketed IPv6 with a port", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"IPv6", []string{"2001:db8::1, 10.0.0.1"}, "2001:db8::1"},
		{"zone", []string{"fe80::1%eth0"}, "fe80::1"},
		{"mapped", []string{"::ffff:192.0.2.7"}, "192.0.2.7"},
		{"mapped trusted hop", []string{"192.0.2.7, ::ffff:10.0.0.1"}, "192.0.2.7"},
		{"mapped trusted prefix", []string{"192.0.2.7, 192.168.3.4"}, "192.0.2.7"},
		{"all trusted", []string{"10.0.0.1, 127.0.0.1"}, ""},
		{"nothing", nil, ""},
		{"empty", []string{"", " , "}, ""},
		{"unclosed bracket", []string{"[2001:db8::1"}, "unknown"},
		{"garbage left of trusted hops", []string{"not-an-ip, 10.0.0.1"}, "unknown"},
	} {
		got, ok := RightmostUntrusted(tc.values, trusted)
		shown := got.String()
		if ok && !got.IsValid() {
			shown = "unknown"
		}
		if (tc.want == "") == ok || (ok && shown != tc.want) {
			t.Errorf("%s: got %v, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
}

// FuzzRightmostUntrusted feeds arbitrary header values: whatever comes out
// is a valid, unmapped, zoneless address of the input that is not trusted.
func FuzzRightmostUntrusted(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "1.2.3.4, 10.0.0.1", "[::1]:80", "fe80::1%x, ::ffff:1.2.3.4", ",,,", "[", "1.2.3.4:5:6"} {
		f.Add(s, "10.0.0.0/8")
	}
	f.Fuzz(func(t *testing.T, header, network string) {
		var trusted []netip.Prefix
		if p, err := netip.ParsePrefix(network); err == nil {
			trusted = append(trusted, p)
		}
		a, ok := RightmostUntrusted([]string{header}, trusted)
		if !ok || a == (netip.Addr{}) {
			return
		}
		if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
			t.Fatalf("%q gave %v", header, a)
		}
		if containsAddr(trusted, a) {
			t.Fatalf("%q gave trusted %v", header, a)
		}
	})
}

func BenchmarkRightmostUntrusted(b *testing.B) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	values := []string{"198.51.100.1, 192.0.2.7, 10.0.0.5"}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := RightmostUntrusted(values, trusted); !ok {
			b.Fatal("none")
		}
	}
}
