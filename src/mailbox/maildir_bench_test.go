package mailbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchDirEnv names a directory for the benchmarks' files. Delivery speed is
// fsync speed, so it must be measured on the disk that will hold the mail;
// os.TempDir is often tmpfs, where fsync costs nothing and the figures lie.
const BenchDirEnv = "CORREO_BENCH_DIR"

func benchDir(b *testing.B) string {
	b.Helper()
	base := os.Getenv(BenchDirEnv)
	if base == "" {
		return b.TempDir()
	}
	d, err := os.MkdirTemp(base, "correo-bench-")
	if err != nil {
		b.Fatalf("%s=%s: %v", BenchDirEnv, base, err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}

var bench4K = bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), 64)

// runConc runs op b.N times spread over conc goroutines and reports the rate.
func runConc(b *testing.B, conc int, op func(worker, i int) error) {
	b.SetBytes(int64(len(bench4K)))
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	b.ResetTimer()
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := op(w, i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	if err := firstErr.Load(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "deliveries/s")
}

func BenchmarkDeliver(b *testing.B) {
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			m := New(filepath.Join(benchDir(b), "Maildir"))
			if _, err := m.Deliver(bytes.NewReader(bench4K)); err != nil {
				b.Fatal(err)
			}
			runConc(b, conc, func(_, _ int) error {
				_, err := m.Deliver(bytes.NewReader(bench4K))
				return err
			})
		})
	}
}

// BenchmarkBareWriteFsyncRename is the ceiling for Deliver on this disk: the
// same system calls (create, write, fsync, rename, fsync of the directory)
// with nothing else around them.
func BenchmarkBareWriteFsyncRename(b *testing.B) {
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			dir := benchDir(b)
			tmp, dst := filepath.Join(dir, "tmp"), filepath.Join(dir, "new")
			os.Mkdir(tmp, 0o700)
			os.Mkdir(dst, 0o700)
			runConc(b, conc, func(w, i int) error {
				name := fmt.Sprintf("%d.%d", w, i)
				return BareDeliver(tmp, dst, name, bench4K)
			})
		})
	}
}
