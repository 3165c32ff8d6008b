package dirsync

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fsRecorder fakes the four kinds of sync an FSGroup runs, recording what
// each covered and when.
type fsRecorder struct {
	mu    sync.Mutex
	syncs []fsSync
	fail  atomic.Int32 // fail this many syncs from now
}

type fsSync struct {
	kind       string // "fsync dir", "syncfs dir", "fsync fd", "syncfs fd"
	start, end time.Time
}

func (r *fsRecorder) run(kind string) error {
	s := fsSync{kind: kind, start: time.Now()}
	time.Sleep(3 * time.Millisecond)
	s.end = time.Now()
	r.mu.Lock()
	r.syncs = append(r.syncs, s)
	r.mu.Unlock()
	if r.fail.Load() > 0 {
		r.fail.Add(-1)
		return errors.New("injected I/O error")
	}
	return nil
}

func (r *fsRecorder) group() *FSGroup {
	return &FSGroup{
		fsync:      func(string) error { return r.run("fsync dir") },
		syncfs:     func(string) error { return r.run("syncfs dir") },
		fsyncFD:    func(int) error { return r.run("fsync fd") },
		syncfsOfFD: func(int) error { return r.run("syncfs fd") },
	}
}

func (r *fsRecorder) kinds() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := map[string]int{}
	for _, s := range r.syncs {
		k[s.kind]++
	}
	return k
}

// TestFSGroupChoosesTheSync: a lone directory or file gets the fsync it
// would get alone; several, of any kind, share one syncfs.
func TestFSGroupChoosesTheSync(t *testing.T) {
	tests := []struct {
		name  string
		dirs  []string
		files []int
		want  string
	}{
		{"one directory", []string{"/a/new"}, nil, "fsync dir"},
		{"one directory twice", []string{"/a/new", "/a/new"}, nil, "fsync dir"},
		{"one file", nil, []int{7}, "fsync fd"},
		{"two directories", []string{"/a/new", "/b/new"}, nil, "syncfs dir"},
		{"two files", nil, []int{7, 8}, "syncfs fd"},
		{"a file and a directory", []string{"/a/new"}, []int{7}, "syncfs fd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &fsRecorder{}
			g := r.group()
			var cs []*FSChange
			for _, d := range tc.dirs {
				cs = append(cs, g.Mark(d, 1))
			}
			for _, fd := range tc.files {
				cs = append(cs, g.MarkFile(fd, 1))
			}
			for _, c := range cs {
				if err := c.Wait(); err != nil {
					t.Fatal(err)
				}
			}
			if k := r.kinds(); len(k) != 1 || k[tc.want] != 1 {
				t.Errorf("syncs run: %v, want one %q", k, tc.want)
			}
			if len(g.fss) != 0 {
				t.Errorf("%d file systems still tracked after every change ended", len(g.fss))
			}
		})
	}
}

// TestFSGroupSharedAndCovering: many callers on many directories of one
// file system share few syncs, and each returns only after a sync that
// began after its Mark ended.
func TestFSGroupSharedAndCovering(t *testing.T) {
	r := &fsRecorder{}
	g := r.group()
	const callers = 64
	var wg sync.WaitGroup
	calls := make([]fsSync, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			calls[i].start = time.Now()
			c := g.Mark(fmt.Sprintf("/m/u%d/new", i), 1)
			if err := c.Wait(); err != nil {
				t.Error(err)
			}
			calls[i].end = time.Now()
		}()
	}
	wg.Wait()
	if n := len(r.syncs); n >= callers/2 || n == 0 {
		t.Errorf("%d syncs for %d concurrent callers on distinct directories, want far fewer", n, callers)
	}
	for i, c := range calls {
		covered := false
		for _, s := range r.syncs {
			if !s.start.Before(c.start) && !s.end.After(c.end) {
				covered = true
			}
		}
		if !covered {
			t.Errorf("caller %d returned without a sync inside its call", i)
		}
	}
}

// TestFSGroupNotCoveredByRunningSync: a change made while a sync runs
// waits for the next one, which that sync's end starts.
func TestFSGroupNotCoveredByRunningSync(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	var n atomic.Int32
	g := &FSGroup{fsync: func(string) error {
		if n.Add(1) == 1 {
			close(started)
			<-release
		}
		return nil
	}}
	first := g.Mark("/a/new", 1)
	go first.Wait()
	<-started
	second := g.Mark("/a/new", 1)
	done := make(chan error)
	go func() { done <- second.Wait() }()
	select {
	case <-done:
		t.Fatal("a change made during a running sync returned before that sync ended")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n.Load() != 2 {
		t.Errorf("%d syncs, want 2 (the running one does not cover the later change)", n.Load())
	}
}

// TestFSGroupFileSystemsAreIndependent: changes on two file systems never
// wait for each other's syncs.
func TestFSGroupFileSystemsAreIndependent(t *testing.T) {
	block := make(chan struct{})
	g := &FSGroup{fsync: func(dir string) error {
		if dir == "/slow/new" {
			<-block
		}
		return nil
	}}
	slow := g.Mark("/slow/new", 1)
	go slow.Wait()
	time.Sleep(5 * time.Millisecond)
	if err := g.Mark("/fast/new", 2).Wait(); err != nil {
		t.Fatal(err)
	}
	close(block)
}

// TestFSGroupFailure: an error reaches every change the failed sync was
// to cover, the next sync is tried afresh, and a released directory
// change leaves nothing behind.
func TestFSGroupFailure(t *testing.T) {
	r := &fsRecorder{}
	g := r.group()
	r.fail.Store(1)
	a, b := g.Mark("/a/new", 1), g.MarkFile(9, 1)
	if err := a.Wait(); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("first change: %v, want the injected error", err)
	}
	if err := b.Wait(); err == nil {
		t.Fatal("second change covered by the failed sync returned nil")
	}
	if err := g.Mark("/a/new", 1).Wait(); err != nil {
		t.Fatalf("after the failure: %v", err)
	}
	c := g.Mark("/c/new", 1)
	c.Release()
	if err := c.Wait(); err != nil {
		t.Fatalf("Wait after Release: %v", err)
	}
	if len(g.fss) != 0 {
		t.Errorf("%d file systems still tracked", len(g.fss))
	}
}

// TestFSGroupReleaseOfAFileWaits: releasing a file's change still waits
// for the sync that may be using its descriptor.
func TestFSGroupReleaseOfAFileWaits(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	g := &FSGroup{fsyncFD: func(int) error { close(started); <-release; return nil }}
	c := g.MarkFile(5, 1)
	go c.Wait()
	<-started
	done := make(chan struct{})
	go func() { c.Release(); close(done) }()
	select {
	case <-done:
		t.Fatal("Release of a file change returned while a sync used its descriptor")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-done
}

// TestFSGroupReal: the real system calls on files and directories of the
// test's file system, alone and together.
func TestFSGroupReal(t *testing.T) {
	dir := t.TempDir()
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	dev := uint64(st.Dev)
	var g FSGroup
	var cs []*FSChange
	var files []*os.File
	for i := range 4 {
		sub := filepath.Join(dir, fmt.Sprint(i))
		if err := os.Mkdir(sub, 0o700); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(sub, "msg"))
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("hello\n")
		files = append(files, f)
		cs = append(cs, g.MarkFile(int(f.Fd()), dev), g.Mark(sub, dev))
	}
	for _, c := range cs {
		if err := c.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		f.Close()
	}
	if err := g.Mark(filepath.Join(dir, "0"), dev).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := g.Mark(filepath.Join(dir, "missing"), dev).Wait(); err == nil {
		t.Error("a sync of a missing directory succeeded")
	}
}
