package testport

import (
	"net"
	"strconv"
	"testing"
)

func TestPickHandsOutFreeDistinctPortsBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		port, err := Pick("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
		if low-1-lowest >= 1000 && (port < lowest || port >= low) {
			t.Errorf("port %d outside [%d, %d)", port, lowest, low)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d: %v", port, err)
		}
		l.Close()
	}
}

func TestPickSkipsAPortInUse(t *testing.T) {
	port, err := Pick("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	// Held: a second pick may not hand it out, nor any port bound now.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for range 50 {
		next, err := Pick("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if next == port {
			t.Fatalf("port %d handed out again while held", port)
		}
	}
}
