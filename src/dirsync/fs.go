package dirsync

import (
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// FSGroup shares the work of making directory entries durable among
// callers whose directories lie on one file system, where Group shares it
// only within one directory.
//
// A storage host delivers to thousands of Maildirs, so deliveries that
// arrive together almost never share a new/: each needed an fsync of its
// own, and 32 concurrent ones cost 32 journal commits' worth of waits.
// With FSGroup the caller that finds no sync running takes every
// directory changed so far on that file system: one alone is fsynced as
// Group would; several are made durable together by one syncfs(2), which
// commits every directory of the file system at once (sync_filesystem:
// all dirty inodes written, then the file system's own commit, as sync(2)
// does for every file system). Since Linux 5.8 syncfs reports a
// writeback error on the file system that occurred since the descriptor
// was opened, which is what a fresh descriptor per sync sees.
//
// The cost of syncfs grows with the file system's other dirty data (a
// mailbox move copying in, say): deliveries then wait for that data too,
// never less safely, only longer.
//
// The zero value is ready; SyncOn and MarkOn use a process-wide one.
type FSGroup struct {
	mu  sync.Mutex
	fss map[uint64]*fsState
	// Replaced by tests to count and fail each kind of sync.
	fsync, syncfs       func(dir string) error
	fsyncFD, syncfsOfFD func(fd int) error
}

type fsState struct {
	// What changed since the last sync began: directories (with how many
	// of their changes wait) and files, by their open descriptors.
	pending map[string]int
	files   []int
	waiting int  // callers between MarkOn and the end of their Wait
	running bool // a sync is in progress
	// Generations, as in Group: started counts syncs begun, done the
	// last one ended, failed the last one that failed (with err).
	started, done, failed uint64
	err                   error
	// Waiters of the sync running (cur) and of the one after it (next):
	// the end of a sync wakes only those it covered, and one of the next
	// to run the next sync, not everyone to find out who is first.
	cur, next *sync.Cond
}

var processFS FSGroup

// SyncOn makes the entries of dir durable: it returns nil once a sync
// covering dir that began after the call has succeeded. dev is the file
// system holding dir (Dev of the directory or of a file in it).
func SyncOn(dir string, dev uint64) error { return processFS.Mark(dir, dev).Wait() }

// MarkOn notes a change to dir on file system dev, in this process's
// FSGroup: marking several directories before waiting on any lets one sync
// cover them all.
func MarkOn(dir string, dev uint64) *FSChange { return processFS.Mark(dir, dev) }

// FSChange is a change to a directory waiting to be made durable.
type FSChange struct {
	g    *FSGroup
	dev  uint64
	s    *fsState
	want uint64
	done bool
	file bool // a MarkFile change: its descriptor may be in use by a sync
}

// Mark notes that the caller has just changed dir (created, renamed,
// linked or removed an entry in it) on file system dev.
func (g *FSGroup) Mark(dir string, dev uint64) *FSChange {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.stateLocked(dev)
	s.pending[dir]++
	// A sync already running took its directories before this change.
	return &FSChange{g: g, dev: dev, s: s, want: s.started + 1}
}

// MarkFile notes that the caller has written to the open file fd on file
// system dev, whose data (and size) must become durable: the fsync a
// lone writer would do, shared as Mark shares directory syncs. fd must
// stay open until Wait returns, and the change must be waited for, not
// released: a sync may be using the descriptor.
func (g *FSGroup) MarkFile(fd int, dev uint64) *FSChange {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.stateLocked(dev)
	s.files = append(s.files, fd)
	return &FSChange{g: g, dev: dev, s: s, want: s.started + 1, file: true}
}

// MarkFile is FSGroup.MarkFile in this process's group.
func MarkFile(fd int, dev uint64) *FSChange { return processFS.MarkFile(fd, dev) }

func (g *FSGroup) stateLocked(dev uint64) *fsState {
	if g.fss == nil {
		g.fss = map[uint64]*fsState{}
	}
	s := g.fss[dev]
	if s == nil {
		s = &fsState{pending: map[string]int{}, cur: sync.NewCond(&g.mu), next: sync.NewCond(&g.mu)}
		g.fss[dev] = s
	}
	s.waiting++
	return s
}

// Wait returns nil once a sync that began after Mark, and so covers the
// change, has succeeded; it runs one when none is running. A failure of
// any sync from that one on is returned, as in Group. Later calls return
// nil.
func (c *FSChange) Wait() error {
	g, s := c.g, c.s
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.done {
		return nil
	}
	for s.done < c.want {
		if s.running {
			if s.started >= c.want {
				s.cur.Wait()
			} else {
				s.next.Wait()
			}
			continue
		}
		dirs := make([]string, 0, len(s.pending))
		for d := range s.pending {
			dirs = append(dirs, d)
		}
		clear(s.pending)
		files := s.files
		s.files = nil
		s.running = true
		s.started++
		gen := s.started
		g.mu.Unlock()
		err := g.sync(dirs, files)
		g.mu.Lock()
		s.running = false
		s.done = gen
		if err != nil {
			s.failed, s.err = gen, err
		}
		s.cur.Broadcast()
		// The next sync's waiters become the current ones, and one of
		// them runs it (any other arriving first may run it instead).
		s.cur, s.next = s.next, s.cur
		s.cur.Signal()
	}
	var err error
	if s.failed >= c.want {
		err = s.err
	}
	c.endLocked()
	return err
}

// sync makes what changed durable: one directory or one file alone is
// fsynced, several take one syncfs. The snapshot may be empty when the
// changes it would have covered were released; the generation is then
// reached without a system call.
func (g *FSGroup) sync(dirs []string, files []int) error {
	fsync, syncfs := g.fsync, g.syncfs
	if fsync == nil {
		fsync = fsyncDir
	}
	if syncfs == nil {
		syncfs = syncFS
	}
	switch {
	case len(dirs)+len(files) == 0:
		return nil
	case len(dirs) == 1 && len(files) == 0:
		return fsync(dirs[0])
	case len(files) == 1 && len(dirs) == 0:
		return g.fsyncFile(files[0])
	case len(files) > 0:
		return g.syncfsFD(files[0])
	}
	return syncfs(dirs[0])
}

func (g *FSGroup) fsyncFile(fd int) error {
	if g.fsyncFD != nil {
		return g.fsyncFD(fd)
	}
	for {
		err := syscall.Fsync(fd)
		if err != syscall.EINTR {
			if err != nil {
				return fmt.Errorf("fsync: %w", err)
			}
			return nil
		}
	}
}

func (g *FSGroup) syncfsFD(fd int) error {
	if g.syncfsOfFD != nil {
		return g.syncfsOfFD(fd)
	}
	for {
		err := unix.Syncfs(fd)
		if err != syscall.EINTR {
			if err != nil {
				return fmt.Errorf("syncfs: %w", err)
			}
			return nil
		}
	}
}

// Release ends a change that will not be waited for (it was undone). A
// file's change is waited for all the same, without its error: a sync
// may be using the descriptor, which the caller closes next.
func (c *FSChange) Release() {
	if c.file {
		c.Wait()
		return
	}
	c.g.mu.Lock()
	defer c.g.mu.Unlock()
	c.endLocked()
}

func (c *FSChange) endLocked() {
	if c.done {
		return
	}
	c.done = true
	c.s.waiting--
	if c.s.waiting == 0 && !c.s.running {
		delete(c.g.fss, c.dev) // the map holds only file systems in use
	}
}

// syncFS runs syncfs(2) on the file system holding dir.
func syncFS(dir string) error {
	fd, err := openDir(dir)
	if err != nil {
		return fmt.Errorf("opening directory %s to sync its file system: %w", dir, err)
	}
	err = unix.Syncfs(fd)
	cerr := syscall.Close(fd)
	if err != nil {
		return fmt.Errorf("syncfs of the file system holding %s: %w", dir, err)
	}
	if cerr != nil {
		return fmt.Errorf("closing directory %s after syncfs: %w", dir, cerr)
	}
	return nil
}
