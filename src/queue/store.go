package queue

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"correo/src/dirsync"
)

var randReader io.Reader = rand.Reader

// Subdirectories of a queue directory (see the package doc).
const (
	dirTmp   = "tmp"
	dirQ     = "q"
	dirSlots = "slots"
	dirFree  = "free" // recycled files of an earlier correo; emptied at start-up
	dirCtl   = "ctl"
	dirTrash = "trash"
	lockName = "lock"
)

// store is the file side of a queue directory. pool is nil outside the
// process that runs the queue (correoctl): that side only reads slots.
type store struct {
	dir  string
	pool *pool
}

func (s store) path(parts ...string) string {
	return filepath.Join(append([]string{s.dir}, parts...)...)
}
func (s store) msgPath(id string) string    { return s.path(dirQ, id+".msg") }
func (s store) envPath(id string) string    { return s.path(dirQ, id+".env") }
func (s store) slotPath(name string) string { return s.path(dirSlots, name) }
func (m *message) legacy() bool             { return m.slot == "" }
func (s store) msgFile(m *message) string {
	if m.legacy() {
		return s.msgPath(m.id)
	}
	return s.slotPath(m.slot)
}

// message is where a queued message's bytes are: a slot, or a q/ID.msg
// left by an earlier correo.
type message struct {
	id   string
	slot string   // name in slots/; "" for q/ID.msg
	f    *os.File // the slot, open while the message is new or being attempted
	env  bool     // q/ID.env may exist (an attempt recorded a state)
}

// offset is where the message bytes start in its file.
func (m *message) offset() int64 {
	if m.legacy() {
		return 0
	}
	return slotHeaderLen
}

// prepare creates the subdirectories.
func (s store) prepare() error {
	for _, d := range []string{"", dirTmp, dirQ, dirSlots, dirCtl, dirTrash} {
		if err := os.MkdirAll(s.path(d), 0o750); err != nil {
			return fmt.Errorf("queue directory: %w", err)
		}
	}
	return nil
}

// lock takes the queue's exclusive lock without waiting. ok is false
// when another process (a running smtpd) holds it.
func (s store) lock() (f *os.File, ok bool, err error) {
	f, err = os.OpenFile(s.path(lockName), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, false, fmt.Errorf("queue lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("queue lock %s: %w", s.path(lockName), err)
	}
	return f, true, nil
}

// slotFile is a free slot, kept open for the next message.
type slotFile struct {
	name string
	f    *os.File
}

// pool holds the free slots and names new ones. Creating a file means
// allocating an inode and its blocks and changing a directory, which on
// ext4 costs far more than overwriting a file that exists (measured here:
// 400-800 µs against about 10 µs on a busy disk without a journal, and a
// journal commit on one with it); a message stays queued only for the
// seconds its delivery takes, so a busy queue keeps reusing the same
// slots.
type pool struct {
	mu   sync.Mutex
	free []slotFile
	max  int
	next atomic.Uint64 // the number of the next new slot
}

func (p *pool) take() (slotFile, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		return slotFile{}, false
	}
	sf := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	return sf, true
}

// put keeps a free slot for reuse; false when the pool is full (the
// caller closes and removes it).
func (p *pool) put(sf slotFile) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) >= p.max {
		return false
	}
	p.free = append(p.free, sf)
	return true
}

// closeAll closes the free slots' files (Queue.Close).
func (p *pool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, sf := range p.free {
		sf.f.Close()
	}
	p.free = nil
}

// maxRecycledBytes bounds the slots kept for reuse: a slot keeps its
// blocks, so the next message overwrites them in place; the bound keeps
// what free slots hold on disk to freeFiles × 256 KiB at most, and most
// mail is smaller. A slot that grew past it is removed once free.
const maxRecycledBytes = 256 << 10

// release makes a slot free: its file goes back to the pool, or is
// removed when the pool is full or the file too large to keep.
func (s store) release(sf slotFile, size int64) {
	if s.pool != nil && size <= maxRecycledBytes && s.pool.put(sf) {
		return
	}
	sf.f.Close()
	os.Remove(s.slotPath(sf.name))
}

// writeTemp writes data to a new file in tmp/ and fsyncs it.
func (s store) writeTemp(name string, data []byte) (string, error) {
	p := s.path(dirTmp, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(p)
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(p)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(p)
		return "", err
	}
	return p, nil
}

// writeEnv records a new state of e in q/ID.env, atomically and durably.
func (s store) writeEnv(e *Envelope) error {
	data, err := e.Encode()
	if err != nil {
		return err
	}
	var r [4]byte
	io.ReadFull(randReader, r[:])
	tmp, err := s.writeTemp(fmt.Sprintf("%s.env.%x", e.ID, r), data)
	if err != nil {
		return fmt.Errorf("writing envelope %s: %w", e.ID, err)
	}
	if err := os.Rename(tmp, s.envPath(e.ID)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing envelope %s: %w", e.ID, err)
	}
	return dirsync.Sync(s.path(dirQ))
}

// readEnv returns a message's current envelope: q/ID.env when an attempt
// has recorded a state, else the one committed with the message, whose
// bytes are checked against their checksum when verify is set. A finished
// message gives an error satisfying errors.Is(err, os.ErrNotExist).
func (s store) readEnv(m *message, verify bool) (*Envelope, error) {
	var e *Envelope
	data, err := os.ReadFile(s.envPath(m.id))
	switch {
	case err == nil:
		if e, err = Decode(data); err != nil {
			return nil, fmt.Errorf("%s: %w", s.envPath(m.id), err)
		}
		m.env = true
	case errors.Is(err, os.ErrNotExist):
		f := m.f
		if f == nil {
			if f, err = os.Open(s.msgFile(m)); err != nil {
				return nil, err
			}
			defer f.Close()
		}
		if m.legacy() {
			e, err = readTrailer(f, verify)
		} else {
			var h slotHeader
			h, e, err = readSlot(f, verify)
			if err == nil && h.id != m.id {
				err = fmt.Errorf("%s: now holds %s: %w", f.Name(), h.id, os.ErrNotExist) // finished meanwhile
			} else if errors.Is(err, errNotInUse) {
				err = fmt.Errorf("%s: %w", f.Name(), os.ErrNotExist)
			}
		}
		if err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	if e.ID != m.id {
		return nil, fmt.Errorf("%s: holds id %s, not %s", s.envPath(m.id), e.ID, m.id)
	}
	return e, nil
}

// open returns the file holding m's bytes, opened if it is not already;
// a slot opened for the running queue or for trash is writable, since
// finishing marks it free through it.
func (s store) open(m *message, write bool) (*os.File, error) {
	if m.f != nil {
		return m.f, nil
	}
	flag := os.O_RDONLY
	if !m.legacy() && (write || s.pool != nil) {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(s.msgFile(m), flag|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	m.f = f
	return f, nil
}

// closeFile closes m's file until its next attempt (a deferred message:
// thousands of them must not hold a descriptor each).
func (m *message) closeFile() {
	if m.f != nil {
		m.f.Close()
		m.f = nil
	}
}

// finish takes a finished message out of the queue: its slot is marked
// free (the commit point: a one-byte write, made durable by the reaper's
// next sync, see Queue.reaper), then its state file goes, then the slot
// is reused. A legacy file is removed. Reusing the slot at once is safe:
// the next message's commit is itself synced and overwrites the header.
func (s store) finish(m *message) error {
	defer func() { m.f = nil }()
	if m.legacy() {
		m.closeFile()
		if err := os.Remove(s.msgPath(m.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return s.removeEnv(m)
	}
	f, err := s.open(m, true)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte{slotFree}, slotStateByte); err != nil {
		f.Close()
		return fmt.Errorf("marking slot %s free: %w", f.Name(), err)
	}
	if err := s.removeEnv(m); err != nil {
		f.Close()
		return err
	}
	size := int64(maxRecycledBytes + 1) // unknown: not kept
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	s.release(slotFile{m.slot, f}, size)
	return nil
}

func (s store) removeEnv(m *message) error {
	if !m.env {
		return nil
	}
	if err := os.Remove(s.envPath(m.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// trash moves a message out of the queue for good (correoctl queue
// delete, or a message found damaged): its bytes and envelope are copied
// to trash/ID.msg and trash/ID.env first, then it is finished.
func (s store) trash(m *message) error {
	if m.legacy() {
		m.closeFile()
		if err := os.Rename(s.msgPath(m.id), s.path(dirTrash, m.id+".msg")); err != nil {
			return err
		}
		if err := os.Rename(s.envPath(m.id), s.path(dirTrash, m.id+".env")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := dirsync.Sync(s.path(dirTrash)); err != nil {
			return err
		}
		return dirsync.Sync(s.path(dirQ))
	}
	f, err := s.open(m, true)
	if err != nil {
		return err
	}
	if err := s.copyToTrash(m, f); err != nil {
		m.closeFile()
		return err
	}
	if s.pool == nil {
		// correoctl with no smtpd running: mark it free; the next smtpd
		// reuses it.
		_, err := f.WriteAt([]byte{slotFree}, slotStateByte)
		if err == nil {
			err = f.Sync()
		}
		m.closeFile()
		if err == nil {
			err = s.removeEnv(m)
		}
		return err
	}
	return s.finish(m)
}

// copyToTrash writes what a slot holds (the message as far as its header
// says, and its current envelope when there is one) to trash/.
func (s store) copyToTrash(m *message, f *os.File) error {
	hb := make([]byte, slotHeaderLen)
	f.ReadAt(hb, 0)
	var src io.Reader
	if h, err := decodeSlotHeader(hb); err == nil && h.id == m.id {
		src = io.NewSectionReader(f, slotHeaderLen, h.msgLen+h.envLen)
	} else {
		src = io.NewSectionReader(f, 0, 1<<62) // unreadable header: keep it all
	}
	dst := s.path(dirTrash, m.id+".msg")
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("trash: %w", err)
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return fmt.Errorf("trash %s: %w", dst, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("trash %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("trash %s: %w", dst, err)
	}
	if err := os.Rename(s.envPath(m.id), s.path(dirTrash, m.id+".env")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return dirsync.Sync(s.path(dirTrash))
}

// scan lists the queued messages, oldest first: committed slots and
// legacy q/ID.msg files. With the pool (the running queue) it also puts
// every other slot into the pool, checks each message never attempted
// against its checksum (verify) and returns the torn or unreadable ones
// in bad; without, it only reads, and messages whose slot cannot be read
// are in bad. Slots are closed.
func (s store) scan(verify bool) (msgs []message, bad []badMessage, err error) {
	qents, err := os.ReadDir(s.path(dirQ))
	if err != nil {
		return nil, nil, err
	}
	haveEnv := map[string]bool{}
	for _, e := range qents {
		if id, ok := strings.CutSuffix(e.Name(), ".env"); ok && ValidID(id) {
			haveEnv[id] = true
		}
	}
	seen := map[string]bool{}
	for _, e := range qents {
		if id, ok := strings.CutSuffix(e.Name(), ".msg"); ok && ValidID(id) {
			msgs = append(msgs, message{id: id, env: haveEnv[id]})
			seen[id] = true
		}
	}
	slots, err := os.ReadDir(s.path(dirSlots))
	if err != nil {
		return nil, nil, err
	}
	var maxSlot uint64
	for _, de := range slots {
		name := de.Name()
		if !validSlotName(name) || !de.Type().IsRegular() {
			continue // not ours: left alone
		}
		if n, _ := strconv.ParseUint(name, 10, 64); n >= maxSlot {
			maxSlot = n + 1
		}
		flag := os.O_RDONLY
		if s.pool != nil {
			flag = os.O_RDWR
		}
		f, err := os.OpenFile(s.slotPath(name), flag|syscall.O_NOFOLLOW, 0)
		if err != nil {
			if s.pool != nil {
				return nil, nil, fmt.Errorf("opening slot: %w", err)
			}
			continue
		}
		h, _, err := readSlot(f, false)
		switch {
		case errors.Is(err, errNotInUse):
			if s.pool != nil {
				fi, _ := f.Stat()
				s.release(slotFile{name, f}, fi.Size())
			} else {
				f.Close()
			}
			continue
		case err == nil && seen[h.id]:
			err = fmt.Errorf("%s: queue id %s is in another file too: %w", f.Name(), h.id, errTorn)
		case err == nil && verify && !haveEnv[h.id]:
			_, _, err = readSlot(f, true)
		}
		f.Close()
		m := message{id: h.id, slot: name, env: haveEnv[h.id]}
		if err != nil {
			if m.id == "" {
				m.id = NewID()
			}
			bad = append(bad, badMessage{m, err})
			continue
		}
		seen[h.id] = true
		msgs = append(msgs, m)
	}
	if s.pool != nil {
		s.pool.next.Store(maxSlot)
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].id < msgs[j].id })
	return msgs, bad, nil
}

type badMessage struct {
	m   message
	err error
}

// find returns the queued message with this id.
func (s store) find(id string) (message, error) {
	msgs, _, err := s.scan(false)
	if err != nil {
		return message{}, err
	}
	for _, m := range msgs {
		if m.id == id {
			return m, nil
		}
	}
	return message{}, os.ErrNotExist
}

// holds reports whether m is still queued where find found it: its slot
// still names it, or its legacy file is still there. One header read, not
// a scan of the queue.
func (s store) holds(m message) bool {
	if m.legacy() {
		_, err := os.Stat(s.msgPath(m.id))
		return err == nil
	}
	f, err := os.Open(s.slotPath(m.slot))
	if err != nil {
		return false
	}
	defer f.Close()
	hb := make([]byte, slotHeaderLen)
	if _, err := f.ReadAt(hb, 0); err != nil {
		return false
	}
	h, err := decodeSlotHeader(hb)
	return err == nil && h.id == m.id
}

// recover cleans what a crash left and loads the queue: tmp/ files (never
// committed), an earlier correo's recycled files, state files whose
// message is gone (stale: a finish cut short), and fills the pool.
func (s store) recover() (msgs []message, bad []badMessage, stale []string, err error) {
	for _, d := range []string{dirTmp, dirFree} {
		ents, err := os.ReadDir(s.path(d))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil, err
		}
		for _, t := range ents {
			os.RemoveAll(s.path(d, t.Name()))
		}
	}
	msgs, bad, err = s.scan(true)
	if err != nil {
		return nil, nil, nil, err
	}
	live := map[string]bool{}
	for _, m := range msgs {
		live[m.id] = true
	}
	for _, b := range bad {
		live[b.m.id] = true // trash takes its state file along
	}
	ents, err := os.ReadDir(s.path(dirQ))
	if err != nil {
		return nil, nil, nil, err
	}
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".env"); ok && !live[id] {
			stale = append(stale, id)
			os.Remove(s.path(dirQ, e.Name()))
		}
	}
	sort.Strings(stale)
	return msgs, bad, stale, dirsync.Sync(s.path(dirQ))
}

// syncAll makes every finished slot's mark durable at once: one syncfs(2)
// of the queue's file system, instead of an fdatasync per slot.
func (s store) syncAll() error {
	d, err := os.Open(s.path(dirSlots))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs of the queue's file system: %w", err)
	}
	return nil
}

// Writer receives one new message. Write the message (the headers smtpd
// adds first), then Commit with the envelope, or Abort.
type Writer struct {
	s     store
	id    string
	sf    slotFile
	fresh bool    // the slot file was created for it: its name is not yet durable
	buf   *[]byte // header room, then bytes not yet written
	off   int64   // the file offset of (*buf)[0]
	n     int64   // message bytes written
	sum   uint32  // CRC-32C of the bytes after the header
	err   error
	q     *Queue
}

// ErrStorage is what a Writer's Write error satisfies (errors.Is) when
// the queue's disk failed (full, read-only, I/O error): the message itself
// was not at fault, and the sender should try again later.
var ErrStorage = errors.New("queue storage failed")

type storageError struct{ error }

func (storageError) Is(target error) bool { return target == ErrStorage }
func (e storageError) Unwrap() error      { return e.error }

// writeBufSize is how much of a message is gathered before it is written:
// most mail fits, and then header, message and envelope go in one write.
const writeBufSize = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, writeBufSize+slotHeaderLen); return &b }}

// ID is the queue id the message will have.
func (w *Writer) ID() string { return w.id }

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.n }

func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.put(p)
	w.n += int64(len(p))
	return len(p), w.err
}

// put adds bytes after the header, writing out the buffer when it fills.
func (w *Writer) put(p []byte) {
	w.sum = crc32.Update(w.sum, castagnoli, p)
	b := *w.buf
	for len(p) > 0 && w.err == nil {
		n := min(len(p), writeBufSize+slotHeaderLen-len(b))
		b = append(b, p[:n]...)
		p = p[n:]
		if len(b) == writeBufSize+slotHeaderLen {
			// The first write carries a zeroed header: a crash from here
			// on leaves a slot that holds nothing, not the old message.
			if _, err := w.sf.f.WriteAt(b, w.off); err != nil {
				w.err = storageError{fmt.Errorf("writing queue slot %s: %w", w.sf.f.Name(), err)}
			}
			w.off += int64(len(b))
			b = b[:0]
		}
	}
	*w.buf = b
}

func (w *Writer) dropBuf() {
	if w.buf != nil {
		*w.buf = (*w.buf)[:0]
		bufPool.Put(w.buf)
		w.buf = nil
	}
}

// Abort discards the message; its slot is free again.
func (w *Writer) Abort() {
	if w.sf.f == nil {
		return
	}
	w.dropBuf()
	if w.err != nil {
		w.s.release(w.sf, maxRecycledBytes+1) // its state is unknown: not reused
	} else {
		// Still marked free, or zeroed by the first write: reusable.
		w.s.release(w.sf, 0)
	}
	w.sf = slotFile{}
}

// commitFiles makes the message and its envelope durable in its slot:
// one write (two when the message outgrew the buffer), one fdatasync. A
// slot that exists already has its blocks, and its size changes only when
// a message is larger than any it held before, so the sync is usually a
// data write and a disk flush with no journal commit. A new slot's name
// needs an fsync of slots/ too, shared with concurrent commits.
func (w *Writer) commitFiles(e *Envelope) (message, error) {
	e.ID, e.Size, e.Version = w.id, w.n, envelopeVersion
	var data []byte
	if w.err == nil {
		data, w.err = e.Encode()
	}
	if w.err == nil {
		w.put(data)
	}
	if w.err == nil {
		h := slotHeader{state: slotCommitted, id: w.id, msgLen: w.n, envLen: int64(len(data))}
		h.sum = crc32.Update(w.sum, castagnoli, h.fields())
		hdr := h.encode()
		b := *w.buf
		if w.off == 0 {
			copy(b, hdr)
			_, w.err = w.sf.f.WriteAt(b, 0)
		} else {
			if _, w.err = w.sf.f.WriteAt(b, w.off); w.err == nil {
				_, w.err = w.sf.f.WriteAt(hdr, 0)
			}
		}
		if w.err != nil {
			w.err = fmt.Errorf("writing queue slot %s: %w", w.sf.f.Name(), w.err)
		}
	}
	var change *dirsync.Change
	if w.err == nil && w.fresh {
		change = dirsync.Mark(w.s.path(dirSlots))
	}
	// fdatasync: the bytes and the size, which is all a reader needs; the
	// file's times are not worth a journal commit.
	if w.err == nil {
		if err := syscall.Fdatasync(int(w.sf.f.Fd())); err != nil {
			w.err = fmt.Errorf("fdatasync of queue slot %s: %w", w.sf.f.Name(), err)
		}
	}
	if change != nil {
		if w.err != nil {
			change.Release()
		} else if err := change.Wait(); err != nil {
			w.err = err
		}
	}
	if w.err != nil {
		// Not known to be durable, nor known not to be: the slot is
		// dropped so that the client's retry is the only copy.
		w.sf.f.WriteAt([]byte{slotFree}, slotStateByte)
		w.Abort()
		return message{}, w.err
	}
	w.dropBuf()
	m := message{id: w.id, slot: w.sf.name, f: w.sf.f}
	w.sf = slotFile{}
	return m, nil
}

// newWriter opens a slot for a new message: a free one, else a new file.
func (s store) newWriter() (*Writer, error) {
	w := &Writer{s: s, id: NewID(), buf: bufPool.Get().(*[]byte)}
	*w.buf = append((*w.buf)[:0], make([]byte, slotHeaderLen)...)
	if sf, ok := s.pool.take(); ok {
		w.sf = sf
		return w, nil
	}
	for range 100 {
		name := fmt.Sprintf("%0*d", slotNameDigits, s.pool.next.Add(1)-1)
		f, err := os.OpenFile(s.slotPath(name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
		if errors.Is(err, os.ErrExist) {
			continue // someone's stray file: take the next number
		}
		if err != nil {
			w.dropBuf()
			return nil, fmt.Errorf("creating queue slot: %w", err)
		}
		w.sf, w.fresh = slotFile{name, f}, true
		return w, nil
	}
	w.dropBuf()
	return nil, fmt.Errorf("creating queue slot: 100 names taken in %s", s.path(dirSlots))
}

// ctl requests (correoctl → running queue).
const (
	ctlFlush  = "flush"
	ctlDelete = "delete."
)

// request drops a control file and waits until the running queue has
// removed it (done) or timeout passes.
func (s store) request(name string, timeout time.Duration) error {
	p := s.path(dirCtl, name)
	if err := os.WriteFile(p, nil, 0o640); err != nil {
		return fmt.Errorf("queue control request: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the running smtpd did not take the request %s within %v; it stays in %s and is done when smtpd next looks", name, timeout, p)
}
