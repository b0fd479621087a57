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

func TestFreeSeesAPortInUse(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", ":0"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if free("127.0.0.1", port) {
			t.Errorf("port %d, held on %s: free", port, addr)
		}
		l.Close()
		if !free("127.0.0.1", port) {
			t.Errorf("port %d, let go: not free", port)
		}
	}
}
