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
func (g *Group) Sync(path string) error {
	g.mu.Lock()
	if g.dirs == nil {
		g.dirs = map[string]*dir{}
	}
	d := g.dirs[path]
	if d == nil {
		d = &dir{cond: sync.NewCond(&g.mu)}
		g.dirs[path] = d
	}
	d.waiting++
	// An fsync already running may have read the directory before this
	// caller's change: only one that starts from now on covers it.
	want := d.started + 1
	for d.done < want {
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
		err := sync(path)
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
	if d.failed >= want {
		err = d.err
	}
	d.waiting--
	if d.waiting == 0 {
		delete(g.dirs, path) // the map holds only directories in use
	}
	g.mu.Unlock()
	return err
}

func fsync(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening directory %s to fsync it: %w", path, err)
	}
	err = f.Sync()
	cerr := f.Close()
	if err != nil {
		return fmt.Errorf("fsync of directory %s: %w", path, err)
	}
	if cerr != nil {
		return fmt.Errorf("closing directory %s after fsync: %w", path, cerr)
	}
	return nil
}
