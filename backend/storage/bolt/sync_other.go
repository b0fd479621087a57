//go:build !linux

package bolt

import (
	"os"
	"runtime"
)

// fdatasync flushes f (fsync where there is no fdatasync).
func fdatasync(f *os.File) error { return f.Sync() }

// dirsSync tells whether a directory can be flushed, its names made
// durable: not on Windows.
const dirsSync = runtime.GOOS != "windows"
