package mailtree

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
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
// A pass ends with Sync, which makes everything durable at once; until
// then the stage's dirty marker says it cannot be trusted after a crash
// (see the package documentation).
type Stage struct {
	root string
	// fd is the root, opened once: every path is walked from it. Sync's
	// syncfs goes through it too, which matters: syncfs reports the file
	// system's writeback errors that happened since its descriptor was
	// opened, and a descriptor opened by Sync itself would miss those of
	// files written back early, in the middle of the pass.
	fd int

	// pass is held for reading by whatever changes the tree (from the
	// marker's check to the change) and for writing by Sync and by the
	// check for an interrupted pass, so that no change slips in between
	// Sync's syncfs and its removal of the marker, where it would be
	// neither durable nor covered by the marker.
	pass sync.RWMutex
	// dirtyMu guards dirty and broken, and makes the goroutines that start
	// a pass together write the marker once.
	dirtyMu sync.Mutex
	// dirty is set while the marker is on disk for a pass of this Stage.
	dirty bool
	// broken is the error of a failed syncfs. It sticks: the failure was
	// reported once and would not be again, so a later syncfs could succeed
	// with the pass's data lost. The marker stays for OpenStage to find.
	broken error

	mu sync.Mutex
	// dirs holds the directory entries put since the last Sync: their mode
	// and mtime are applied by Sync, after the files have gone in (which
	// changes a directory's mtime, and a read-only mode would refuse them).
	dirs map[string]Entry
	// active holds the temporary file names of transfers in progress,
	// which Manifest must not take for leftovers of a crash.
	active map[string]bool
}

var tempSeq atomic.Uint64

// dirtyMarker, in the stage root, is on disk while a pass is in progress.
// Its prefix keeps it out of Scan and refused by Entry.Check.
const dirtyMarker = tempPrefix + "dirty"

// fsyncFD and syncFS are replaced by a test that counts them.
var (
	fsyncFD = unix.Fsync
	syncFS  = unix.Syncfs
)

// OpenStage opens the stage at root, creating it (mode 0700) and its
// missing parents (0700) if needed. A stage left with the dirty marker by
// an interrupted pass is emptied. Close it when done.
func OpenStage(root string) (*Stage, error) {
	if err := mkdirDurable(root); err != nil {
		return nil, fmt.Errorf("creating stage %s: %w", root, err)
	}
	fd, err := openat(unix.AT_FDCWD, root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening stage %s: %w", root, err)
	}
	s := &Stage{
		root:   root,
		fd:     fd,
		dirs:   make(map[string]Entry),
		active: make(map[string]bool),
	}
	if err := s.dropInterrupted(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return s, nil
}

// markDirty makes sure the dirty marker is on disk before the caller,
// which holds s.pass for reading, changes the tree.
func (s *Stage) markDirty() error {
	s.dirtyMu.Lock()
	defer s.dirtyMu.Unlock()
	if s.broken != nil {
		return s.broken
	}
	if s.dirty {
		return nil
	}
	if err := writeMarker(s.fd); err != nil {
		return fmt.Errorf("stage %s: marking a pass in progress: %w", s.root, err)
	}
	s.dirty = true
	return nil
}

func writeMarker(rootfd int) error {
	fd, err := openat(rootfd, dirtyMarker, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), dirtyMarker)
	// For an operator who finds it; only its presence counts.
	_, err = fmt.Fprintf(f, "mailtree pass in progress (pid %d): if no pass is running, the stage is emptied when next opened\n", os.Getpid())
	if err == nil {
		err = fsyncFD(fd)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return fsyncFD(rootfd)
}

// dropInterrupted empties the stage if it has the dirty marker and no pass
// of this Stage is in progress.
func (s *Stage) dropInterrupted() error {
	s.pass.Lock()
	defer s.pass.Unlock()
	s.dirtyMu.Lock()
	dirty, broken := s.dirty, s.broken
	s.dirtyMu.Unlock()
	if broken != nil {
		return broken
	}
	if dirty {
		return nil
	}
	if _, err := lstatAt(s.fd, dirtyMarker); errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return fmt.Errorf("stage %s: looking for the dirty marker: %w", s.root, err)
	}
	// Marker last, and only once the rest is durably gone: a crash in the
	// middle leaves it for the next open to finish the job.
	if err := emptyDir(s.fd, dirtyMarker); err != nil {
		return fmt.Errorf("stage %s: emptying the stage of an interrupted pass: %w", s.root, err)
	}
	if err := fsyncFD(s.fd); err != nil {
		return fmt.Errorf("stage %s: fsync: %w", s.root, err)
	}
	if err := unix.Unlinkat(s.fd, dirtyMarker, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("stage %s: removing the dirty marker: %w", s.root, err)
	}
	if err := fsyncFD(s.fd); err != nil {
		return fmt.Errorf("stage %s: fsync: %w", s.root, err)
	}
	return nil
}

// emptyDir removes everything in the directory dirfd but the entry keep,
// following no symbolic link. A directory that Sync made read-only is made
// writable first, since its entries could not be removed otherwise.
func emptyDir(dirfd int, keep string) error {
	rfd, err := openDirAt(dirfd, "")
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(rfd), "")
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if n == keep {
			continue
		}
		st, err := lstatAt(dirfd, n)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return err
		}
		if !isDir(&st) {
			err = unix.Unlinkat(dirfd, n, 0)
		} else if err = emptySubdir(dirfd, n); err == nil {
			err = unix.Unlinkat(dirfd, n, unix.AT_REMOVEDIR)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing %q: %w", n, err)
		}
	}
	return nil
}

func emptySubdir(dirfd int, name string) error {
	fd, err := openat(dirfd, name, dirFlags, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchmod(fd, 0o700); err != nil {
		return err
	}
	return emptyDir(fd, "")
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

// Close releases the stage's root descriptor. A pass not ended by a Sync
// that succeeded leaves the dirty marker, so the next OpenStage empties
// the stage: to keep what an aborted pass copied, Sync before Close.
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

// Manifest scans the stage, so that a move resumed after a crash continues
// from what is already there. It removes the temporary files that an
// interrupted transfer left behind, and empties the stage first if it has
// the dirty marker of an interrupted pass (not one of this Stage).
func (s *Stage) Manifest() (*Manifest, error) {
	if err := s.dropInterrupted(); err != nil {
		return nil, err
	}
	return scanFD(s.fd, s.root, func(dirfd int, name string) {
		if name == dirtyMarker {
			return // ours: a pass may have started since dropInterrupted
		}
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
	s.pass.RLock()
	defer s.pass.RUnlock()
	if err := s.markDirty(); err != nil {
		return err
	}
	dirfd, name, err := openParent(s.fd, e.Path)
	if err != nil {
		return fmt.Errorf("putting directory %s: %w", s.full(e.Path), err)
	}
	defer unix.Close(dirfd)
	st, err := lstatAt(dirfd, name)
	switch {
	case errors.Is(err, unix.ENOENT):
		// 0700 until Sync sets the real mode: the files put into it
		// meanwhile must be writable whatever that mode is.
		if err := unix.Mkdirat(dirfd, name, 0o700); err != nil {
			return fmt.Errorf("creating directory %s: %w", s.full(e.Path), err)
		}
	case err != nil:
		return fmt.Errorf("putting directory %s: %w", s.full(e.Path), err)
	case !isDir(&st):
		return fmt.Errorf("putting directory %s: a file or symbolic link is there (mode %#o); remove it first", s.full(e.Path), st.Mode)
	}
	s.mu.Lock()
	s.dirs[e.Path] = e
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
	s.pass.RLock()
	defer s.pass.RUnlock()
	if err := s.markDirty(); err != nil {
		return nil, err
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
// mode and the times (atime = mtime) and renames the file over e.Path.
// The next Sync makes it durable. On any error nothing is left behind.
func (in *Incoming) Commit(sum []byte) error {
	if in.done {
		return fmt.Errorf("receiving %s: Commit after Commit or Abort", in.s.full(in.e.Path))
	}
	// Again, not only in Create: a Sync may have ended the pass since.
	in.s.pass.RLock()
	err := in.s.markDirty()
	if err == nil {
		err = in.commit(sum)
	}
	in.s.pass.RUnlock()
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
	// Mode and times before the rename, so that the name never shows the
	// message with the time of the copy as its mtime (its INTERNALDATE),
	// not even to a Manifest taken meanwhile.
	if err := unix.Fchmod(int(in.f.Fd()), in.e.Mode); err != nil {
		return fmt.Errorf("receiving %s: %w", path, err)
	}
	ts := unix.NsecToTimespec(in.e.MTime)
	if err := unix.UtimesNanoAt(in.dirfd, in.tmp, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("receiving %s: setting times: %w", path, err)
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
	in.s.mu.Lock()
	delete(in.s.active, in.tmp)
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
// files, temporary files). A path that is not there is not an error. The
// stage's own files (the temporary files and the dirty marker) are refused.
func (s *Stage) Remove(e Entry) error {
	if err := ValidPath(e.Path); err != nil {
		return fmt.Errorf("stage %s: removing: %w", s.root, err)
	}
	if _, name := splitPath(e.Path); strings.HasPrefix(name, tempPrefix) {
		return fmt.Errorf("stage %s: removing %q: a file of the stage itself, refused", s.root, e.Path)
	}
	s.pass.RLock()
	defer s.pass.RUnlock()
	if err := s.markDirty(); err != nil {
		return err
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
	s.mu.Lock()
	delete(s.dirs, e.Path)
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

// Sync makes the pass durable. It applies the mode and mtime of each
// directory Put since the last Sync (now that no more files go into it),
// deepest first, then flushes the stage's file system and removes the
// dirty marker. When it returns nil, everything Put and removed before it
// survives a crash. An error while applying or removing the marker can be
// retried by the next Sync; a failed flush cannot (the stage must be
// closed and opened again, which empties it).
func (s *Stage) Sync() error {
	s.pass.Lock()
	defer s.pass.Unlock()
	s.dirtyMu.Lock()
	defer s.dirtyMu.Unlock()
	if s.broken != nil {
		return s.broken
	}
	if !s.dirty {
		return nil
	}

	// No lock for s.dirs: its writers hold s.pass for reading.
	paths := slices.Collect(maps.Keys(s.dirs))
	// Deepest first (reverse path order puts children before parents), so
	// that a parent whose mode forbids entering it is changed last.
	slices.SortFunc(paths, func(a, b string) int { return strings.Compare(b, a) })
	for _, p := range paths {
		if err := s.applyDir(s.dirs[p]); err != nil {
			return err
		}
		delete(s.dirs, p)
	}

	// One syncfs rather than an fsync per file and per directory: a pass
	// writes thousands of small files, and each fsync waits for its own
	// disk flush (a journal commit on ext4 and XFS), where syncfs writes
	// them all back and waits once. What it flushes beyond the pass is the
	// rest of the stage's file system, which is the data_dir's (the stage
	// is made beside the mailboxes so that the commit is a rename): other
	// mailboxes' recent writes, which their writers fsync anyway. Since
	// Linux 5.8 it reports the writeback errors of the whole file system
	// since s.fd was opened, files already evicted from memory included.
	if err := syncFS(s.fd); err != nil {
		s.broken = fmt.Errorf("stage %s: syncfs: %w; the pass may be lost: close and reopen the stage, which empties it", s.root, err)
		return s.broken
	}
	if err := unix.Unlinkat(s.fd, dirtyMarker, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("stage %s: removing the dirty marker: %w", s.root, err)
	}
	if err := fsyncFD(s.fd); err != nil {
		return fmt.Errorf("stage %s: fsync: %w", s.root, err)
	}
	s.dirty = false
	return nil
}

// applyDir sets the mode and mtime of a directory Put.
func (s *Stage) applyDir(e Entry) error {
	fd, err := openDirAt(s.fd, e.Path)
	if errors.Is(err, unix.ENOENT) {
		return nil // removed since: nothing to apply
	}
	if err != nil {
		return fmt.Errorf("stage %s: setting mode and times of directory %q: %w", s.root, e.Path, explain(err))
	}
	defer unix.Close(fd)
	ts := unix.NsecToTimespec(e.MTime)
	if err := unix.UtimesNanoAt(fd, ".", []unix.Timespec{ts, ts}, 0); err != nil {
		return fmt.Errorf("setting times of %s: %w", s.full(e.Path), err)
	}
	if err := unix.Fchmod(fd, e.Mode); err != nil {
		return fmt.Errorf("setting mode of %s: %w", s.full(e.Path), err)
	}
	return nil
}
