//go:build !linux

package main

import (
	"errors"
	"time"
)

// cpuTimes is only implemented on Linux; elsewhere the CPU rows stay empty.
func cpuTimes(int) (server, client time.Duration, err error) {
	return 0, 0, errors.New("CPU accounting needs Linux")
}
