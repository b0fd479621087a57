package egress

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func TestCheckURL(t *testing.T) {
	deny := New(Config{})
	demo := New(Config{
		AllowPrivate:   []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		ProtectedPorts: []uint16{2019},
		LocalAddrs:     []netip.Addr{netip.MustParseAddr("192.0.2.10")},
	})
	// A node with a public address of its own, the admin endpoint on it.
	public := New(Config{ProtectedPorts: []uint16{2019}, LocalAddrs: []netip.Addr{netip.MustParseAddr("93.184.215.14")}})
	tests := []struct {
		url    string
		policy *Policy
		reason string // "" when allowed
	}{
		{"https://hooks.example.com/x", deny, ""},
		{"http://93.184.215.14/x", deny, ""},
		{"http://[2606:4700::1]/x", deny, ""},
		{"http://127.0.0.1:2019/stop", deny, "loopback address"},
		{"http://127.0.0.2/", deny, "loopback address"},
		{"http://localhost:9002/", deny, "loopback address"},
		{"http://LocalHost./", deny, "loopback address"},
		{"http://api.localhost/", deny, "loopback address"},
		{"http://[::1]/", deny, "loopback address"},
		{"http://[::ffff:127.0.0.1]/", deny, "loopback address"},
		{"http://[::ffff:7f00:1]/", deny, "loopback address"},
		{"http://[::127.0.0.1]/", deny, "reserved address"},
		{"http://0.0.0.0/", deny, "unspecified address"},
		{"http://[::]/", deny, "unspecified address"},
		{"http://0/", deny, "unspecified address"},
		{"http://2130706433/", deny, "loopback address"},
		{"http://0x7f000001/", deny, "loopback address"},
		{"http://0x7f.1/", deny, "loopback address"},
		{"http://0177.0.0.1/", deny, "loopback address"},
		{"http://127.1/", deny, "loopback address"},
		{"http://169.254.169.254/latest/meta-data/", deny, "link-local address"},
		{"http://[fe80::1%25eth0]/", deny, "link-local address"},
		{"http://10.1.2.3/", deny, "private address"},
		{"http://172.16.0.1/", deny, "private address"},
		{"http://192.168.1.1/", deny, "private address"},
		{"http://[fd00::1]/", deny, "private address"},
		{"http://[fc00::1]/", deny, "private address"},
		{"http://100.64.0.1/", deny, "shared (CGNAT) address"},
		{"http://224.0.0.1/", deny, "multicast address"},
		{"http://[ff02::1]/", deny, "multicast address"},
		{"http://255.255.255.255/", deny, "reserved address"},
		{"http://198.18.0.1/", deny, "benchmarking address"},
		{"http://192.0.2.1/", deny, "documentation address"},
		{"http://[64:ff9b::a9fe:a9fe]/", deny, "link-local address"},
		{"http://[64:ff9b::5db8:d70e]/", deny, ""},
		{"http://[2002:7f00:1::]/", deny, "reserved address"},
		{"http://[2001::1]/", deny, "reserved address"},
		// The operator's opt-in, and the admin endpoint it never opens.
		{"http://127.0.0.1:9002/hooks", demo, ""},
		{"http://127.0.0.1:2019/stop", demo, "the admin endpoint is never a destination"},
		{"http://localhost:2019/stop", demo, "the admin endpoint is never a destination"},
		{"http://[::1]:9002/", demo, "loopback address"},
		{"http://127.0.0.2:9002/", demo, "loopback address"},
		{"http://192.0.2.10:2019/", demo, "the admin endpoint is never a destination"},
		{"http://192.0.2.10:2020/", demo, "documentation address"},
		{"http://0.0.0.0:2019/", demo, "the admin endpoint is never a destination"},
		{"https://hooks.example.com:2019/", demo, ""},
		{"http://93.184.215.14:2019/", public, "the admin endpoint is never a destination"},
		{"http://[64:ff9b::5db8:d70e]:2019/", public, "the admin endpoint is never a destination"},
		{"http://[64:ff9b::5db8:d70e]:2020/", public, ""},
	}
	for _, tt := range tests {
		err := tt.policy.CheckURL(tt.url)
		if tt.reason == "" {
			if err != nil {
				t.Errorf("CheckURL(%s) = %v, want allowed", tt.url, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Reason != tt.reason || !errors.Is(err, ErrNotAllowed) {
			t.Errorf("CheckURL(%s) = %v, want refused as %q", tt.url, err, tt.reason)
		}
	}
}

func TestControl(t *testing.T) {
	p := New(Config{
		AllowPrivate:   []netip.Prefix{netip.MustParsePrefix("::ffff:127.0.0.1/128")},
		ProtectedPorts: []uint16{2019},
		LocalAddrs:     []netip.Addr{},
	})
	for addr, allowed := range map[string]bool{
		"127.0.0.1:9002":        true,
		"[::ffff:127.0.0.1]:80": true,
		"127.0.0.1:2019":        false,
		"[::1]:9002":            false,
		"10.0.0.1:443":          false,
		"93.184.215.14:443":     true,
		"[2606:4700::1]:443":    true,
		"not-an-address:80":     false,
	} {
		err := p.Control("tcp", addr, nil)
		if (err == nil) != allowed {
			t.Errorf("Control(%s) = %v, want allowed %v", addr, err, allowed)
		}
		if err != nil && !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Control(%s) = %v, not ErrNotAllowed", addr, err)
		}
	}
}

func TestParseLiteral(t *testing.T) {
	for host, want := range map[string]string{
		"127.0.0.1":   "127.0.0.1",
		"2130706433":  "127.0.0.1",
		"0x7F000001":  "127.0.0.1",
		"127.1":       "127.0.0.1",
		"10.1.65535":  "10.1.255.255",
		"0300.0250.1": "192.168.0.1",
		"::1":         "::1",
	} {
		got, ok := ParseLiteral(host)
		if !ok || got.String() != want {
			t.Errorf("ParseLiteral(%q) = %v, %v; want %s", host, got, ok, want)
		}
	}
	for _, host := range []string{"", "example.com", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "4294967296", "0x", "1..2", "09.1.1.1", "-1", "+1", "1_0"} {
		if got, ok := ParseLiteral(host); ok {
			t.Errorf("ParseLiteral(%q) = %v, want not a literal", host, got)
		}
	}
}

// FuzzCheckURL checks that the URL check never panics and never lets
// through a literal address that the dial-time check refuses: what is
// accepted when set is accepted when connected to.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"http://127.0.0.1:2019/stop", "http://[::ffff:127.0.0.1]/", "http://2130706433/",
		"https://hooks.example.com/x", "http://[fe80::1%25eth0]/", "http://0x7f.1/",
		"http://localhost/", "http://x.localhost:80/", "http://[64:ff9b::a9fe:a9fe]/",
	} {
		f.Add(s)
	}
	p := New(Config{
		AllowPrivate:   []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		ProtectedPorts: []uint16{2019},
		LocalAddrs:     []netip.Addr{},
	})
	f.Fuzz(func(t *testing.T, raw string) {
		err := p.CheckURL(raw)
		if err != nil && !errors.Is(err, ErrNotAllowed) {
			t.Fatalf("CheckURL(%q) = %v, not ErrNotAllowed", raw, err)
		}
		u, perr := url.Parse(raw)
		if err != nil || perr != nil {
			return
		}
		host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
		addr, ok := ParseLiteral(host)
		if !ok {
			return
		}
		port := uint16(80)
		if u.Port() != "" {
			return // the port's parse is CheckURL's own
		}
		if cerr := p.CheckAddr(netip.AddrPortFrom(addr, port)); cerr != nil {
			t.Fatalf("CheckURL(%q) allowed %s, which CheckAddr refuses: %v", raw, addr, cerr)
		}
	})
}

// BenchmarkControl is the cost the dial-time check adds to each new
// connection of a delivery.
func BenchmarkControl(b *testing.B) {
	p := New(Config{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, ProtectedPorts: []uint16{2019}})
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Control("tcp4", "93.184.215.14:443", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckURL is the cost the URL check adds to each attempt.
func BenchmarkCheckURL(b *testing.B) {
	p := New(Config{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, ProtectedPorts: []uint16{2019}})
	b.ReportAllocs()
	for b.Loop() {
		if err := p.CheckURL("https://hooks.acme.example/tasks?tenant=7"); err != nil {
			b.Fatal(err)
		}
	}
}
