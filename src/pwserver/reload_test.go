package pwserver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"correo/src/directory"
)

func bigSet(n int, gecos string) []directory.User {
	us := make([]directory.User, n)
	for i := range us {
		us[i] = directory.User{Name: fmt.Sprintf("u%07d", i), UID: uint32(100000 + i), GID: 5000,
			Gecos: gecos, Shell: "/usr/sbin/nologin", Storage: "s1",
			Hash: "$2a$10$abcdefghijklmnopqrstuuN0bU5yJcSgD9bXQ9ZlCkY3D0xJ1sx1a"}
	}
	return us
}

// TestReloadUnderLoad replaces the whole user set (as a bulk import does)
// while clients query without pause: not one query may fail or see a
// user missing.
func TestReloadUnderLoad(t *testing.T) {
	n := 1_000_000
	if raceEnabled || testing.Short() {
		n = 100_000
	}
	tc := newTestCluster(t, false)
	store := tc.nodes["pw1"].store
	if _, err := store.Replace(bigSet(n, "first")); err != nil {
		t.Fatal(err)
	}
	pc := tc.client()
	ctx, cancel := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	var worst atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for ctx.Err() == nil {
				name := fmt.Sprintf("u%07d", r.IntN(n))
				t0 := time.Now()
				u, err := pc.LookupName(context.Background(), name)
				d := time.Since(t0)
				for {
					old := worst.Load()
					if int64(d) <= old || worst.CompareAndSwap(old, int64(d)) {
						break
					}
				}
				if err != nil || u.Name != name {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %+v %v", name, u, err))
					continue
				}
				ok.Add(1)
			}
		}(w)
	}
	time.Sleep(200 * time.Millisecond)
	for round := 0; round < 2; round++ {
		start := time.Now()
		if _, err := store.Replace(bigSet(n, fmt.Sprintf("round %d", round))); err != nil {
			t.Fatal(err)
		}
		t.Logf("reload %d of %d users took %v", round+1, n, time.Since(start))
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d queries failed during reloads; first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}
	if ok.Load() == 0 {
		t.Fatal("no queries ran")
	}
	t.Logf("%d queries during reloads, none failed; worst latency %v", ok.Load(), time.Duration(worst.Load()))
}
