package directory

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ErrResync means the caller's (epoch, seq) cannot be continued from the
// journal: another epoch, entries compacted away, or a gap. The replica
// must load a full snapshot.
var ErrResync = errors.New("replica must resync from a full snapshot")

// File names inside a Store's directory.
const (
	snapshotFile = "snapshot"
	journalFile  = "journal"
	lockFile     = "lock"
	tmpSuffix    = ".tmp"
)

const (
	// defaultOverlayLimit is how many changed users the overlay in front of
	// the compact base holds before a background rebuild folds them in.
	defaultOverlayLimit = 4096
	// retainEntries is how many recent entries Since can serve from memory
	// (they survive Compact).
	retainEntries = 100000
)

// Store is the durable user set of a passwd server: a snapshot file and an
// append-only journal in a state directory, with the live index in a
// Directory. Writers are serialised; readers use Index or Directory and
// never wait.
//
// Durability: Apply and ApplyReplicated return only after the journal
// record is fsynced; Replace, Reset and Compact write the snapshot to a
// temporary file, fsync it, rename it over the old one and fsync the
// directory before touching the journal. If a write to disk fails in a
// way that leaves the on-disk state uncertain, the Store refuses further
// writes (reads go on) until it is reopened.
type Store struct {
	dir  string
	lock *os.File
	d    Directory

	mu         sync.Mutex
	epoch, seq uint64
	journal    *os.File
	jsize      int64
	entries    []Entry // recent entries, contiguous seqs ending at seq
	watch      chan struct{}
	broken     error
	closed     bool
	notes      []string
	rebuilding bool
	installs   uint64 // counts Replace/Reset: a rebuild of an older set is dropped
	wg         sync.WaitGroup

	overlayLimit int
	hook         func(step string) error // failure injection for tests
}

func (s *Store) step(name string) error {
	if s.hook != nil {
		return s.hook(name)
	}
	return nil
}

// Open opens (creating if needed) the store in dir and recovers it: it
// loads the snapshot, replays journal entries of the same epoch after the
// snapshot's seq, and truncates a torn last record (see Notes). A damaged
// record followed by more records is an error naming file and offset.
// The directory is locked against a second process.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("state directory %s is in use by another process: %v", dir, err)
	}
	s := &Store{dir: dir, lock: lf, watch: make(chan struct{}), overlayLimit: defaultOverlayLimit}
	if err := s.recover(); err != nil {
		lf.Close()
		if s.journal != nil {
			s.journal.Close()
		}
		return nil, err
	}
	return s, nil
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }

func (s *Store) recover() error {
	if err := os.Remove(s.path(snapshotFile + tmpSuffix)); err == nil {
		s.note("removed %s left by an interrupted snapshot write", snapshotFile+tmpSuffix)
	}
	ix, epoch, seq, err := s.loadSnapshot()
	if errors.Is(err, os.ErrNotExist) {
		if fi, jerr := os.Stat(s.path(journalFile)); jerr == nil && fi.Size() > 0 {
			return fmt.Errorf("%s: journal without a snapshot: refusing to start from an empty user set", s.dir)
		}
		ix, epoch, seq = emptyIndex, newEpoch(0), 0
		if err := s.writeSnapshotFile(ix, epoch, seq); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	jpath := s.path(journalFile)
	data, err := os.ReadFile(jpath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	js, err := scanJournal(jpath, data)
	if err != nil {
		return err
	}
	if js.torn != "" {
		s.note("%s", js.torn)
	}
	end := js.end
	stale := 0
	var entries []Entry
	ix = ix.mutableCopy()
	for i, e := range js.entries {
		switch {
		case e.Epoch != epoch:
			if len(entries) > 0 {
				return fmt.Errorf("%s: record at offset %d is of epoch %d after records of the snapshot's epoch %d", jpath, js.offsets[i], e.Epoch, epoch)
			}
			stale++
			continue
		case e.Seq <= seq:
			continue // already in the snapshot (a crash after Compact wrote it)
		case e.Seq != seq+1:
			return fmt.Errorf("%s: record at offset %d has seq %d, expected %d", jpath, js.offsets[i], e.Seq, seq+1)
		}
		ne, err := e.normalize()
		if err == nil {
			ix, err = ix.apply(ne)
		}
		if err != nil {
			return fmt.Errorf("%s: record at offset %d (seq %d) does not apply: %v", jpath, js.offsets[i], e.Seq, err)
		}
		ne.Epoch, ne.Seq = e.Epoch, e.Seq
		entries = append(entries, ne)
		seq = e.Seq
	}
	if stale > 0 && stale == len(js.entries) {
		// A crash after Replace renamed the new snapshot and before it
		// reset the journal: these belong to the replaced set.
		s.note("%s: dropped %d records of the replaced epoch", jpath, stale)
		end = 0
	} else if stale > 0 {
		return fmt.Errorf("%s: %d records of an old epoch before records of the current one", jpath, stale)
	}
	if ix, err = ix.seal().rebase(); err != nil {
		return err
	}
	f, err := os.OpenFile(jpath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	s.journal = f
	if end != int64(len(data)) {
		if err := f.Truncate(end); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		return err
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.jsize = end
	s.epoch, s.seq, s.entries = epoch, seq, entries
	s.d.Swap(ix)
	return nil
}

func (s *Store) note(format string, a ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, a...))
}

// Notes returns what recovery repaired (torn journal tails, leftovers of
// interrupted writes), for the server to log.
func (s *Store) Notes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.notes...)
}

func (s *Store) loadSnapshot() (*Index, uint64, uint64, error) {
	p := s.path(snapshotFile)
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, 0, err
	}
	ix, h, err := readSnapshot(f, fi.Size())
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s: %w", p, err)
	}
	return ix, h.epoch, h.seq, nil
}

// newEpoch returns an epoch greater than old: the current time in
// nanoseconds, so a primary that lost its state still starts a new epoch
// its replicas have not seen.
func newEpoch(old uint64) uint64 {
	return max(old+1, uint64(time.Now().UnixNano()))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeSnapshotFile writes ix atomically: temp file, fsync, rename, fsync
// of the directory. An error before the rename leaves the old snapshot.
func (s *Store) writeSnapshotFile(ix *Index, epoch, seq uint64) error {
	tmp := s.path(snapshotFile + tmpSuffix)
	if err := s.step("snapshot-create"); err != nil {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = writeSnapshot(f, ix, epoch, seq)
	if err == nil {
		err = s.step("snapshot-write")
	}
	if err == nil {
		err = s.step("snapshot-sync")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.step("snapshot-rename")
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing snapshot: %w", err)
	}
	if err := os.Rename(tmp, s.path(snapshotFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing snapshot: %w", err)
	}
	if err := s.step("dir-sync"); err != nil {
		return &afterRename{err}
	}
	if err := syncDir(s.dir); err != nil {
		return &afterRename{err}
	}
	return nil
}

// afterRename is a snapshot error after the new snapshot took the old
// one's place: what is on disk is the new snapshot.
type afterRename struct{ err error }

func (e *afterRename) Error() string { return "after renaming the new snapshot: " + e.err.Error() }
func (e *afterRename) Unwrap() error { return e.err }

// resetJournal empties the journal (after a snapshot made it redundant).
func (s *Store) resetJournal() error {
	if err := s.step("journal-reset"); err != nil {
		return err
	}
	if err := s.journal.Truncate(0); err != nil {
		return err
	}
	if _, err := s.journal.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := s.journal.Sync(); err != nil {
		return err
	}
	s.jsize = 0
	return nil
}

// Directory returns the live directory (its Current is Index()).
func (s *Store) Directory() *Directory { return &s.d }

// Index returns the current index.
func (s *Store) Index() *Index { return s.d.Current() }

// Generation returns the epoch and the seq of the last change.
func (s *Store) Generation() (epoch, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch, s.seq
}

func (s *Store) writable() error {
	if s.closed {
		return errors.New("directory store is closed")
	}
	if s.broken != nil {
		return fmt.Errorf("directory store refuses writes after a disk error (restart passwdd to recover): %w", s.broken)
	}
	return nil
}

// Apply validates e against the current index (unknown user, duplicate
// name, alias or uid, invalid fields: an error, nothing written), assigns
// the next seq of the current epoch, appends it to the journal, fsyncs,
// then publishes the new index. It returns the entry as stored (names
// normalised, Epoch and Seq set). For the primary.
func (s *Store) Apply(e Entry) (Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return Entry{}, err
	}
	ne, err := e.normalize()
	if err != nil {
		return Entry{}, err
	}
	ne.Epoch, ne.Seq = s.epoch, s.seq+1
	if err := s.commit(ne); err != nil {
		return Entry{}, err
	}
	// The stored entry keeps its own User and Patch.
	if ne.User != nil {
		c := ne.User.Clone()
		ne.User = &c
	}
	if ne.Patch != nil {
		p := *ne.Patch
		ne.Patch = &p
	}
	return ne, nil
}

// ApplyReplicated applies an entry received from the primary: its epoch
// must be the store's and its seq exactly the next one, else the error
// wraps ErrResync.
func (s *Store) ApplyReplicated(e Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if e.Epoch != s.epoch {
		return fmt.Errorf("%w: entry of epoch %d, replica at epoch %d", ErrResync, e.Epoch, s.epoch)
	}
	if e.Seq != s.seq+1 {
		return fmt.Errorf("%w: entry seq %d, replica expects %d", ErrResync, e.Seq, s.seq+1)
	}
	ne, err := e.normalize()
	if err != nil {
		return err
	}
	return s.commit(ne)
}

// commit applies, journals and publishes ne (Epoch and Seq set). s.mu held.
func (s *Store) commit(ne Entry) error {
	cur := s.d.Current()
	nix, err := cur.apply(ne)
	if err != nil {
		return err
	}
	rec, err := encodeRecord(ne)
	if err != nil {
		return err
	}
	err = s.step("journal-write")
	if err == nil {
		_, err = s.journal.Write(rec)
	}
	if err != nil {
		// Take back whatever part of the record reached the file, so the
		// next append does not follow garbage.
		if terr := s.journal.Truncate(s.jsize); terr != nil {
			s.broken = fmt.Errorf("journal write failed (%v) and truncating it back failed: %v", err, terr)
		} else if _, serr := s.journal.Seek(s.jsize, io.SeekStart); serr != nil {
			s.broken = serr
		}
		return fmt.Errorf("writing journal: %w", err)
	}
	err = s.step("journal-sync")
	if err == nil {
		err = s.journal.Sync()
	}
	if err != nil {
		// After a failed fsync the kernel may have dropped the dirty pages:
		// what is on disk is unknown, so stop writing (see fsyncgate).
		s.broken = fmt.Errorf("journal fsync failed: %w", err)
		return fmt.Errorf("syncing journal: %w", err)
	}
	s.jsize += int64(len(rec))
	s.seq = ne.Seq
	s.entries = append(s.entries, ne)
	s.publish(nix)
	return nil
}

// publish swaps in ix, wakes watchers and starts a background rebuild when
// the overlay has grown. s.mu held.
func (s *Store) publish(ix *Index) {
	s.d.Swap(ix)
	close(s.watch)
	s.watch = make(chan struct{})
	if ix.ov.size() >= s.overlayLimit && !s.rebuilding {
		s.rebuilding = true
		s.wg.Add(1)
		go s.rebuild(ix, s.installs, s.seq)
	}
}

// rebuild folds ix's overlay into a new base off to the side, then replays
// the entries applied meanwhile and swaps the result in.
func (s *Store) rebuild(ix *Index, installs, seq uint64) {
	defer s.wg.Done()
	nix, err := ix.rebase()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rebuilding = false
	if err != nil {
		s.note("background index rebuild failed: %v", err)
		return
	}
	if s.installs != installs || s.closed {
		return // replaced meanwhile
	}
	nix = nix.mutableCopy()
	for _, e := range s.entriesAfter(seq) {
		if nix, err = nix.apply(e); err != nil {
			s.note("background index rebuild: replaying seq %d: %v", e.Seq, err)
			return
		}
	}
	s.d.Swap(nix.seal())
}

// entriesAfter returns the retained entries with Seq > seq. s.mu held.
func (s *Store) entriesAfter(seq uint64) []Entry {
	if len(s.entries) == 0 {
		return nil
	}
	first := s.entries[0].Seq
	if seq+1 < first {
		return nil
	}
	return s.entries[seq+1-first:]
}

// Replace makes users the whole user set, all or nothing: it builds the
// index first (any invalid user: an error, nothing changed), writes a new
// snapshot under a new epoch atomically, then starts a fresh journal. A
// crash at any point leaves the old or the new set after Open. For bulk
// import on the primary.
func (s *Store) Replace(users []User) (epoch uint64, err error) {
	ix, err := Build(users)
	if err != nil {
		return 0, err
	}
	return s.ReplaceIndex(ix)
}

// ReplaceIndex is Replace with an index already built (see Builder).
func (s *Store) ReplaceIndex(ix *Index) (epoch uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	epoch = newEpoch(s.epoch)
	if err := s.install(ix, epoch, 0); err != nil {
		return 0, err
	}
	return epoch, nil
}

// Reset makes users the whole set at the primary's (epoch, seq): a
// secondary's full resync. All or nothing, like Replace.
func (s *Store) Reset(epoch, seq uint64, users []User) error {
	ix, err := Build(users)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.install(ix, epoch, seq)
}

// ResetFrom is Reset from a snapshot stream written by SnapshotTo,
// without holding a []User of the whole set.
func (s *Store) ResetFrom(r io.Reader) error {
	ix, h, err := readSnapshot(r, 0)
	if err != nil {
		return fmt.Errorf("reading snapshot stream: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.install(ix, h.epoch, h.seq)
}

// install writes ix as the snapshot at (epoch, seq), resets the journal and
// publishes it. s.mu held.
func (s *Store) install(ix *Index, epoch, seq uint64) error {
	if err := s.writable(); err != nil {
		return err
	}
	err := s.writeSnapshotFile(ix, epoch, seq)
	var ar *afterRename
	if err != nil && !errors.As(err, &ar) {
		return err // the old set stands, on disk and in memory
	}
	if err == nil {
		err = s.resetJournal()
	}
	// The new snapshot is in place: a reopen gives the new set, so serve
	// it; but if anything after the rename failed, stop writing.
	if err != nil {
		s.broken = err
	}
	s.epoch, s.seq, s.entries = epoch, seq, nil
	s.installs++
	s.publish(ix)
	if err != nil {
		return fmt.Errorf("replacing the user set: %w", err)
	}
	return nil
}

// Compact writes a snapshot at the current seq and empties the journal.
// Recent entries stay in memory, so Since keeps working across it for
// replicas that are not far behind. It holds the writer lock while the
// snapshot is written (about a second at 1 M users): admin changes wait,
// queries do not.
func (s *Store) Compact() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	err := s.writeSnapshotFile(s.d.Current(), s.epoch, s.seq)
	var ar *afterRename
	if err != nil && !errors.As(err, &ar) {
		return err
	}
	if err == nil {
		err = s.resetJournal()
	}
	if err != nil {
		s.broken = err
		return fmt.Errorf("compacting: %w", err)
	}
	if !s.rebuilding && len(s.entries) > retainEntries {
		s.entries = append([]Entry(nil), s.entries[len(s.entries)-retainEntries:]...)
	}
	return nil
}

// JournalSize returns the journal's size in bytes (to decide when to
// Compact).
func (s *Store) JournalSize() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jsize
}

// Snapshot returns the whole set with its generation.
func (s *Store) Snapshot() (epoch, seq uint64, users []User) {
	s.mu.Lock()
	ix, epoch, seq := s.d.Current(), s.epoch, s.seq
	s.mu.Unlock()
	return epoch, seq, ix.All()
}

// SnapshotTo streams the whole set in the snapshot file format (what
// ResetFrom reads) and returns its generation. Writers are not blocked
// while it streams: it encodes an immutable index.
func (s *Store) SnapshotTo(w io.Writer) (epoch, seq uint64, err error) {
	s.mu.Lock()
	ix, epoch, seq := s.d.Current(), s.epoch, s.seq
	s.mu.Unlock()
	return epoch, seq, writeSnapshot(w, ix, epoch, seq)
}

// Since returns the entries after seq in epoch, oldest first (nil when the
// caller is up to date). The entries are shared with the store: read them
// (encode them for a replica), do not modify them. The error wraps ErrResync when epoch is not the
// current one, seq is ahead of the store, or the entries are no longer
// retained.
func (s *Store) Since(epoch, seq uint64) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case epoch != s.epoch:
		return nil, fmt.Errorf("%w: epoch %d, store at epoch %d", ErrResync, epoch, s.epoch)
	case seq > s.seq:
		return nil, fmt.Errorf("%w: seq %d is ahead of the store's %d", ErrResync, seq, s.seq)
	case seq == s.seq:
		return nil, nil
	}
	es := s.entriesAfter(seq)
	if len(es) == 0 || es[0].Seq != seq+1 {
		return nil, fmt.Errorf("%w: entries after seq %d are no longer retained", ErrResync, seq)
	}
	return append([]Entry(nil), es...), nil
}

// Watch returns a channel closed at the next change (Apply, replicated
// entry, Replace, Reset). Call it again after it fires.
func (s *Store) Watch() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watch
}

// Close waits for a background rebuild, closes the files and releases the
// directory lock. The index stays readable.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
	err := s.journal.Close()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	return err
}
