package main

import (
	"context"
	"os"
	"time"
)

// fsyncRecord is the size of each record the fsync probe writes: about one
// small task creation.
const fsyncRecord = 128

// fsyncRate appends small records to a new file in dir, each followed by
// an fsync, for about du, and returns the fsyncs per second: how fast this
// disk makes one write durable when nothing shares the fsync.
func fsyncRate(ctx context.Context, dir string, du time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	record := make([]byte, fsyncRecord)
	for i := range record {
		record[i] = 'x'
	}
	record[len(record)-1] = '\n'
	n := 0
	start := time.Now()
	for time.Since(start) < du && ctx.Err() == nil {
		if _, err := f.Write(record); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		n++
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
