package bolt

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data, and of its metadata only what reading the
// data back needs (its size), as bolt does.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// dirsSync tells whether a directory can be flushed, its names made
// durable.
const dirsSync = true
