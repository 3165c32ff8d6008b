package directory

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSwapUnderLoad rebuilds and swaps a large index while goroutines look
// up users present in both the old and the new set: no lookup may fail.
func TestSwapUnderLoad(t *testing.T) {
	n := size(t, 1000000, 200000)
	if testing.Short() && raceEnabled {
		n = 50000
	}
	oldSet := sampleUsers(n, 1)
	d := NewDirectory(mustBuild(t, oldSet))
	// The new set: the same users (with changed gecos) plus others.
	newSet := make([]User, 0, n+n/10)
	for _, u := range oldSet {
		u.Gecos = "reloaded"
		newSet = append(newSet, u)
	}
	probe := make([]string, 1000)
	for i := range probe {
		probe[i] = oldSet[(i*7919)%n].Name
	}
	var stop atomic.Bool
	var lookups, failures atomic.Int64
	var worst atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; !stop.Load(); i++ {
				start := time.Now()
				ix := d.Current()
				u, ok := ix.ByName(probe[i%len(probe)])
				if !ok || u.Name != probe[i%len(probe)] {
					failures.Add(1)
				}
				if _, ok := ix.ByUID(u.UID); !ok {
					failures.Add(1)
				}
				if el := int64(time.Since(start)); el > worst.Load() {
					worst.Store(el)
				}
				lookups.Add(1)
			}
		}()
	}
	for range 2 {
		ix := mustBuild(t, newSet)
		d.Swap(ix)
	}
	stop.Store(true)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d failed lookups of %d during reload", failures.Load(), lookups.Load())
	}
	if u, _ := d.Current().ByName(probe[0]); u.Gecos != "reloaded" {
		t.Fatal("new index not in place")
	}
	t.Logf("%d users: %d lookups during 2 rebuild-and-swaps, none failed; worst lookup %v (includes GC and scheduling)",
		n, lookups.Load(), time.Duration(worst.Load()))
	var empty Directory
	if empty.Current().Len() != 0 {
		t.Fatal("zero Directory not empty")
	}
}
