package mailtree

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Stage is the tree being built on the target host. Its methods may be
// called from several goroutines, but entries must be put parents first
// (a directory's Put returns before anything is put into it), and removes
// of a pass are best done before its puts (see Diff).
//
// A pass ends with Sync, which makes everything durable with one fsync per
// directory touched rather than one per file.
type Stage struct {
	root string
	fd   int // the root, opened once: every path is walked from it

	mu sync.Mutex
	// touched holds the directories (relative, "" for the root) whose
	// entries or metadata changed since the last Sync.
	touched map[string]bool
	// dirs holds the directory entries put since the last Sync: their mode
	// and mtime are applied by Sync, after the files have gone in (which
	// changes a directory's mtime, and a read-only mode would refuse them).
	dirs map[string]Entry
	// active holds the temporary file names of transfers in progress,
	// which Manifest must not take for leftovers of a crash.
	active map[string]bool
}

var tempSeq atomic.Uint64

// fsyncDir is replaced by a test that counts directory fsyncs.
var fsyncDir = unix.Fsync

// OpenStage opens the stage at root, creating it (mode 0700) and its
// missing parents (0700) if needed. Close it when done.
func OpenStage(root string) (*Stage, error) {
	if err := mkdirDurable(root); err != nil {
		return nil, fmt.Errorf("creating stage %s: %w", root, err)
	}
	fd, err := openat(unix.AT_FDCWD, root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening stage %s: %w", root, err)
	}
	return &Stage{
		root:    root,
		fd:      fd,
		touched: make(map[string]bool),
		dirs:    make(map[string]Entry),
		active:  make(map[string]bool),
	}, nil
}

// mkdirDurable makes dir and its missing parents, fsyncing the parent of
// each one made, so that a stage reported created survives a crash.
func mkdirDurable(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirDurable(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return fsyncPath(parent)
}

func fsyncPath(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync of %s: %w", dir, err)
	}
	return nil
}

// Close releases the stage's root descriptor. Puts not followed by Sync
// may be lost in a crash.
func (s *Stage) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

// Root is the stage's directory.
func (s *Stage) Root() string { return s.root }

func (s *Stage) full(rel string) string {
	return filepath.Join(s.root, filepath.FromSlash(rel))
}

func (s *Stage) touch(dirs ...string) {
	s.mu.Lock()
	for _, d := range dirs {
		s.touched[d] = true
	}
	s.mu.Unlock()
}

// Manifest scans the stage, so that a move resumed after a crash continues
// from what is already there. It removes the temporary files that an
// interrupted transfer left behind.
func (s *Stage) Manifest() (*Manifest, error) {
	return scanFD(s.fd, s.root, func(dirfd int, name string) {
		s.mu.Lock()
		busy := s.active[name]
		s.mu.Unlock()
		if !busy {
			// A leftover only wastes space; failing to remove it is
			// not worth failing the scan.
			_ = unix.Unlinkat(dirfd, name, 0)
		}
	})
}

// Put puts one entry into the stage. For a directory, r and sum are
// unused: the directory is made if missing (its parent must exist), and
// its mode and mtime are applied by the next Sync. For a file, r must hold
// exactly e.Size bytes and end there (a transport gives a reader limited
// to the file's frame), and sum is their SHA-256; anything else is refused
// and leaves nothing behind. The file replaces the one at e.Path, if any,
// atomically.
func (s *Stage) Put(e Entry, r io.Reader, sum []byte) error {
	if e.Dir {
		return s.putDir(e)
	}
	in, err := s.Create(e)
	if err != nil {
		return err
	}
	defer in.Abort()
	if r == nil { // an empty file needs no reader
		r = bytes.NewReader(nil)
	}
	if _, err := io.Copy(in, r); err != nil {
		return fmt.Errorf("receiving %s: %w", s.full(e.Path), err)
	}
	return in.Commit(sum)
}

func (s *Stage) putDir(e Entry) error {
	if err := e.Check(); err != nil {
		return fmt.Errorf("stage %s: %w", s.root, err)
	}
	dirfd, name, err := openParent(s.fd, e.Path)
	if err != nil {
		return fmt.Errorf("putting directory %s: %w", s.full(e.Path), err)
	}
	defer unix.Close(dirfd)
	parent, _ := splitPath(e.Path)
	st, err := lstatAt(dirfd, name)
	switch {
	case errors.Is(err, unix.ENOENT):
		// 0700 until Sync sets the real mode: the files put into it
		// meanwhile must be writable whatever that mode is.
		if err := unix.Mkdirat(dirfd, name, 0o700); err != nil {
			return fmt.Errorf("creating directory %s: %w", s.full(e.Path), err)
		}
		s.touch(parent)
	case err != nil:
		return fmt.Errorf("putting directory %s: %w", s.full(e.Path), err)
	case !isDir(&st):
		return fmt.Errorf("putting directory %s: a file or symbolic link is there (mode %#o); remove it first", s.full(e.Path), st.Mode)
	}
	s.mu.Lock()
	s.dirs[e.Path] = e
	s.touched[e.Path] = true
	s.mu.Unlock()
	return nil
}

// Incoming is a file being received: Create it, Write the body, then
// Commit with the checksum, which the transport may only learn after the
// body (a sender hashes as it sends). Abort drops it; it is safe to call
// after Commit, so `defer in.Abort()` is the usual form.
type Incoming struct {
	s     *Stage
	e     Entry
	dirfd int
	tmp   string // temporary name in dirfd, unique in the process
	f     *os.File
	h     hash.Hash
	n     int64
	err   error // a Write refused: Commit refuses too
	done  bool
}

// Create starts receiving the file e: a temporary file in the directory
// of e.Path, which must exist and be reached without symbolic links.
func (s *Stage) Create(e Entry) (*Incoming, error) {
	if err := e.Check(); err != nil {
		return nil, fmt.Errorf("stage %s: %w", s.root, err)
	}
	if e.Dir {
		return nil, fmt.Errorf("stage %s: %q is a directory, which has no contents to receive", s.root, e.Path)
	}
	dirfd, _, err := openParent(s.fd, e.Path)
	if err != nil {
		return nil, fmt.Errorf("receiving %s: %w", s.full(e.Path), err)
	}
	dir, _ := splitPath(e.Path)
	for {
		tmp := tempPrefix + strconv.Itoa(os.Getpid()) + "." + strconv.FormatUint(tempSeq.Add(1), 10)
		fd, err := openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue // a leftover of an earlier process with our pid
		}
		if err != nil {
			unix.Close(dirfd)
			return nil, fmt.Errorf("receiving %s: creating temporary file: %w", s.full(e.Path), err)
		}
		in := &Incoming{s: s, e: e, dirfd: dirfd, tmp: tmp, h: sha256.New()}
		in.f = os.NewFile(uintptr(fd), s.full(joinRel(dir, tmp)))
		s.mu.Lock()
		s.active[tmp] = true
		s.mu.Unlock()
		return in, nil
	}
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// Write writes body bytes. It refuses bytes beyond the announced size,
// so a runaway peer cannot fill the disk.
func (in *Incoming) Write(p []byte) (int, error) {
	if in.err != nil {
		return 0, in.err
	}
	if in.done {
		return 0, fmt.Errorf("receiving %s: write after Commit or Abort", in.s.full(in.e.Path))
	}
	if int64(len(p)) > in.e.Size-in.n {
		in.err = fmt.Errorf("receiving %s: more than the announced %d bytes; refused", in.s.full(in.e.Path), in.e.Size)
		return 0, in.err
	}
	n, err := in.f.Write(p)
	in.h.Write(p[:n])
	in.n += int64(n)
	if err != nil {
		in.err = fmt.Errorf("receiving %s: %w", in.s.full(in.e.Path), err)
		return n, in.err
	}
	return n, nil
}

// Commit checks the size and the SHA-256 of what was written, sets the
// mode and the times (atime = mtime), makes the file durable and renames
// it over e.Path. The name's directory is made durable by the next Sync.
// On any error nothing is left behind.
func (in *Incoming) Commit(sum []byte) error {
	if in.done {
		return fmt.Errorf("receiving %s: Commit after Commit or Abort", in.s.full(in.e.Path))
	}
	err := in.commit(sum)
	if err != nil {
		in.Abort()
		return err
	}
	return nil
}

func (in *Incoming) commit(sum []byte) error {
	path := in.s.full(in.e.Path)
	if in.err != nil {
		return in.err
	}
	if in.n != in.e.Size {
		return fmt.Errorf("receiving %s: got %d bytes, announced %d; refused (the transfer was cut short?)", path, in.n, in.e.Size)
	}
	if len(sum) != SumSize {
		return fmt.Errorf("receiving %s: checksum of %d bytes, want a SHA-256 (%d bytes)", path, len(sum), SumSize)
	}
	if !bytes.Equal(in.h.Sum(nil), sum) {
		return fmt.Errorf("receiving %s: SHA-256 mismatch, contents corrupted in transit; refused", path)
	}
	// Mode and times before the fsync, so that the one fsync makes them
	// durable with the data: a message whose mtime (its INTERNALDATE)
	// came back as the time of the copy after a crash would be wrong.
	if err := unix.Fchmod(int(in.f.Fd()), in.e.Mode); err != nil {
		return fmt.Errorf("receiving %s: %w", path, err)
	}
	ts := unix.NsecToTimespec(in.e.MTime)
	if err := unix.UtimesNanoAt(in.dirfd, in.tmp, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("receiving %s: setting times: %w", path, err)
	}
	if err := in.f.Sync(); err != nil {
		return fmt.Errorf("receiving %s: fsync: %w", path, err)
	}
	if err := in.f.Close(); err != nil {
		in.f = nil
		return fmt.Errorf("receiving %s: %w", path, err)
	}
	in.f = nil
	_, name := splitPath(in.e.Path)
	if err := unix.Renameat(in.dirfd, in.tmp, in.dirfd, name); err != nil {
		if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("receiving %s: a directory is there; remove it first", path)
		}
		return fmt.Errorf("receiving %s: renaming into place: %w", path, err)
	}
	in.done = true
	dir, _ := splitPath(in.e.Path)
	in.s.mu.Lock()
	delete(in.s.active, in.tmp)
	in.s.touched[dir] = true
	in.s.mu.Unlock()
	unix.Close(in.dirfd)
	in.dirfd = -1
	return nil
}

// Abort drops the file being received. It does nothing after Commit.
func (in *Incoming) Abort() {
	if in.done {
		return
	}
	in.done = true
	if in.f != nil {
		in.f.Close()
		in.f = nil
	}
	_ = unix.Unlinkat(in.dirfd, in.tmp, 0)
	unix.Close(in.dirfd)
	in.dirfd = -1
	in.s.mu.Lock()
	delete(in.s.active, in.tmp)
	in.s.mu.Unlock()
}

// Remove removes e.Path from the stage, whatever it is there: a file, a
// symbolic link (not followed), or a directory, which must be empty but
// for what Scan does not list (the contents of a tmp/ directory, lock
// files, temporary files). A path that is not there is not an error.
func (s *Stage) Remove(e Entry) error {
	if err := ValidPath(e.Path); err != nil {
		return fmt.Errorf("stage %s: removing: %w", s.root, err)
	}
	path := s.full(e.Path)
	dirfd, name, err := openParent(s.fd, e.Path)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	defer unix.Close(dirfd)
	st, err := lstatAt(dirfd, name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	if isDir(&st) {
		err = removeDir(dirfd, name)
	} else {
		err = unix.Unlinkat(dirfd, name, 0)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("removing directory %s: not empty; remove its entries first (deepest first, as Diff orders them)", path)
		}
		return fmt.Errorf("removing %s: %w", path, err)
	}
	parent, _ := splitPath(e.Path)
	s.mu.Lock()
	s.touched[parent] = true
	delete(s.dirs, e.Path)
	delete(s.touched, e.Path)
	s.mu.Unlock()
	return nil
}

// removeDir removes the directory name in dirfd. If it is not empty, what
// Scan does not list is removed from it first: those entries are in no
// manifest, so nobody would ever remove them otherwise.
func removeDir(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
	if !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return err
	}
	if err := clearUnlisted(dirfd, name, name == tmpDir, 0); err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// maxClearDepth bounds clearUnlisted's recursion: a Maildir is three
// levels deep, and a deeper tree inside a tmp/ is not ours to explore.
const maxClearDepth = 16

func clearUnlisted(dirfd int, name string, all bool, depth int) error {
	if depth > maxClearDepth {
		return unix.ENOTEMPTY
	}
	fd, err := openat(dirfd, name, dirFlags, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	rfd, err := openDirAt(fd, "")
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(rfd), name)
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		st, err := lstatAt(fd, n)
		if err != nil {
			continue
		}
		if !all && !skipName(n) && (isDir(&st) || isReg(&st)) {
			continue // listed by Scan: in a manifest, removed by its entry
		}
		if isDir(&st) {
			if err := clearUnlisted(fd, n, true, depth+1); err != nil {
				return err
			}
			err = unix.Unlinkat(fd, n, unix.AT_REMOVEDIR)
		} else {
			err = unix.Unlinkat(fd, n, 0)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}

// Sync makes the pass durable: for each directory touched since the last
// Sync, once and deepest first, it applies the mode and mtime of a
// directory Put (now that no more files go into it) and fsyncs it. When it
// returns nil, everything Put and removed before it survives a crash. On
// an error the same directories are tried again by the next Sync.
func (s *Stage) Sync() error {
	s.mu.Lock()
	touched, dirs := s.touched, s.dirs
	s.touched, s.dirs = make(map[string]bool), make(map[string]Entry)
	s.mu.Unlock()

	paths := make([]string, 0, len(touched))
	for p := range touched {
		paths = append(paths, p)
	}
	// Deepest first (reverse path order puts children before parents), so
	// that a parent whose mode forbids entering it is changed last.
	slices.SortFunc(paths, func(a, b string) int { return strings.Compare(b, a) })
	for _, p := range paths {
		if err := s.syncDir(p, dirs); err != nil {
			s.mu.Lock()
			for q := range touched {
				s.touched[q] = true
			}
			for q, e := range dirs {
				if _, newer := s.dirs[q]; !newer {
					s.dirs[q] = e
				}
			}
			s.mu.Unlock()
			return err
		}
	}
	return nil
}

func (s *Stage) syncDir(p string, dirs map[string]Entry) error {
	fd, err := openDirAt(s.fd, p)
	if errors.Is(err, unix.ENOENT) {
		return nil // removed later in the pass; its parent's fsync covers that
	}
	if err != nil {
		return fmt.Errorf("stage %s: syncing directory %q: %w", s.root, p, explain(err))
	}
	defer unix.Close(fd)
	if e, ok := dirs[p]; ok {
		ts := unix.NsecToTimespec(e.MTime)
		if err := unix.UtimesNanoAt(fd, ".", []unix.Timespec{ts, ts}, 0); err != nil {
			return fmt.Errorf("setting times of %s: %w", s.full(p), err)
		}
		if err := unix.Fchmod(fd, e.Mode); err != nil {
			return fmt.Errorf("setting mode of %s: %w", s.full(p), err)
		}
	}
	if err := fsyncDir(fd); err != nil {
		return fmt.Errorf("fsync of directory %s: %w", s.full(p), err)
	}
	return nil
}
