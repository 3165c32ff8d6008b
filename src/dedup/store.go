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
//	record  28 bytes  key (16), unix seconds (8, big endian),
//	                  CRC-32C of the 24 bytes before (4, big endian)
//
// Fixed records make a torn tail (a crash during an append) easy to find:
// the first record that is short or fails its checksum ends the log, and
// the file is cut there at start-up.
const (
	magic     = "correo-dkeys-v1\n"
	recordLen = 28
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
	size    int64 // bytes of f known to be whole records (or the magic)
	recs    int   // records in f
	seen    map[Key]int64
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

// OpenInfo says what Open found.
type OpenInfo struct {
	Keys      int   // keys loaded (within the bounds)
	Truncated int64 // bytes of a torn or damaged tail cut off
}

// Open loads the log at path (created when missing), cutting a torn tail.
func Open(path string) (*Store, OpenInfo, error) {
	return open(path, MaxAge, MaxKeys, time.Now)
}

func open(path string, maxAge time.Duration, maxKeys int, now func() time.Time) (*Store, OpenInfo, error) {
	s := &Store{path: path, maxAge: maxAge, maxKeys: maxKeys, now: now,
		seen: map[Key]int64{}, claims: map[Key]chan struct{}{}}
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
		s.size = int64(len(magic))
	} else {
		good, recs, err := s.load(f)
		if err != nil {
			f.Close()
			return nil, info, err
		}
		if good < fi.Size() {
			info.Truncated = fi.Size() - good
			if err := f.Truncate(good); err != nil {
				f.Close()
				return nil, info, fmt.Errorf("cutting the torn tail of the delivery key log %s at byte %d: %w", path, good, err)
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return nil, info, fmt.Errorf("delivery key log %s: fsync: %w", path, err)
			}
		}
		s.size, s.recs = good, recs
	}
	if _, err := f.Seek(s.size, io.SeekStart); err != nil {
		f.Close()
		return nil, info, fmt.Errorf("delivery key log %s: %w", path, err)
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
		k, t, ok := ParseRecord(rec)
		if !ok {
			return good, recs, nil
		}
		s.add(k, t)
		good += recordLen
		recs++
	}
}

// ParseRecord decodes one log record; ok is false when its checksum does
// not match (torn or damaged) or it is not recordLen bytes.
func ParseRecord(b []byte) (k Key, unix int64, ok bool) {
	if len(b) != recordLen {
		return k, 0, false
	}
	if crc32.Checksum(b[:24], castagnoli) != binary.BigEndian.Uint32(b[24:]) {
		return k, 0, false
	}
	copy(k[:], b[:16])
	return k, int64(binary.BigEndian.Uint64(b[16:24])), true
}

func appendRecord(b []byte, k Key, unix int64) []byte {
	b = append(b, k[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(unix))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[len(b)-24:], castagnoli))
}

func (s *Store) add(k Key, t int64) {
	s.seen[k] = t
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
		if s.seen[e.k] == e.t {
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

// Claim reserves k for one delivery. seen is true when k was delivered
// already (then there is nothing to release). Otherwise the caller
// delivers, calls Record if it stored the message, and then release; a
// second Claim of k waits until then, so two attempts with one key (a
// retry racing the attempt it repeats, whose client died) never both
// store the message.
func (s *Store) Claim(k Key) (seen bool, release func()) {
	s.mu.Lock()
	for {
		if t, ok := s.seen[k]; ok && t > s.now().Unix()-int64(s.maxAge/time.Second) {
			s.mu.Unlock()
			return true, nil
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
	return false, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.claims, k)
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Record adds keys durably: when it returns nil they survive a crash of
// the process or the machine. Concurrent calls share one fdatasync (group
// commit): whoever finds no sync running syncs everything appended so
// far, the others wait for it.
func (s *Store) Record(keys []Key) error {
	if len(keys) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%w: %s", ErrClosed, s.path)
	}
	if s.broken != nil {
		return s.broken
	}
	now := s.now().Unix()
	buf := make([]byte, 0, len(keys)*recordLen)
	for _, k := range keys {
		buf = appendRecord(buf, k, now)
	}
	if n, err := s.f.Write(buf); err != nil {
		// A partial record would end the log at the next start and hide
		// every record after it: cut it off now.
		if n > 0 {
			s.f.Truncate(s.size)
			s.f.Seek(s.size, io.SeekStart)
		}
		return fmt.Errorf("appending to the delivery key log %s: %w", s.path, err)
	}
	s.size += int64(len(buf))
	s.recs += len(keys)
	for _, k := range keys {
		s.add(k, now)
	}
	s.evict(now)
	s.written++
	mine := s.written
	// Not while a sync runs: it holds the old file's descriptor.
	if s.recs >= compactMin && s.recs > 2*len(s.seen) && !s.syncing {
		if err := s.compact(); err == nil {
			s.synced = s.written
			s.cond.Broadcast()
			return nil
		}
		// Compaction failed: the log is intact, only longer; sync it.
	}
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
	var rec []byte
	n := 0
	for _, e := range s.order[s.head:] {
		if s.seen[e.k] != e.t {
			continue
		}
		rec = appendRecord(rec[:0], e.k, e.t)
		w.Write(rec)
		n++
	}
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
	size, _ := f.Seek(0, io.SeekEnd)
	old := s.f
	s.f, s.size, s.recs = f, size, n
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
