package pwproto

import (
	"encoding/binary"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func replayReq(key uint8, n uint64, ts time.Time) *Request {
	r := &Request{KeyID: key, Time: ts}
	binary.BigEndian.PutUint64(r.Nonce[4:], n)
	return r
}

func TestReplayFilter(t *testing.T) {
	f := NewReplayFilter()
	now := t0
	if !f.Admit(replayReq(1, 1, now), now) {
		t.Fatal("first copy refused")
	}
	if f.Admit(replayReq(1, 1, now), now.Add(time.Second)) {
		t.Fatal("replay admitted")
	}
	if !f.Admit(replayReq(2, 1, now), now) {
		t.Fatal("same nonce under another key refused")
	}
	if !f.Admit(replayReq(1, 2, now), now) {
		t.Fatal("new nonce refused")
	}
	// A request from a clock Window ahead is remembered until its own
	// timestamp goes stale, i.e. for 2·Window after arrival.
	ahead := replayReq(1, 3, now.Add(Window))
	if !f.Admit(ahead, now) {
		t.Fatal("future request refused")
	}
	for d := time.Duration(0); d <= 2*Window; d += time.Second {
		if f.Admit(ahead, now.Add(d)) {
			t.Fatalf("replay admitted %v after arrival", d)
		}
	}
	// Entries are released once stale: after 3·Window everything is gone.
	later := now.Add(3*Window + bucketSpan)
	f.Admit(replayReq(1, 99, later), later)
	// Stale buckets are released when their shard is next used; enough
	// new requests that every shard is used (the shard is chosen by a
	// random-seeded hash: with 64 per shard on average, missing one has
	// odds of about e^-64).
	const fresh = replayShards * 64
	for i := range uint64(fresh) {
		f.Admit(replayReq(1, 1000+i, later), later)
	}
	if n := f.Len(); n != fresh+1 {
		t.Fatalf("%d entries remembered after expiry, want %d", n, fresh+1)
	}
	// Older than the window: refused (the stale check would have dropped it).
	if f.Admit(replayReq(1, 5, now), later) {
		t.Fatal("stale request admitted")
	}
}

func TestReplayFilterConcurrent(t *testing.T) {
	f := NewReplayFilter()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	// Eight goroutines present the same 10 000 nonces: exactly one copy
	// of each is admitted.
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range uint64(10000) {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				if f.Admit(replayReq(1, i, now), now) {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 10000 {
		t.Fatalf("%d admitted, want 10000", admitted.Load())
	}
}

// TestReplayFilterMemory measures the heap per remembered request, the
// figure behind the sizing in ReplayFilter's comment.
func TestReplayFilterMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates ~100 MB")
	}
	const n = 1_000_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f := NewReplayFilter()
	// 1 M requests spread over 10 s, as 100 k/s would arrive.
	for i := range uint64(n) {
		ts := t0.Add(time.Duration(i) * 10 * time.Microsecond)
		f.Admit(replayReq(1, i, ts), ts)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("ReplayFilter: %.1f bytes per remembered request; at 100 k req/s × 1.25 × %v ≈ %.0f MB",
		per, Window, per*100_000*1.25*Window.Seconds()/1e6)
	if f.Len() != n {
		t.Fatalf("%d entries", f.Len())
	}
	runtime.KeepAlive(f)
}

func BenchmarkReplayFilter(b *testing.B) {
	f := NewReplayFilter()
	var ctr atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := ctr.Add(1)
			// 100 k/s of simulated time, so buckets rotate and expire.
			ts := t0.Add(time.Duration(i) * 10 * time.Microsecond)
			f.Admit(replayReq(1, i, ts), ts)
		}
	})
}
