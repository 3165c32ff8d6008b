package mailstore

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"correo/src/dirsync"
)

const (
	dirMode  = 0o700
	fileMode = 0o600
)

// lockTimeout bounds the wait for a folder lock. Critical sections are a
// directory scan and one small write, so a lock held this long belongs to
// a stuck process; the caller gets an error (a NO to the client) instead of
// a session hung for good.
var lockTimeout = 30 * time.Second

// flock holds an exclusive flock on a lock file. The file is never
// removed: removing it would let two processes lock two different inodes.
type flock struct{ f *os.File }

func lockFile(path string) (*flock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, fileMode)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(lockTimeout)
	wait := 200 * time.Microsecond
	for {
		// Non-blocking with a backoff rather than a blocking flock: a
		// blocked flock pins an OS thread and cannot time out.
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &flock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("locking %s: still held by another process after %v; look for a stuck imapd", path, lockTimeout)
		}
		time.Sleep(wait)
		if wait < 20*time.Millisecond {
			wait *= 2
		}
	}
}

// unlock releases the lock; closing the descriptor drops the flock.
func (l *flock) unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// writeDurable replaces dir/name with data as Deliver publishes a message:
// write a tmp file, fsync it, rename it over the old one, fsync dir. A
// crash leaves either the old or the new content, never a mix. Callers
// hold the lock that covers name, so one fixed tmp name suffices and a
// leftover from a crash is simply truncated by the next write.
func writeDurable(dir, name string, data []byte) error {
	return writeDurableAs(dir, name, name+".tmp", data)
}

// writeDurableUnlocked is writeDurable for small files written without a
// lock (a folder's special use, the defaults marker): two sessions logging
// in at once must not share a tmp file. A crash may leave a uniquely
// named tmp behind, which nothing reads.
func writeDurableUnlocked(dir, name string, data []byte) error {
	var rb [6]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return err
	}
	return writeDurableAs(dir, name, name+".tmp."+hex.EncodeToString(rb[:]), data)
}

func writeDurableAs(dir, name, tmpName string, data []byte) error {
	tmp := filepath.Join(dir, tmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, fileMode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("fsync of %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err := dirsync.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replacing %s: %w", filepath.Join(dir, name), err)
	}
	if err := dirsync.Sync(dir); err != nil {
		return fmt.Errorf("fsync of %s after replacing %s: %w", dir, name, err)
	}
	return nil
}

// mkdirDurable makes dir (and missing parents) and fsyncs each new
// directory's parent, as package mailbox does: a folder that vanishes after
// a crash takes the messages appended to it along.
func mkdirDurable(dir string) error {
	if fi, err := os.Lstat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirDurable(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return dirsync.Sync(parent)
}

// ensureMaildir makes cur/, new/ and tmp/ of a folder.
func ensureMaildir(dir string) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := mkdirDurable(filepath.Join(dir, sub)); err != nil {
			return fmt.Errorf("creating Maildir %s: %w", dir, err)
		}
	}
	return nil
}

var (
	nameCounter atomic.Uint64
	hostOnce    sync.Once
	hostPart    string
)

// uniqueBase makes a Maildir unique name in the form package mailbox
// uses, so that every file in a Maildir looks alike to every tool.
func uniqueBase(now time.Time) (string, error) {
	hostOnce.Do(func() {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		h = strings.ReplaceAll(h, "/", `\057`)
		h = strings.ReplaceAll(h, ":", `\072`)
		hostPart = strings.ReplaceAll(h, ",", `\054`)
	})
	var rb [8]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return "", fmt.Errorf("reading random bytes for a unique file name: %w", err)
	}
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(),
		nameCounter.Add(1), hex.EncodeToString(rb[:]), hostPart), nil
}

// sizeFields is the ",S=...,W=..." tail of a key, "" when it has none.
func sizeFields(key string) string {
	if i := strings.Index(key, ",S="); i >= 0 {
		return key[i:]
	}
	if i := strings.Index(key, ",W="); i >= 0 {
		return key[i:]
	}
	return ""
}

// keyField returns the value of S= or W= in a key, -1 when absent.
func keyField(key, field string) int64 {
	parts := strings.Split(key, ",")
	v := int64(-1)
	for _, p := range parts[1:] {
		if s, ok := strings.CutPrefix(p, field+"="); ok {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
				v = n
			}
		}
	}
	return v
}

// countingWriter counts bytes and bare LFs so RFC822.SIZE (CRLF line
// ends) is known without a second pass.
type countingWriter struct {
	w      io.Writer
	n      int64
	bareLF int64
	lastCR bool
}

func (c *countingWriter) Write(p []byte) (int, error) {
	for off := 0; ; {
		i := bytes.IndexByte(p[off:], '\n')
		if i < 0 {
			break
		}
		at := off + i
		if at == 0 && !c.lastCR || at > 0 && p[at-1] != '\r' {
			c.bareLF++
		}
		off = at + 1
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	if n > 0 {
		c.lastCR = p[n-1] == '\r'
	}
	return n, err
}

// wireSizeOf measures a file whose name carries no W=: the size a client
// receives, every LF counted as CRLF.
func wireSizeOf(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cw := &countingWriter{w: io.Discard}
	if _, err := io.Copy(cw, f); err != nil {
		return 0, err
	}
	return cw.n + cw.bareLF, nil
}

// validityFile and its lock hold the last UIDVALIDITY handed out for any
// folder of this mailbox.
const (
	validityFile = "correo-uidvalidity"
	validityLock = "correo-uidvalidity.lock"
)

// newValidity hands out a UIDVALIDITY never used before in this mailbox:
// the clock, or the last value + 1 when the clock has not moved on (two
// folders created in one second, a clock stepped back). atLeast is a
// value the result must exceed (from a corrupt list's header).
func newValidity(root string, atLeast uint32) (uint32, error) {
	lk, err := lockFile(filepath.Join(root, validityLock))
	if err != nil {
		return 0, err
	}
	defer lk.unlock()
	var last uint64
	if data, err := os.ReadFile(filepath.Join(root, validityFile)); err == nil {
		last, _ = strconv.ParseUint(strings.TrimSpace(string(data)), 10, 32)
	}
	v := uint64(uint32(time.Now().Unix()))
	if v <= last {
		v = last + 1
	}
	if v <= uint64(atLeast) {
		v = uint64(atLeast) + 1
	}
	if v > 0xffffffff || v == 0 {
		v = 1 // 2106 or a counter gone wild: start over rather than fail logins
	}
	if err := writeDurable(root, validityFile, []byte(strconv.FormatUint(v, 10)+"\n")); err != nil {
		return 0, err
	}
	return uint32(v), nil
}

// openMessage opens a message file for reading without registering it
// with Go's network poller: os.Open tries that for every file (and a
// regular file always refuses), several system calls that are half the
// cost of opening a message when a FETCH opens thousands.
func openMessage(path string) (*os.File, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}
