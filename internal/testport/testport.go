// Package testport hands out loopback TCP ports for the servers that tests
// and the load harness start.
//
// A port the kernel picks for a listener (":0") comes from its ephemeral
// range, the range it also gives outgoing connections their local ports
// from: between the pick and the server's bind, any connection of the
// machine may take it, and the server fails with "address already in use".
// The ports handed out here lie below that range, where the kernel puts no
// connection, and none is handed out twice in a process.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the smallest port handed out: above the well-known and most
// registered services' ports.
const lowest = 10000

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Pick returns a TCP port on host (an IP literal such as 127.0.0.1 or ::1)
// that was free a moment ago and that this process has not handed out
// before.
func Pick(host string) (int, error) {
	if top := ephemeralLow() - 1; top-lowest >= 1000 {
		for range 200 {
			port := lowest + rand.IntN(top-lowest+1)
			if !claim(port) {
				continue
			}
			if free(host, port) {
				return port, nil
			}
		}
	}
	// No room below the ephemeral range: the kernel's pick.
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if claim(port) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port on %s", host)
}

// claim records port as handed out, and tells whether it was not before.
func claim(port int) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports[port] {
		return false
	}
	handedOut.ports[port] = true
	return true
}

// free tells whether a listener can bind host:port now, and the port on
// every address: many servers listen on all of them (":port").
func free(host string, port int) bool {
	for _, addr := range []string{net.JoinHostPort(host, strconv.Itoa(port)), ":" + strconv.Itoa(port)} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 32768
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return low
}
