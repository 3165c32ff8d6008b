// Package dirsync makes directory entries durable: after a create, link,
// rename or unlink, the entry survives a crash only once its directory is
// fsynced. A mail queue or a busy Maildir has many goroutines doing that to
// the same directory at once, and one fsync covers every change made before
// it started, so callers of the same directory share fsyncs (group commit):
// a caller waits for the first fsync that begins after its call, and if one
// is running it waits for that one to end and for the next, which serves
// everyone who arrived meanwhile.
package dirsync

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// Rename is rename(2) without the lstat of the target that os.Rename adds
// to refuse a directory there: one system call less for callers that move
// files between names they made themselves (a queue, a Maildir) on every
// message, and then Sync the directory.
func Rename(from, to string) error {
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// Group shares fsyncs among callers for the same path. The zero value is
// ready; Sync uses a process-wide one.
type Group struct {
	mu   sync.Mutex
	dirs map[string]*dir
	// fsync is replaced by tests to count and fail fsyncs.
	fsync func(path string) error
}

type dir struct {
	waiting int  // callers inside Sync for this path
	running bool // an fsync is in progress
	// Generations: started counts fsyncs begun, done the last one ended,
	// failed the last one that failed (with err).
	started, done, failed uint64
	err                   error
	cond                  *sync.Cond
}

var process Group

// Sync fsyncs the directory at path, sharing the fsync with concurrent
// callers in this process. It returns nil only when an fsync that began
// after the call succeeded.
func Sync(path string) error { return process.Sync(path) }

// Sync: see the package function.
func (g *Group) Sync(path string) error { return g.Mark(path).Wait() }

// Change is a change made to a directory, waiting to be made durable.
type Change struct {
	g    *Group
	path string
	d    *dir
	want uint64 // the first fsync generation that covers the change
	done bool
}

// Mark notes that the caller has just changed the directory at path
// (created, renamed or removed an entry). Wait on the result returns once
// an fsync that began after Mark has succeeded, which may be one another
// goroutine started meanwhile: work done between the change and Wait (an
// fdatasync of the file just renamed, say) overlaps with the fsync that
// covers it. Every Change must be waited on or released.
func (g *Group) Mark(path string) *Change {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dirs == nil {
		g.dirs = map[string]*dir{}
	}
	d := g.dirs[path]
	if d == nil {
		d = &dir{cond: sync.NewCond(&g.mu)}
		g.dirs[path] = d
	}
	d.waiting++
	// An fsync already running may have read the directory before the
	// change: only one that starts from now on covers it.
	return &Change{g: g, path: path, d: d, want: d.started + 1}
}

// Mark notes a change to the directory at path, in this process's group.
func Mark(path string) *Change { return process.Mark(path) }

// Wait returns nil once an fsync of the directory that began after Mark
// has succeeded, starting one when none is running. The first Wait ends
// the Change; later calls return nil.
func (c *Change) Wait() error {
	g, d := c.g, c.d
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.done {
		return nil
	}
	for d.done < c.want {
		if d.running {
			d.cond.Wait()
			continue
		}
		d.running = true
		d.started++
		gen := d.started
		g.mu.Unlock()
		sync := g.fsync
		if sync == nil {
			sync = fsync
		}
		err := sync(c.path)
		g.mu.Lock()
		d.running = false
		d.done = gen
		if err != nil {
			d.failed, d.err = gen, err
		}
		d.cond.Broadcast()
	}
	// Conservative: a failure of any fsync from ours on is reported, so a
	// caller never acknowledges on the word of a disk that just failed.
	var err error
	if d.failed >= c.want {
		err = d.err
	}
	c.releaseLocked()
	return err
}

// Release ends a Change that will not be waited for (the change was
// undone).
func (c *Change) Release() {
	c.g.mu.Lock()
	defer c.g.mu.Unlock()
	c.releaseLocked()
}

func (c *Change) releaseLocked() {
	if c.done {
		return
	}
	c.done = true
	c.d.waiting--
	if c.d.waiting == 0 {
		delete(c.g.dirs, c.path) // the map holds only directories in use
	}
}

// fsync opens, fsyncs and closes the directory with plain system calls:
// os.Open would add four fcntl calls and a refused poller registration,
// five of a delivery's fifteen system calls.
func fsync(path string) error { return fsyncDir(path) }

func fsyncDir(path string) error {
	fd, err := openDir(path)
	if err != nil {
		return fmt.Errorf("opening directory %s to fsync it: %w", path, err)
	}
	err = syscall.Fsync(fd)
	cerr := syscall.Close(fd)
	if err != nil {
		return fmt.Errorf("fsync of directory %s: %w", path, err)
	}
	if cerr != nil {
		return fmt.Errorf("closing directory %s after fsync: %w", path, cerr)
	}
	return nil
}

func openDir(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}
