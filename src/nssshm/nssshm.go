// Package nssshm publishes nssd's cached passwd answers in a file that
// every process maps read-only, so that libnss_correo answers a cached
// getpwnam or getpwuid by reading memory instead of asking nssd over its
// socket: the round trip (two wake-ups of sleeping threads) was most of
// the 53 µs a cached lookup cost. It is nscd's shared database, for
// correo: nssd stays the only writer and the one authority; the file
// holds only what nssd's cache holds, with the same expiry.
//
// # The file
//
// Beside nssd's socket, named nssd.shm (FileName); native byte order (the
// writer and readers are one machine):
//
//	header  64 bytes   magic "correo-nss-shm1\0" (16), buckets (u32, a
//	                   power of two), ways (u32, 4), slot size (u32, 256),
//	                   header size (u32, 64), zeros
//	names   buckets × ways slots, by FNV-1a of the user name
//	uids    buckets × ways slots, by FNV-1a of the uid's 4 bytes, big endian
//
// A slot is a seqlock, the record's length, when it expires
// (CLOCK_MONOTONIC, nanoseconds) and the record as nssproto encodes a
// passwd entry (AppendPasswd):
//
//	seq u32 | len u32 | expires u64 | record (up to 240 bytes)
//
// The writer makes seq odd, writes, makes it even. A reader copies the
// slot between two reads of seq and trusts the copy only when both are the
// same even number, the entry has not expired, and the record parses and
// names what was asked. Anything else, and a record too long for a slot,
// is asked of nssd as before: the file is a shortcut, never the only way.
// Negative answers are never published.
package nssshm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"correo/src/nssproto"
)

// Layout constants, shared with src/nss/nss_correo.c.
const (
	FileName   = "nssd.shm"
	Magic      = "correo-nss-shm1\x00"
	HeaderSize = 64
	Ways       = 4
	SlotSize   = 256
	slotHead   = 16
	// MaxRecord is the longest record a slot holds; longer users are
	// answered over the socket only.
	MaxRecord = SlotSize - slotHead
	// MaxBuckets bounds the file at 16 MiB (two tables of 8 MiB): a
	// cache's hot set, in memory the kernel gives only to slots written.
	MaxBuckets = 8192
)

// Path is the file for the nssd socket at socket.
func Path(socket string) string { return filepath.Join(filepath.Dir(socket), FileName) }

// Size is the file's length for buckets.
func Size(buckets int) int { return HeaderSize + 2*buckets*Ways*SlotSize }

// BucketsFor is the table size for a cache of entries answers (a user
// takes two: by name and by uid).
func BucketsFor(entries int) int {
	b := 1
	for b*Ways < entries/2 && b < MaxBuckets {
		b *= 2
	}
	return b
}

// Table is the writer's side. Its methods are safe for concurrent use.
type Table struct {
	path    string
	buckets int
	mem     []byte

	mu     sync.Mutex
	names  []string // key of each name slot ("" when empty)
	uids   []uint32 // key of each uid slot
	used   []bool   // uid slot holds an entry
	expiry [2][]int64
	closed bool
}

// Monotonic is CLOCK_MONOTONIC in nanoseconds: the clock of the expiry
// field, the same in every process of the machine and never stepped.
func Monotonic() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("clock_gettime(CLOCK_MONOTONIC): " + err.Error())
	}
	return ts.Nano()
}

// Open maps the file at path for writing, creating it (mode 0644: passwd
// entries are public, as getpwnam makes them) with buckets buckets. A file
// nssd made before (same layout, a regular file of this user, not
// writable by others) is reused and emptied: processes that mapped it keep
// a live mapping across nssd restarts. Anything else there is replaced.
func Open(path string, buckets int) (*Table, error) {
	if buckets < 1 || buckets > MaxBuckets || buckets&(buckets-1) != 0 {
		return nil, fmt.Errorf("nss shared cache %s: %d buckets: want a power of two up to %d", path, buckets, MaxBuckets)
	}
	size := Size(buckets)
	f, err := reuse(path, size)
	if err != nil {
		return nil, err
	}
	if f == nil {
		if f, err = create(path, buckets); err != nil {
			return nil, err
		}
	}
	defer f.Close() // the mapping outlives the descriptor
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("nss shared cache %s: mmap: %w", path, err)
	}
	n := buckets * Ways
	t := &Table{path: path, buckets: buckets, mem: mem, names: make([]string, n), uids: make([]uint32, n), used: make([]bool, n)}
	t.expiry[0], t.expiry[1] = make([]int64, n), make([]int64, n)
	t.clearAll()
	return t, nil
}

// reuse opens an existing file of the right layout, or returns nil.
func reuse(path string, size int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
			return nil, nil
		}
		return nil, nil // unreadable: replace it
	}
	var st unix.Stat_t
	head := make([]byte, HeaderSize)
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() ||
		st.Mode&0o022 != 0 || st.Size != int64(size) {
		f.Close()
		return nil, nil
	}
	if _, err := f.ReadAt(head, 0); err != nil || string(head[:16]) != Magic {
		f.Close()
		return nil, nil
	}
	return f, nil
}

// create writes a new, empty file beside path and renames it into place.
func create(path string, buckets int) (*os.File, error) {
	tmp := path + ".new"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("nss shared cache %s: %w", tmp, err)
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("nss shared cache %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil { // whatever the umask
		return fail(err)
	}
	// Sparse: a slot's page is only allocated once written.
	if err := f.Truncate(int64(Size(buckets))); err != nil {
		return fail(err)
	}
	head := make([]byte, HeaderSize)
	copy(head, Magic)
	binary.NativeEndian.PutUint32(head[16:], uint32(buckets))
	binary.NativeEndian.PutUint32(head[20:], Ways)
	binary.NativeEndian.PutUint32(head[24:], SlotSize)
	binary.NativeEndian.PutUint32(head[28:], HeaderSize)
	if _, err := f.WriteAt(head, 0); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return f, nil
}

// Path is the file's path.
func (t *Table) Path() string { return t.path }

func hashName(name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return h.Sum32()
}

func hashUID(uid uint32) uint32 {
	h := fnv.New32a()
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uid)
	h.Write(b[:])
	return h.Sum32()
}

// slotOff is the byte offset of slot i of table tab (0 names, 1 uids).
func (t *Table) slotOff(tab, i int) int {
	return HeaderSize + (tab*t.buckets*Ways+i)*SlotSize
}

func (t *Table) seq(off int) *uint32 { return (*uint32)(unsafe.Pointer(&t.mem[off])) }

// write fills slot i of tab under its seqlock; rec nil empties it.
func (t *Table) write(tab, i int, rec []byte, expires int64) {
	off := t.slotOff(tab, i)
	seq := t.seq(off)
	atomic.AddUint32(seq, 1) // odd: readers discard what they copy
	binary.NativeEndian.PutUint32(t.mem[off+4:], uint32(len(rec)))
	binary.NativeEndian.PutUint64(t.mem[off+8:], uint64(expires))
	copy(t.mem[off+slotHead:off+SlotSize], rec)
	atomic.AddUint32(seq, 1) // even again: the copy between is whole
	t.expiry[tab][i] = expires
}

// clearAll empties every slot that holds anything. Slots never written
// are only read, which keeps a sparse file sparse.
func (t *Table) clearAll() {
	for tab := 0; tab < 2; tab++ {
		for i := 0; i < t.buckets*Ways; i++ {
			off := t.slotOff(tab, i)
			if atomic.LoadUint32(t.seq(off)) != 0 || binary.NativeEndian.Uint32(t.mem[off+4:]) != 0 {
				t.write(tab, i, nil, 0)
			}
		}
	}
	clear(t.names)
	clear(t.used)
}

// pick chooses the slot of bucket b for a key: the one holding it, else
// an empty or expired one, else the one expiring first.
func (t *Table) pick(tab int, b uint32, holds func(i int) bool, now int64) int {
	first := int(b) * Ways
	best := first
	for i := first; i < first+Ways; i++ {
		if holds(i) {
			return i
		}
	}
	for i := first; i < first+Ways; i++ {
		if t.expiry[tab][i] <= now {
			return i
		}
		if t.expiry[tab][i] < t.expiry[tab][best] {
			best = i
		}
	}
	return best
}

// Publish makes pw readable by the module until ttl from now, by name
// and by uid. A user whose record is longer than a slot is not published
// (and any older entry for it is removed).
func (t *Table) Publish(pw nssproto.Passwd, ttl time.Duration) {
	rec, err := nssproto.AppendPasswd(nil, &pw)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if err != nil || len(rec) > MaxRecord || ttl <= 0 {
		t.removeLocked(pw.Name, pw.UID, true)
		return
	}
	now := Monotonic()
	exp := now + int64(ttl)
	mask := uint32(t.buckets - 1)
	i := t.pick(0, hashName(pw.Name)&mask, func(i int) bool { return t.names[i] == pw.Name }, now)
	t.write(0, i, rec, exp)
	t.names[i] = pw.Name
	j := t.pick(1, hashUID(pw.UID)&mask, func(j int) bool { return t.used[j] && t.uids[j] == pw.UID }, now)
	t.write(1, j, rec, exp)
	t.uids[j], t.used[j] = pw.UID, true
}

// RemoveName withdraws the entry for name (nssd learnt the user is gone).
func (t *Table) RemoveName(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.removeLocked(name, 0, false)
	}
}

// RemoveUID withdraws the entry for uid.
func (t *Table) RemoveUID(uid uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	first := int(hashUID(uid)&uint32(t.buckets-1)) * Ways
	for j := first; j < first+Ways; j++ {
		if t.used[j] && t.uids[j] == uid {
			t.write(1, j, nil, 0)
			t.used[j] = false
		}
	}
}

func (t *Table) removeLocked(name string, uid uint32, byUID bool) {
	mask := uint32(t.buckets - 1)
	first := int(hashName(name)&mask) * Ways
	for i := first; i < first+Ways; i++ {
		if t.names[i] == name {
			t.write(0, i, nil, 0)
			t.names[i] = ""
		}
	}
	if byUID {
		first = int(hashUID(uid)&mask) * Ways
		for j := first; j < first+Ways; j++ {
			if t.used[j] && t.uids[j] == uid {
				t.write(1, j, nil, 0)
				t.used[j] = false
			}
		}
	}
}

// Close empties the table and unmaps it: a stopped nssd answers nothing,
// from the socket or from the file. The file stays, for the next nssd to
// reuse.
func (t *Table) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.clearAll()
	t.closed = true
	return unix.Munmap(t.mem)
}

// Lookup reads the entry for name, or for uid when name is empty, as the
// module does (seqlock, expiry, record check). For tests and for tools
// that want to see what the module sees.
func Lookup(mem []byte, name string, uid uint32) (nssproto.Passwd, bool) {
	if len(mem) < HeaderSize || string(mem[:16]) != Magic {
		return nssproto.Passwd{}, false
	}
	buckets := int(binary.NativeEndian.Uint32(mem[16:]))
	if buckets < 1 || buckets > MaxBuckets || buckets&(buckets-1) != 0 || len(mem) < Size(buckets) ||
		binary.NativeEndian.Uint32(mem[20:]) != Ways || binary.NativeEndian.Uint32(mem[24:]) != SlotSize {
		return nssproto.Passwd{}, false
	}
	tab, h := 0, hashName(name)
	if name == "" {
		tab, h = 1, hashUID(uid)
	}
	now := Monotonic()
	first := int(h&uint32(buckets-1)) * Ways
	var buf [SlotSize]byte
	for i := first; i < first+Ways; i++ {
		off := HeaderSize + (tab*buckets*Ways+i)*SlotSize
		seq := (*uint32)(unsafe.Pointer(&mem[off]))
		s1 := atomic.LoadUint32(seq)
		if s1&1 != 0 {
			continue
		}
		copy(buf[:], mem[off:off+SlotSize])
		if atomic.LoadUint32(seq) != s1 {
			continue
		}
		n := int(binary.NativeEndian.Uint32(buf[4:]))
		exp := int64(binary.NativeEndian.Uint64(buf[8:]))
		if n == 0 || n > MaxRecord || exp <= now {
			continue
		}
		pw, err := nssproto.DecodePasswd(buf[slotHead : slotHead+n])
		if err != nil || (name != "" && pw.Name != name) || (name == "" && pw.UID != uid) {
			continue
		}
		return pw, true
	}
	return nssproto.Passwd{}, false
}

// Mem is the table's mapping, for Lookup in tests.
func (t *Table) Mem() []byte { return t.mem }
