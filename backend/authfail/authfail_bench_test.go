package authfail

import (
	"net/netip"
	"testing"
)

// BenchmarkCheck measures the look before credentials are checked: with
// an empty table (no recent failures anywhere), and with a full one for an
// address it does not hold and for one it holds.
func BenchmarkCheck(b *testing.B) {
	l := mustLimit(b, "20/m", 20)
	a := netip.MustParseAddr("2001:db8::7")
	b.Run("empty", func(b *testing.B) {
		th := New(Config{})
		b.ReportAllocs()
		for b.Loop() {
			th.Check(a, l)
		}
	})
	full := New(Config{})
	for i := range DefaultMaxAddresses {
		full.Fail(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), l)
	}
	b.Run("untracked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			full.Check(a, l)
		}
	})
	tracked := netip.AddrFrom4([4]byte{10, 0, 0, 1})
	b.Run("tracked", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			full.Check(tracked, l)
		}
	})
}

// BenchmarkFail measures spending a failure: for one address, and for a
// new address each time into a full table (an attacker rotating
// addresses, every failure evicting an entry).
func BenchmarkFail(b *testing.B) {
	l := mustLimit(b, "1000000000/s", 1)
	b.Run("one address", func(b *testing.B) {
		th := New(Config{})
		a := netip.MustParseAddr("192.0.2.7")
		b.ReportAllocs()
		for b.Loop() {
			th.Fail(a, l)
		}
	})
	b.Run("rotating addresses", func(b *testing.B) {
		th := New(Config{})
		slow := mustLimit(b, "1/h", 1)
		i := uint32(0)
		b.ReportAllocs()
		for b.Loop() {
			i++
			th.Fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), slow)
		}
		if th.Len() > DefaultMaxAddresses {
			b.Fatalf("%d addresses tracked", th.Len())
		}
	})
}
