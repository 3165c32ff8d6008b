package dedup

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"correo/src/dirsync"
)

// Bounds of the record. A key matters only until the queue that sent it
// has stopped retrying: the queue's lifetime is 5 days by default, so 7
// days covers every retry; and a retry comes after at most the
// deliveries made to this host in between, far fewer than a million in
// the minutes to hours a storage host or smtpd takes to come back. Memory
// is about 60 bytes per key (60 MB at MaxKeys). They are constants, not
// settings: nothing about a host changes what they must cover.
const (
	MaxAge  = 7 * 24 * time.Hour
	MaxKeys = 1 << 20
)

// The log is a header followed by fixed-size records, appended in time
// order:
//
//	magic   16 bytes  "correo-dkeys-v1\n"
//	record  32 bytes  key (16), unix seconds (8, big endian), kind (1:
//	                  'I' intent, 'D' delivered), 3 zero bytes,
//	                  CRC-32C of the 28 bytes before (4, big endian)
//
// Fixed records make a torn tail (a crash during an append) easy to find:
// the first record that is short or fails its checksum ends the log, and
// whatever follows it is zeroed at start-up.
//
// The file is kept longer than its records, zero-filled ahead of them in
// steps of allocRecords, and records are written over those zeros. An
// fdatasync after an append that grows the file must commit the new
// size through the file system's journal; after an overwrite of blocks
// already written it writes one data block and nothing else: 0.23 ms
// instead of 0.7 ms per delivery on a journaled ext4 here. A zero record
// fails its checksum, so the zeros end the log like a torn tail does.
const (
	magic        = "correo-dkeys-v1\n"
	recordLen    = 32
	allocRecords = 32 << 10 // 1 MiB of records at a time
)

// Record kinds. An intent is appended (not synced) before the message is
// written to the Maildir, the delivered record after it, synced before
// the 250. The Maildir write makes the message visible (rename) before it
// is durable (directory fsync), so a crash between the two leaves a
// message in new/ whose key says only "intent": the next attempt with
// that key must look in the mailbox (Claim's Unsure) instead of trusting
// the log's silence.
const (
	kindIntent    = 'I'
	kindDelivered = 'D'
)

// State is what the record knows of a key.
type State int

const (
	// New: never attempted here (or forgotten: past the bounds).
	New State = iota
	// Unsure: an attempt began and its end was not recorded (a crash):
	// the message may be in the mailbox.
	Unsure
	// Delivered: stored, and answered 250 (or about to be).
	Delivered
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// compactMin is the size (in records) below which the log is never
// rewritten: small logs cost nothing to read at start-up.
const compactMin = 64 << 10

// Store is pdeliveryd's durable record of delivered keys. It is safe for
// concurrent use.
type Store struct {
	path    string
	maxAge  time.Duration
	maxKeys int
	now     func() time.Time

	mu      sync.Mutex
	cond    *sync.Cond
	f       *os.File
	size    int64 // bytes of f known to be whole records (or the magic): where the next append goes
	alloc   int64 // bytes of f written (records, then zeros): its length
	recs    int   // records in f
	seen    map[Key]rec
	order   []entry // keys in append order, from head on: the eviction queue
	head    int
	claims  map[Key]chan struct{}
	written uint64 // appends made
	synced  uint64 // appends known durable
	syncing bool
	broken  error // a failed fdatasync: nothing is known durable any more
	closed  bool
}

type entry struct {
	k Key
	t int64
}

type rec struct {
	t    int64
	done bool // delivered, not only intended
}

// OpenInfo says what Open found.
type OpenInfo struct {
	Keys      int   // keys loaded (within the bounds)
	Truncated int64 // bytes of a torn or damaged tail cleared
}

// Open loads the log at path (created when missing), clearing a torn tail.
func Open(path string) (*Store, OpenInfo, error) {
	return open(path, MaxAge, MaxKeys, time.Now)
}

func open(path string, maxAge time.Duration, maxKeys int, now func() time.Time) (*Store, OpenInfo, error) {
	s := &Store{path: path, maxAge: maxAge, maxKeys: maxKeys, now: now,
		seen: map[Key]rec{}, claims: map[Key]chan struct{}{}}
	s.cond = sync.NewCond(&s.mu)
	var info OpenInfo
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, info, fmt.Errorf("delivery key log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, info, fmt.Errorf("delivery key log: %w", err)
	}
	if fi.Size() == 0 {
		if err := s.writeMagic(f); err != nil {
			f.Close()
			return nil, info, err
		}
		s.size, s.alloc = int64(len(magic)), int64(len(magic))
	} else {
		good, recs, err := s.load(f)
		if err != nil {
			f.Close()
			return nil, info, err
		}
		s.size, s.recs, s.alloc = good, recs, good
		cleared, err := s.clearTail(f, fi.Size())
		if err != nil {
			f.Close()
			return nil, info, err
		}
		info.Truncated = cleared
	}
	s.f = f
	s.evict(s.now().Unix())
	info.Keys = len(s.seen)
	return s, info, nil
}

func (s *Store) writeMagic(f *os.File) error {
	if _, err := f.WriteAt([]byte(magic), 0); err != nil {
		return fmt.Errorf("delivery key log %s: %w", s.path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("delivery key log %s: fsync: %w", s.path, err)
	}
	return dirsync.Sync(filepath.Dir(s.path))
}

// clearTail makes everything from s.size to the end of the file zeros,
// and the file a whole number of records long: what follows the last
// valid record is a torn append (a crash), an older log's stale records
// beyond it, or zeros already. It returns the bytes that were not zero.
func (s *Store) clearTail(f *os.File, fileSize int64) (int64, error) {
	end := s.size + (fileSize-s.size+recordLen-1)/recordLen*recordLen
	if fileSize < s.size {
		end = s.size
	}
	var dirty int64
	buf := make([]byte, 64<<10)
	for off := s.size; off < fileSize; {
		n, err := f.ReadAt(buf, off)
		for _, c := range buf[:n] {
			if c != 0 {
				dirty++
			}
		}
		off += int64(n)
		if err != nil {
			break // EOF; a read error shows again in the writes below
		}
	}
	if dirty == 0 && end == fileSize {
		s.alloc = fileSize
		return 0, nil
	}
	if err := s.zero(f, s.size, end); err != nil {
		return dirty, fmt.Errorf("clearing the torn tail of the delivery key log %s from byte %d: %w", s.path, s.size, err)
	}
	if err := f.Sync(); err != nil {
		return dirty, fmt.Errorf("delivery key log %s: fsync: %w", s.path, err)
	}
	s.alloc = end
	return dirty, nil
}

// zero writes zeros over [from, to) of f.
func (s *Store) zero(f *os.File, from, to int64) error {
	buf := make([]byte, min(to-from, 256<<10))
	for off := from; off < to; {
		n := min(int64(len(buf)), to-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// reserve makes room for n more bytes of records: when they would pass
// the zeros already written, it writes the next allocRecords of zeros
// and syncs them with the file's new length, so that the appends after
// it are overwrites.
func (s *Store) reserve(n int64) error {
	if s.size+n <= s.alloc {
		return nil
	}
	step := int64(allocRecords * recordLen)
	end := s.alloc + (s.size+n-s.alloc+step-1)/step*step
	if err := s.zero(s.f, s.alloc, end); err != nil {
		return fmt.Errorf("growing the delivery key log %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("growing the delivery key log %s: fsync: %w", s.path, err)
	}
	s.alloc = end
	return nil
}

// load reads the log into memory and returns the length of its whole,
// valid part. A file that does not start with the magic is not ours:
// refusing it is safer than overwriting it.
func (s *Store) load(f *os.File) (good int64, recs int, err error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 256<<10)
	head := make([]byte, len(magic))
	if n, err := io.ReadFull(r, head); err != nil || string(head) != magic {
		if n < len(magic) && string(head[:n]) == magic[:n] {
			// A crash while the magic itself was written: empty log.
			if err := f.Truncate(0); err != nil {
				return 0, 0, fmt.Errorf("delivery key log %s: %w", s.path, err)
			}
			return int64(len(magic)), 0, s.writeMagic(f)
		}
		return 0, 0, fmt.Errorf("%s is not a correo delivery key log (no %q at its start); move it away, pdeliveryd starts a new one", s.path, magic[:len(magic)-1])
	}
	good = int64(len(magic))
	rec := make([]byte, recordLen)
	for {
		if _, err := io.ReadFull(r, rec); err != nil {
			return good, recs, nil // EOF, or a short record: a torn tail
		}
		k, t, done, ok := ParseRecord(rec)
		if !ok {
			return good, recs, nil
		}
		s.add(k, t, done)
		good += recordLen
		recs++
	}
}

// ParseRecord decodes one log record; ok is false when its checksum does
// not match (torn or damaged), its kind is unknown, or it is not
// recordLen bytes.
func ParseRecord(b []byte) (k Key, unix int64, delivered, ok bool) {
	if len(b) != recordLen {
		return k, 0, false, false
	}
	if crc32.Checksum(b[:28], castagnoli) != binary.BigEndian.Uint32(b[28:]) {
		return k, 0, false, false
	}
	if b[24] != kindIntent && b[24] != kindDelivered || b[25]|b[26]|b[27] != 0 {
		return k, 0, false, false
	}
	copy(k[:], b[:16])
	return k, int64(binary.BigEndian.Uint64(b[16:24])), b[24] == kindDelivered, true
}

func appendRecord(b []byte, k Key, unix int64, delivered bool) []byte {
	b = append(b, k[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(unix))
	kind := byte(kindIntent)
	if delivered {
		kind = kindDelivered
	}
	b = append(b, kind, 0, 0, 0)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[len(b)-28:], castagnoli))
}

// add notes a record; a delivered key stays delivered.
func (s *Store) add(k Key, t int64, done bool) {
	if r, ok := s.seen[k]; ok && r.done && !done {
		return
	}
	s.seen[k] = rec{t, done}
	s.order = append(s.order, entry{k, t})
}

// evict drops keys past the bounds, oldest first.
func (s *Store) evict(now int64) {
	cutoff := now - int64(s.maxAge/time.Second)
	for s.head < len(s.order) {
		e := s.order[s.head]
		if len(s.seen) <= s.maxKeys && e.t > cutoff {
			break
		}
		if s.seen[e.k].t == e.t {
			delete(s.seen, e.k)
		}
		s.head++
	}
	// Reclaim the queue's dead front once it is most of the slice.
	if s.head > 1024 && s.head > len(s.order)/2 {
		s.order = append(s.order[:0:0], s.order[s.head:]...)
		s.head = 0
	}
}

// Len is the number of keys recorded.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// Claim reserves k for one delivery. Delivered means k was stored
// already (then there is nothing to release). Otherwise (New, or Unsure:
// look in the mailbox first) the caller calls Intend, delivers, calls
// Record if it stored the message, and then release; a second Claim of k
// waits until then, so two attempts with one key (a retry racing the
// attempt it repeats, whose client died) never both store the message.
// since is when an Unsure attempt began (unix seconds).
func (s *Store) Claim(k Key) (st State, since int64, release func()) {
	s.mu.Lock()
	for {
		r, ok := s.seen[k]
		if ok && r.t <= s.now().Unix()-int64(s.maxAge/time.Second) {
			ok = false
		}
		if ok && r.done {
			s.mu.Unlock()
			return Delivered, r.t, nil
		}
		if ok {
			st, since = Unsure, r.t
		}
		ch, busy := s.claims[k]
		if !busy {
			break
		}
		s.mu.Unlock()
		<-ch
		s.mu.Lock()
	}
	ch := make(chan struct{})
	s.claims[k] = ch
	s.mu.Unlock()
	var once sync.Once
	return st, since, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.claims, k)
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Intend notes that keys are about to be stored: appended, not synced (it
// must reach the file, not the disk, before the Maildir rename: a SIGKILL
// keeps what was written, and after a power loss the rename is not
// durable either unless the directory fsync ran, see the package doc).
func (s *Store) Intend(keys []Key) error {
	if len(keys) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.appendLocked(keys, false)
	return err
}

// Record adds keys as delivered, durably: when it returns nil they
// survive a crash of the process or the machine. Concurrent calls share
// one fdatasync (group commit): whoever finds no sync running syncs
// everything appended so far, the others wait for it.
func (s *Store) Record(keys []Key) error {
	if len(keys) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mine, err := s.appendLocked(keys, true)
	if err != nil {
		return err
	}
	// Not while a sync runs: it holds the old file's descriptor.
	if s.recs >= compactMin && s.recs > 2*len(s.seen) && !s.syncing {
		if err := s.compact(); err == nil {
			s.synced = s.written
			s.cond.Broadcast()
			return nil
		}
		// Compaction failed: the log is intact, only longer; sync it.
	}
	return s.syncLocked(mine)
}

// appendLocked writes records for keys and returns the append's number.
func (s *Store) appendLocked(keys []Key, done bool) (uint64, error) {
	if s.closed {
		return 0, fmt.Errorf("%w: %s", ErrClosed, s.path)
	}
	if s.broken != nil {
		return 0, s.broken
	}
	now := s.now().Unix()
	buf := make([]byte, 0, len(keys)*recordLen)
	for _, k := range keys {
		buf = appendRecord(buf, k, now, done)
	}
	if err := s.reserve(int64(len(buf))); err != nil {
		return 0, err
	}
	if n, err := s.f.WriteAt(buf, s.size); err != nil {
		// A partial record would end the log at the next start and hide
		// every record after it: zero it now.
		if n > 0 {
			s.zero(s.f, s.size, s.size+int64(n))
		}
		return 0, fmt.Errorf("appending to the delivery key log %s: %w", s.path, err)
	}
	s.size += int64(len(buf))
	s.recs += len(keys)
	for _, k := range keys {
		s.add(k, now, done)
	}
	s.evict(now)
	s.written++
	return s.written, nil
}

// syncLocked returns once append number mine is durable.
func (s *Store) syncLocked(mine uint64) error {
	for s.synced < mine {
		if s.broken != nil {
			return s.broken
		}
		if s.syncing {
			s.cond.Wait()
			continue
		}
		s.syncing = true
		target, f := s.written, s.f
		s.mu.Unlock()
		err := syscall.Fdatasync(int(f.Fd()))
		s.mu.Lock()
		s.syncing = false
		s.cond.Broadcast()
		if err != nil {
			// After a failed fdatasync the kernel may have dropped the
			// dirty pages; a later one succeeding proves nothing.
			s.broken = fmt.Errorf("fdatasync of the delivery key log %s failed (%w); keys are no longer recorded: fix the disk and restart pdeliveryd", s.path, err)
			return s.broken
		}
		if target > s.synced {
			s.synced = target
		}
	}
	return nil
}

// compact rewrites the log with the live keys only: written to a new
// file, synced, renamed over the log, directory synced. Called with mu
// held; appends wait meanwhile (at MaxKeys, about 30 MB once per million
// deliveries).
func (s *Store) compact() error {
	tmp := s.path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	w.WriteString(magic)
	var buf []byte
	n := 0
	for _, e := range s.order[s.head:] {
		r, ok := s.seen[e.k]
		if !ok || r.t != e.t {
			continue
		}
		buf = appendRecord(buf[:0], e.k, e.t, r.done)
		w.Write(buf)
		n++
	}
	// Zeros up to the next step, as reserve would write them.
	size := int64(len(magic)) + int64(n)*recordLen
	step := int64(allocRecords * recordLen)
	alloc := int64(len(magic)) + (int64(n)*recordLen+step)/step*step
	w.Write(make([]byte, alloc-size))
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err == nil {
		err = dirsync.Sync(filepath.Dir(s.path))
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	old := s.f
	s.f, s.size, s.alloc, s.recs = f, size, alloc, n
	old.Close()
	return nil
}

// Close closes the log. Claims still held may be released after.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.syncing {
		s.cond.Wait()
	}
	if s.closed {
		return nil
	}
	s.closed = true
	return s.f.Close()
}

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("delivery key log closed")
