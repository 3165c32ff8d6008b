package dirsync

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// span is one fake fsync: when it began and ended.
type span struct{ start, end time.Time }

type recorder struct {
	mu    sync.Mutex
	spans []span
	fail  atomic.Int32 // fail this many fsyncs from now
}

func (r *recorder) fsync(string) error {
	s := span{start: time.Now()}
	time.Sleep(5 * time.Millisecond)
	s.end = time.Now()
	r.mu.Lock()
	r.spans = append(r.spans, s)
	r.mu.Unlock()
	if r.fail.Load() > 0 {
		r.fail.Add(-1)
		return errors.New("injected I/O error")
	}
	return nil
}

// TestSharedAndCovering: concurrent callers share fsyncs, and every caller
// returns only after an fsync that began after its call ended.
func TestSharedAndCovering(t *testing.T) {
	r := &recorder{}
	g := &Group{fsync: r.fsync}
	const callers = 64
	var wg sync.WaitGroup
	calls := make([]span, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			calls[i].start = time.Now()
			if err := g.Sync("/q"); err != nil {
				t.Error(err)
			}
			calls[i].end = time.Now()
		}()
	}
	wg.Wait()
	if n := len(r.spans); n >= callers || n == 0 {
		t.Errorf("%d fsyncs for %d concurrent callers, want fewer (shared) and at least one", n, callers)
	}
	for i, c := range calls {
		covered := false
		for _, s := range r.spans {
			if !s.start.Before(c.start) && !s.end.After(c.end) {
				covered = true
			}
		}
		if !covered {
			t.Errorf("caller %d (%v..%v) returned without an fsync inside its call", i, c.start, c.end)
		}
	}
	if len(g.dirs) != 0 {
		t.Errorf("%d directories still tracked after every caller left", len(g.dirs))
	}
}

// TestSequentialCallersEachFsync: a lone caller always gets its own fsync.
func TestSequentialCallersEachFsync(t *testing.T) {
	r := &recorder{}
	g := &Group{fsync: r.fsync}
	for range 3 {
		if err := g.Sync("/q"); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.spans) != 3 {
		t.Errorf("%d fsyncs for 3 sequential calls, want 3", len(r.spans))
	}
}

// TestFailureReachesEveryCoveredCaller: an fsync error is returned to
// the callers it was meant to cover, and the next call tries again.
func TestFailureReachesEveryCoveredCaller(t *testing.T) {
	r := &recorder{}
	r.fail.Store(1)
	g := &Group{fsync: r.fsync}
	if err := g.Sync("/q"); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("first Sync: %v, want the injected error", err)
	}
	if err := g.Sync("/q"); err != nil {
		t.Fatalf("Sync after the failure: %v", err)
	}
	r.fail.Store(1000)
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g.Sync("/q") != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 16 {
		t.Errorf("%d of 16 callers saw the failing disk's error", failed.Load())
	}
}

// TestPathsAreIndependent: different directories do not share fsyncs.
func TestPathsAreIndependent(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	g := &Group{fsync: func(p string) error {
		mu.Lock()
		seen[p]++
		mu.Unlock()
		return nil
	}}
	for _, p := range []string{"/a", "/b", "/a"} {
		g.Sync(p)
	}
	if seen["/a"] != 2 || seen["/b"] != 1 {
		t.Errorf("fsyncs per path: %v", seen)
	}
}

// TestRealDirectory: the real fsync, and a clear error for a missing one.
func TestRealDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600)
	if err := Sync(dir); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nope")
	if err := Sync(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Sync of a missing directory: %v, want an error naming it", err)
	}
}

// TestRename: a rename, and an error that names both paths.
func TestRename(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("x"), 0o600)
	if err := Rename(a, b); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(b); err != nil || string(data) != "x" {
		t.Fatalf("after Rename: %q %v", data, err)
	}
	err := Rename(a, b)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) {
		t.Fatalf("Rename of a missing file: %v", err)
	}
}

// TestMarkCoveredByLaterFsync: a change is covered by an fsync another
// goroutine began after it, so Wait needs none of its own.
func TestMarkCoveredByLaterFsync(t *testing.T) {
	r := &recorder{}
	g := &Group{fsync: r.fsync}
	c := g.Mark("/q")
	if err := g.Sync("/q"); err != nil { // someone else's, after the change
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(r.spans) != 1 {
		t.Errorf("%d fsyncs, want the 1 that began after the change", len(r.spans))
	}
	if err := c.Wait(); err != nil || len(r.spans) != 1 {
		t.Errorf("second Wait: %v, %d fsyncs", err, len(r.spans))
	}
	if len(g.dirs) != 0 {
		t.Errorf("%d directories tracked", len(g.dirs))
	}
}

// TestMarkNotCoveredByRunningFsync: an fsync that was already running when
// the change was made does not cover it.
func TestMarkNotCoveredByRunningFsync(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	var n atomic.Int32
	g := &Group{fsync: func(string) error {
		if n.Add(1) == 1 {
			started <- struct{}{}
			<-release
		}
		return nil
	}}
	done := make(chan error)
	go func() { done <- g.Sync("/q") }()
	<-started // the first fsync is running
	c := g.Mark("/q")
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 2 {
		t.Errorf("%d fsyncs, want 2: the running one could not cover a later change", n.Load())
	}
}

// TestRelease: an abandoned change leaves nothing behind.
func TestRelease(t *testing.T) {
	g := &Group{fsync: func(string) error { return nil }}
	c := g.Mark("/q")
	c.Release()
	c.Release()
	if len(g.dirs) != 0 {
		t.Errorf("%d directories tracked after Release", len(g.dirs))
	}
	if err := c.Wait(); err != nil {
		t.Errorf("Wait after Release: %v", err)
	}
}
