package bolt_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// BenchmarkGroupWrites compares what the disk costs to make one group of
// creations durable in two ways, each in a file whose blocks were all
// written beforehand (as a store's file is once it has grown):
//
//   - bolt-commit, as a bolt commit of about 20 creations does (db.Stats
//     gives about 30 pages for them): 29 pages of 4 KiB at offsets spread
//     over the file (bolt's own cluster somewhat more), fdatasync, then
//     the meta page, fdatasync again;
//   - log-append, as a log of the same records would: 8 KiB written where
//     the last group ended, fdatasync once.
//
// Its ms/group is the least a creation waits for its group with each.
func BenchmarkGroupWrites(b *testing.B) {
	const size = 64 << 20
	const page = 4096
	for _, c := range []struct {
		name      string
		pages     int
		scattered bool
		syncs     int
	}{
		{"bolt-commit", 29, true, 2},
		{"log-append", 2, false, 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			f := prewritten(b, size)
			buf := make([]byte, page)
			rng := rand.New(rand.NewPCG(1, 2))
			var next int64
			for b.Loop() {
				for range c.pages {
					at := next
					if c.scattered {
						at = (2 + rng.Int64N(size/page-2)) * page
					} else {
						next = (next + page) % size
					}
					if _, err := f.WriteAt(buf, at); err != nil {
						b.Fatal(err)
					}
				}
				for i := range c.syncs {
					if i > 0 {
						// The meta page, between the two syncs.
						if _, err := f.WriteAt(buf[:page], 0); err != nil {
							b.Fatal(err)
						}
					}
					if err := syscall.Fdatasync(int(f.Fd())); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/group")
		})
	}
}

// prewritten returns a file of size bytes, every block written and synced.
func prewritten(b *testing.B, size int64) *os.File {
	b.Helper()
	f, err := os.Create(filepath.Join(b.TempDir(), "group-writes"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if _, err := f.WriteAt(chunk, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return f
}
