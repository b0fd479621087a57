//go:build !linux

package main

import "errors"

// residentMemory is only implemented on Linux; elsewhere the memory rows
// show the Go heap alone.
func residentMemory(int) (rss, anon uint64, err error) {
	return 0, 0, errors.New("resident memory needs Linux")
}
