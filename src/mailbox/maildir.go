package mailbox

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
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"correo/src/dirsync"
)

// TmpMaxAge is how old a file in tmp/ must be before CleanTmp may remove it:
// the 36 hours of the Maildir specification, long enough that no delivery
// still writing can be caught.
const TmpMaxAge = 36 * time.Hour

// Directory and file modes. A Maildir and its subdirectories belong to one
// user alone; the parent levels (j/u/a) are shared and only need traversal.
const (
	maildirMode = 0o700
	parentMode  = 0o755
	messageMode = 0o600
)

// Maildir is one mailbox on disk: Path holds tmp/, new/ and cur/. Its methods
// take no locks and are safe for any number of concurrent deliveries and
// readers, in this process or others, which is the point of Maildir.
type Maildir struct {
	Path string
}

// New returns the Maildir at path; nothing is created until the first delivery.
func New(path string) *Maildir { return &Maildir{Path: path} }

// Delivered describes a message that is safely on disk in new/.
type Delivered struct {
	Maildir  string // the Maildir's path
	Name     string // file name in new/
	Key      string // unique part, stable when the message moves to cur/
	Path     string // full path of the file in new/
	Size     int64  // bytes on disk (S=)
	WireSize int64  // bytes with every bare LF counted as CRLF (W=)
}

// testHookAfterWrite, when set, runs after the message is written and fsynced
// in tmp/ and before it is renamed into new/; an error simulates a crash at
// that point.
var testHookAfterWrite func(tmpPath string) error

// Deliver writes one message into new/. It returns nil only when the message
// is durable: written, fsynced, renamed into new/ and new/ fsynced, so the
// caller may acknowledge it. On error nothing is left in new/ and the caller
// should answer with a temporary failure.
func (m *Maildir) Deliver(r io.Reader) (Delivered, error) {
	base, tmpPath, f, err := m.createTmp()
	if err != nil {
		return Delivered{}, err
	}
	size, wire, dev, err := writeAndSync(f, r)
	if err == nil && testHookAfterWrite != nil {
		err = testHookAfterWrite(tmpPath)
	}
	if err != nil {
		os.Remove(tmpPath)
		return Delivered{}, fmt.Errorf("delivering to %s: %w", m.Path, err)
	}
	name := finalName(base, size, wire)
	p, err := m.publish(tmpPath, name, size, wire, dev, dirsync.Rename)
	if err != nil {
		os.Remove(tmpPath)
		return Delivered{}, err
	}
	return p.wait()
}

// published is a message placed in new/ whose entry is not yet known to
// be durable.
type published struct {
	d      Delivered
	change *dirsync.FSChange
}

// publish moves or links src into new/name and marks new/ for a sync;
// wait on the result before acknowledging.
func (m *Maildir) publish(src, name string, size, wire int64, dev uint64, place func(oldpath, newpath string) error) (published, error) {
	newDir := filepath.Join(m.Path, "new")
	dst := filepath.Join(newDir, name)
	err := place(src, dst)
	if errors.Is(err, fs.ErrNotExist) {
		// new/ may have been removed under us (a mailbox being moved or
		// recreated); make the skeleton again and retry once.
		if err = m.ensureDirs(); err == nil {
			err = place(src, dst)
		}
	}
	if err != nil {
		return published{}, fmt.Errorf("delivering to %s: moving the message into new/: %w", m.Path, err)
	}
	d := Delivered{Maildir: m.Path, Name: name, Key: name, Path: dst, Size: size, WireSize: wire}
	return published{d: d, change: dirsync.MarkOn(newDir, dev)}, nil
}

// wait returns once the entry in new/ is durable. The rename is only
// durable once the directory holding it is synced; without this a crash
// could lose an acknowledged message. Deliveries on one file system at
// the same moment share the sync (dirsync.FSGroup), across mailboxes.
func (p published) wait() (Delivered, error) {
	if err := p.change.Wait(); err != nil {
		os.Remove(p.d.Path) // keep the promise: nothing unacknowledged in new/
		return Delivered{}, fmt.Errorf("delivering to %s: %w", p.d.Maildir, err)
	}
	return p.d, nil
}

// createTmp opens a fresh file in tmp/, creating the Maildir on first use.
// Trying the open first and creating directories only on ENOENT costs one
// system call per delivery in the common case and needs no cached state
// that could go stale when a mailbox is moved.
func (m *Maildir) createTmp() (base, path string, f *rawFile, err error) {
	madeDirs := false
	for attempt := 0; attempt < 5; attempt++ {
		base, err = uniqueBase()
		if err != nil {
			return "", "", nil, fmt.Errorf("delivering to %s: %w", m.Path, err)
		}
		path = filepath.Join(m.Path, "tmp", base)
		f, err = createExcl(path, messageMode)
		switch {
		case err == nil:
			return base, path, f, nil
		case errors.Is(err, fs.ErrNotExist) && !madeDirs:
			madeDirs = true
			if err = m.ensureDirs(); err != nil {
				return "", "", nil, err
			}
		case errors.Is(err, fs.ErrExist):
			// Practically impossible (pid, counter, microseconds and random
			// bits all equal); the spec says to try again with a new name.
		default:
			return "", "", nil, fmt.Errorf("delivering to %s: creating a file in tmp/: %w", m.Path, err)
		}
	}
	return "", "", nil, fmt.Errorf("delivering to %s: could not create a unique file in tmp/: %w", m.Path, err)
}

// ensureDirs creates the Maildir and any missing parents, fsyncing the parent
// of every directory it had to create: a directory entry is no more durable
// than a file's, and a message acknowledged into a new/ that vanishes after a
// crash is a lost message.
func (m *Maildir) ensureDirs() error {
	if err := mkdirDurable(m.Path, maildirMode, parentMode); err != nil {
		return fmt.Errorf("creating Maildir %s: %w", m.Path, err)
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := mkdirDurable(filepath.Join(m.Path, sub), maildirMode, maildirMode); err != nil {
			return fmt.Errorf("creating Maildir %s: %w", m.Path, err)
		}
	}
	return nil
}

// mkdirDurable makes dir (mode) and its missing parents (parentMode), then
// fsyncs the parent of each. A directory that already exists is accepted,
// including one a concurrent delivery has just made; its parent is fsynced
// anyway because that other delivery may not have done so yet.
func mkdirDurable(dir string, mode, parentMode os.FileMode) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirDurable(parent, parentMode, parentMode); err != nil {
			return err
		}
	}
	err := os.Mkdir(dir, mode)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err != nil { // EEXIST: make sure it is a directory
		if fi, serr := os.Stat(dir); serr != nil || !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
	}
	return dirsync.Sync(parent)
}

// copyBufs holds writeAndSync's copy buffers: a fresh 32 KiB per
// delivery was most of pdeliveryd's garbage.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writeAndSync copies r into f, fsyncs and closes it, and returns the size on
// disk and the size with bare LFs counted as CRLF. It always closes f.
func writeAndSync(f *rawFile, r io.Reader) (size, wire int64, dev uint64, err error) {
	cw := &countingWriter{w: f}
	buf := copyBufs.Get().(*[]byte)
	err = copyFull(cw, r, *buf)
	copyBufs.Put(buf)
	if err != nil {
		f.Close()
		return 0, 0, 0, fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	// The file system, for sharing syncs with the deliveries writing
	// there at the same moment (dirsync.FSGroup).
	if dev, err = f.Dev(); err != nil {
		f.Close()
		return 0, 0, 0, err
	}
	// The file's data must be on disk before its name appears in new/,
	// or a crash could leave a readable but empty or truncated message.
	if err = dirsync.MarkFile(f.fd, dev).Wait(); err != nil {
		f.Close()
		return 0, 0, 0, fmt.Errorf("syncing %s: %w", f.Name(), err)
	}
	if err = f.Close(); err != nil {
		return 0, 0, 0, fmt.Errorf("closing %s: %w", f.Name(), err)
	}
	return cw.n, cw.n + cw.bareLF, dev, nil
}

// copyFull copies r to w in writes of a full buffer: a message arrives
// as its trace headers, then its body, and io.Copy would write each read
// as it comes, two writes where one does.
func copyFull(w io.Writer, r io.Reader, buf []byte) error {
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return nil
		default:
			return err
		}
	}
}

// countingWriter counts bytes and bare LFs while streaming, so W= costs no
// second pass over the message.
type countingWriter struct {
	w      io.Writer
	n      int64
	bareLF int64
	lastCR bool // the previous chunk ended in CR
}

func (c *countingWriter) Write(p []byte) (int, error) {
	// IndexByte jumps from LF to LF: a byte loop was 5% of pdeliveryd's
	// CPU under load.
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

var (
	// pid is read once: os.Getpid is a system call each time, and a Go
	// process never forks into a copy of itself.
	pid             = os.Getpid()
	deliveryCounter atomic.Uint64
	hostOnce        sync.Once
	hostPart        string
)

// hostName returns this host's name escaped as the Maildir spec asks: '/'
// and ':' would break the file name and the flags suffix. ',' is escaped too
// (as Dovecot does) because it separates the S= and W= fields.
func hostName() string {
	hostOnce.Do(func() {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		hostPart = escapeHost(h)
	})
	return hostPart
}

func escapeHost(h string) string {
	h = strings.ReplaceAll(h, "/", `\057`)
	h = strings.ReplaceAll(h, ":", `\072`)
	return strings.ReplaceAll(h, ",", `\054`)
}

// uniqueBase returns a new unique name per the Maildir spec's modern form:
// seconds, then microseconds, pid and a per-process counter (unique within
// this host), then random bits in case the clock steps back or a pid is
// reused, then the host.
func uniqueBase() (string, error) {
	var rb [8]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return "", fmt.Errorf("reading random bytes for a unique file name: %w", err)
	}
	now := time.Now()
	return fmt.Sprintf("%d.M%dP%dQ%dR%s.%s",
		now.Unix(), now.Nanosecond()/1000, pid, deliveryCounter.Add(1),
		hex.EncodeToString(rb[:]), hostName()), nil
}

func finalName(base string, size, wire int64) string {
	return base + ",S=" + strconv.FormatInt(size, 10) + ",W=" + strconv.FormatInt(wire, 10)
}

// ManyError reports the boxes DeliverMany could not deliver to. Errs is
// aligned with the boxes passed in: nil where delivery succeeded.
type ManyError struct {
	Errs []error
}

func (e *ManyError) Error() string {
	var parts []string
	failed := 0
	for _, err := range e.Errs {
		if err != nil {
			failed++
			if len(parts) < 5 {
				parts = append(parts, err.Error())
			}
		}
	}
	more := ""
	if failed > len(parts) {
		more = fmt.Sprintf("; and %d more", failed-len(parts))
	}
	return fmt.Sprintf("delivery failed for %d of %d mailboxes: %s%s", failed, len(e.Errs), strings.Join(parts, "; "), more)
}

// Unwrap lets errors.Is and errors.As look at every per-box error.
func (e *ManyError) Unwrap() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// BoxErrors returns one error per box from DeliverMany's error: all nil when
// err is nil, Errs when it is a *ManyError, and err itself for every box
// otherwise. It is what an LMTP server needs to answer each recipient.
func BoxErrors(err error, n int) []error {
	out := make([]error, n)
	if err == nil {
		return out
	}
	var me *ManyError
	if errors.As(err, &me) && len(me.Errs) == n {
		copy(out, me.Errs)
		return out
	}
	for i := range out {
		out[i] = err
	}
	return out
}

// DeliverMany delivers one message to several mailboxes with one write: the
// message is written and fsynced once into a tmp/ file and then hard-linked
// into every box's new/ (copied where a link is impossible: another file
// system, or links not permitted), each new/ being fsynced.
//
// Delivery is per box, not all-or-nothing: an LMTP server answers each
// recipient on its own, and refusing everyone because one mailbox is broken
// would make the sender retry recipients who already have the message. The
// result is aligned with boxes; entries for failed boxes are zero, and the
// error is then a *ManyError naming them (use BoxErrors). If the message
// cannot be read or written at all, every box fails with that error. A box
// listed twice (two addresses of one user) gets the message once and both
// entries report it.
func DeliverMany(boxes []*Maildir, r io.Reader) ([]Delivered, error) {
	out := make([]Delivered, len(boxes))
	errs := make([]error, len(boxes))
	if len(boxes) == 0 {
		return out, nil
	}
	// Spool into the first box whose tmp/ accepts a file, so one broken
	// mailbox first in the list does not fail the others.
	spool := -1
	var base, tmpPath string
	var f *rawFile
	for i, b := range boxes {
		var err error
		base, tmpPath, f, err = b.createTmp()
		if err == nil {
			spool = i
			break
		}
		errs[i] = err
	}
	if spool < 0 {
		return out, &ManyError{Errs: errs}
	}
	renamed := false
	defer func() {
		if !renamed {
			os.Remove(tmpPath)
		}
	}()
	size, wire, dev, err := writeAndSync(f, r)
	if err == nil && testHookAfterWrite != nil {
		err = testHookAfterWrite(tmpPath)
	}
	if err != nil {
		err = fmt.Errorf("delivering to %s: %w", boxes[spool].Path, err)
		for i := spool; i < len(boxes); i++ {
			errs[i] = err
		}
		return out, &ManyError{Errs: errs}
	}
	name := finalName(base, size, wire)
	seen := make(map[string]int, len(boxes))
	// Every box's new/ is marked before any is waited for, so one sync
	// covers them all.
	placed := make([]published, len(boxes))
	for i := spool; i < len(boxes); i++ {
		b := boxes[i]
		// The same mailbox twice (two addresses of one user) gets the
		// message once; linking again would fail with EEXIST.
		key := filepath.Clean(b.Path)
		if _, ok := seen[key]; ok {
			continue // answered with its first occurrence, below
		}
		seen[key] = i
		// The last box takes the spooled file itself: a rename, where a
		// link would be followed by removing the spool name.
		place := os.Link
		if i == len(boxes)-1 {
			place = func(src, dst string) error {
				err := dirsync.Rename(src, dst)
				renamed = err == nil
				return err
			}
		}
		p, err := b.publish(tmpPath, name, size, wire, dev, place)
		if err != nil && linkImpossible(err) {
			out[i], errs[i] = b.copyFrom(tmpPath)
			continue
		}
		placed[i], errs[i] = p, err
	}
	for i := spool; i < len(boxes); i++ {
		if j := seen[filepath.Clean(boxes[i].Path)]; j == i && placed[i].change != nil {
			out[i], errs[i] = placed[i].wait()
		}
	}
	for i := spool; i < len(boxes); i++ {
		if j := seen[filepath.Clean(boxes[i].Path)]; j != i {
			out[i], errs[i] = out[j], errs[j]
		}
	}
	for _, e := range errs {
		if e != nil {
			return out, &ManyError{Errs: errs}
		}
	}
	return out, nil
}

// linkImpossible tells whether a hard link failed for a reason a copy avoids.
func linkImpossible(err error) bool {
	return errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) ||
		errors.Is(err, syscall.EMLINK) || errors.Is(err, syscall.ENOTSUP)
}

func (m *Maildir) copyFrom(src string) (Delivered, error) {
	f, err := os.Open(src)
	if err != nil {
		return Delivered{}, fmt.Errorf("delivering to %s: reopening the spooled message %s: %w", m.Path, src, err)
	}
	defer f.Close()
	return m.Deliver(f)
}

// Message is one message found by List.
type Message struct {
	Dir      string // "new" or "cur"
	Name     string // file name in Dir
	Key      string // Name up to any ':', the same in new/ and cur/: a UIDL
	Size     int64  // bytes on disk, from S= (a stat only when S= is absent)
	WireSize int64  // from W=, or -1 when the name carries none
	Flags    string // the flags after ":2,"
	time     int64  // KeyTime, for ordering
}

// List returns the messages in new/ and cur/ in delivery order: by the
// seconds at the start of the name, then by name (within one second the
// order is arbitrary but stable). Sizes come from the file names, so listing
// a large mailbox costs two directory reads, not a stat per message. A
// Maildir that does not exist yet is an empty mailbox, not an error: homes
// are created on first delivery and a user may log in before any mail came.
func (m *Maildir) List() ([]Message, error) {
	var msgs []Message
	for _, dir := range []string{"new", "cur"} {
		names, err := readNames(filepath.Join(m.Path, dir))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("listing Maildir %s: %w", m.Path, err)
		}
		for _, n := range names {
			if n == "" || n[0] == '.' {
				continue
			}
			msg := parseName(dir, n)
			if msg.Size < 0 {
				fi, err := os.Lstat(filepath.Join(m.Path, dir, n))
				if err != nil {
					continue // moved or deleted by another session meanwhile
				}
				if !fi.Mode().IsRegular() {
					continue
				}
				msg.Size = fi.Size()
			}
			msgs = append(msgs, msg)
		}
	}
	sort.Slice(msgs, func(i, j int) bool {
		if msgs[i].time != msgs[j].time {
			return msgs[i].time < msgs[j].time
		}
		return msgs[i].Key < msgs[j].Key
	})
	return msgs, nil
}

func readNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// parseName splits a Maildir file name into its parts; Size is -1 when the
// name carries no S=.
// KeyTime is a Maildir key's delivery time in microseconds, from its
// "<seconds>.M<microseconds>" start (what Deliver writes; other MDAs write
// the seconds at least), so that messages list in arrival order even
// within one second: the key as a string does not sort so ("M99999" after
// "M123456"). 0 when the key has no time.
func KeyTime(key string) int64 {
	i := strings.IndexByte(key, '.')
	if i <= 0 {
		return 0
	}
	sec, err := strconv.ParseInt(key[:i], 10, 64)
	if err != nil || sec < 0 || sec > 1<<40 {
		return 0
	}
	t := sec * 1e6
	if rest, ok := strings.CutPrefix(key[i+1:], "M"); ok {
		n := 0
		for n < len(rest) && n < 6 && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if us, err := strconv.ParseInt(rest[:n], 10, 64); err == nil && n > 0 && (n == len(rest) || rest[n] < '0' || rest[n] > '9') {
			t += us
		}
	}
	return t
}

func parseName(dir, name string) Message {
	msg := Message{Dir: dir, Name: name, Key: name, Size: -1, WireSize: -1}
	if i := strings.IndexByte(name, ':'); i >= 0 {
		msg.Key = name[:i]
		if info := name[i+1:]; strings.HasPrefix(info, "2,") {
			msg.Flags = info[2:]
		}
	}
	msg.time = KeyTime(msg.Key)
	// Fields after the unique part are ",X=value"; the host part may itself
	// contain commas in theory, so take the last occurrence of each field.
	fields := strings.Split(msg.Key, ",")
	for _, fld := range fields[1:] {
		if v, ok := strings.CutPrefix(fld, "S="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				msg.Size = n
			}
		} else if v, ok := strings.CutPrefix(fld, "W="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
				msg.WireSize = n
			}
		}
	}
	return msg
}

// checkMessage refuses message names that could point outside the Maildir:
// they come from protocol state that a client can influence.
func checkMessage(msg Message) error {
	if msg.Dir != "new" && msg.Dir != "cur" {
		return fmt.Errorf("message %q: directory %q is neither new nor cur", msg.Name, msg.Dir)
	}
	if msg.Name == "" || msg.Name[0] == '.' || strings.ContainsAny(msg.Name, "/\x00") {
		return fmt.Errorf("refusing message name %q: empty, starting with '.', or containing '/' or NUL", msg.Name)
	}
	return nil
}

// MoveToCur marks a message as seen by the mail client, moving new/x to
// cur/x:2, as the spec asks. A message already in cur/ is returned as is, and
// one another session moved meanwhile is found in cur/. The rename is not
// fsynced: if a crash undoes it the message is merely back in new/.
func (m *Maildir) MoveToCur(msg Message) (Message, error) {
	if err := checkMessage(msg); err != nil {
		return Message{}, err
	}
	if msg.Dir == "cur" {
		return msg, nil
	}
	name := msg.Name
	if !strings.Contains(name, ":") {
		name += ":2,"
	}
	moved := parseName("cur", name)
	err := dirsync.Rename(filepath.Join(m.Path, "new", msg.Name), filepath.Join(m.Path, "cur", name))
	if err == nil {
		if msg.Size >= 0 {
			moved.Size = msg.Size
		}
		return moved, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		if fi, serr := os.Lstat(filepath.Join(m.Path, "cur", name)); serr == nil {
			if moved.Size < 0 {
				moved.Size = fi.Size()
			}
			return moved, nil
		}
	}
	return Message{}, fmt.Errorf("moving message %s to cur/ in %s: %w", msg.Name, m.Path, err)
}

// Open opens a message for reading, also when its file was renamed since it
// was listed (a flag set over IMAP).
func (m *Maildir) Open(msg Message) (*os.File, error) {
	if err := checkMessage(msg); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(m.Path, msg.Dir, msg.Name))
	if errors.Is(err, fs.ErrNotExist) {
		if now, ok := m.relocate(msg); ok {
			f, err = os.Open(filepath.Join(m.Path, now.Dir, now.Name))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening message in %s: %w", m.Path, err)
	}
	return f, nil
}

// relocate finds a message whose file was renamed since it was listed: an
// IMAP session that sets a flag renames cur/key:2,S to cur/key:2,RS, and a
// POP3 session that listed it before must still read and delete it. The
// key (the name up to ':') never changes, so it identifies the message.
// Only called when the listed name is gone: one directory read, on a rare
// path.
func (m *Maildir) relocate(msg Message) (Message, bool) {
	for _, dir := range []string{"cur", "new"} {
		names, err := readNames(filepath.Join(m.Path, dir))
		if err != nil {
			continue
		}
		for _, n := range names {
			if n == msg.Key || strings.HasPrefix(n, msg.Key+":") {
				return parseName(dir, n), true
			}
		}
	}
	return Message{}, false
}

// Delete removes a message, also when its file was renamed since it was
// listed (a flag set over IMAP). A message already gone is not an error: two POP3
// sessions may both delete it, and the user's wish is met either way. The
// removal is not fsynced; call Sync once after a batch if a crash must not
// bring deleted messages back.
func (m *Maildir) Delete(msg Message) error {
	if err := checkMessage(msg); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(m.Path, msg.Dir, msg.Name))
	if errors.Is(err, fs.ErrNotExist) {
		// Renamed by a flag change since it was listed, or already gone.
		if now, ok := m.relocate(msg); ok {
			err = os.Remove(filepath.Join(m.Path, now.Dir, now.Name))
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting message in %s: %w", m.Path, err)
	}
	return nil
}

// Sync fsyncs new/ and cur/, making earlier MoveToCur and Delete calls
// durable. A POP3 server calls it once at the end of its UPDATE state rather
// than once per message.
func (m *Maildir) Sync() error {
	for _, dir := range []string{"new", "cur"} {
		if err := dirsync.Sync(filepath.Join(m.Path, dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// CleanTmp removes files in tmp/ last modified more than olderThan ago: the
// leftovers of deliveries interrupted by a crash. Use TmpMaxAge. The
// modification time is used because access times are often not kept
// (noatime, relatime). A missing tmp/ means nothing to clean.
func (m *Maildir) CleanTmp(olderThan time.Duration) (removed int, err error) {
	dir := filepath.Join(m.Path, "tmp")
	names, err := readNames(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("cleaning tmp/ of %s: %w", m.Path, err)
	}
	cutoff := time.Now().Add(-olderThan)
	var errs []error
	for _, n := range names {
		p := filepath.Join(dir, n)
		fi, err := os.Lstat(p)
		if err != nil || fi.IsDir() || !fi.ModTime().Before(cutoff) {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("cleaning tmp/ of %s: %w", m.Path, errors.Join(errs...))
	}
	return removed, nil
}

// BareDeliver is the least a durable delivery can do on this disk: create
// tmp/name, write, fsync, rename into dst, fsync dst. Benchmarks measure it
// next to Deliver (and pdeliveryd, and other MDAs) as the ceiling; nothing
// delivers mail with it.
func BareDeliver(tmp, dst, name string, data []byte) error {
	f, err := os.OpenFile(filepath.Join(tmp, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, messageMode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, name), filepath.Join(dst, name)); err != nil {
		return err
	}
	return dirsync.Sync(dst)
}
