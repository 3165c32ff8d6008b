package queue

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

var randReader io.Reader = rand.Reader

// Subdirectories of a queue directory (see the package doc).
const (
	dirTmp   = "tmp"
	dirQ     = "q"
	dirCtl   = "ctl"
	dirTrash = "trash"
	lockName = "lock"
)

// store is the file side of a queue directory.
type store struct {
	dir string
}

func (s store) path(parts ...string) string {
	return filepath.Join(append([]string{s.dir}, parts...)...)
}
func (s store) msgPath(id string) string { return s.path(dirQ, id+".msg") }
func (s store) envPath(id string) string { return s.path(dirQ, id+".env") }

// prepare creates the subdirectories.
func (s store) prepare() error {
	for _, d := range []string{"", dirTmp, dirQ, dirCtl, dirTrash} {
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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

// writeEnv replaces q/ID.env atomically and durably.
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
	return syncDir(s.path(dirQ))
}

// readEnv reads and decodes q/ID.env.
func (s store) readEnv(id string) (*Envelope, error) {
	data, err := os.ReadFile(s.envPath(id))
	if err != nil {
		return nil, err
	}
	e, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.envPath(id), err)
	}
	if e.ID != id {
		return nil, fmt.Errorf("%s: holds id %s", s.envPath(id), e.ID)
	}
	return e, nil
}

// remove deletes a finished message: envelope first (the commit point),
// then the message, then makes it durable.
func (s store) remove(id string) error {
	if err := os.Remove(s.envPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(s.msgPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// Durable, so a crash after this cannot deliver the message again.
	return syncDir(s.path(dirQ))
}

// trash moves a message out of q/ for good (correoctl queue delete).
func (s store) trash(id string) error {
	if err := os.Rename(s.envPath(id), s.path(dirTrash, id+".env")); err != nil {
		return err
	}
	if err := os.Rename(s.msgPath(id), s.path(dirTrash, id+".msg")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := syncDir(s.path(dirTrash)); err != nil {
		return err
	}
	return syncDir(s.path(dirQ))
}

// ids lists the committed messages (those with an envelope), oldest first.
func (s store) ids() ([]string, error) {
	ents, err := os.ReadDir(s.path(dirQ))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".env")
		if ok && ValidID(id) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, nil
}

// recover cleans what a crash left: tmp/ files, messages never committed,
// envelopes whose message is gone (moved to trash/, reported).
func (s store) recover() (orphans, lost []string, err error) {
	tmps, err := os.ReadDir(s.path(dirTmp))
	if err != nil {
		return nil, nil, err
	}
	for _, t := range tmps {
		os.Remove(s.path(dirTmp, t.Name()))
	}
	ents, err := os.ReadDir(s.path(dirQ))
	if err != nil {
		return nil, nil, err
	}
	have := map[string]bool{}
	for _, e := range ents {
		have[e.Name()] = true
	}
	for name := range have {
		if id, ok := strings.CutSuffix(name, ".msg"); ok && !have[id+".env"] {
			orphans = append(orphans, id)
			os.Remove(s.path(dirQ, name))
		}
		if id, ok := strings.CutSuffix(name, ".env"); ok && !have[id+".msg"] {
			lost = append(lost, id)
			os.Rename(s.path(dirQ, name), s.path(dirTrash, name))
		}
	}
	sort.Strings(orphans)
	sort.Strings(lost)
	return orphans, lost, syncDir(s.path(dirQ))
}

// Writer receives one new message. Write the message (the headers smtpd
// adds first), then Commit with the envelope, or Abort.
type Writer struct {
	s    store
	id   string
	f    *os.File
	bw   *bufio.Writer // go-smtp hands DATA over in small reads
	path string
	n    int64
	err  error
	q    *Queue
}

// ID is the queue id the message will have.
func (w *Writer) ID() string { return w.id }

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.n }

func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.bw.Write(p)
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("writing queue file: %w", err)
	}
	return n, w.err
}

// Abort discards the message.
func (w *Writer) Abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.path)
		w.f = nil
	}
}

// commitFiles makes the message and its envelope durable in q/.
func (w *Writer) commitFiles(e *Envelope) error {
	if w.err == nil {
		if err := w.bw.Flush(); err != nil {
			w.err = fmt.Errorf("writing queue file: %w", err)
		}
	}
	if w.err != nil {
		w.Abort()
		return w.err
	}
	e.ID, e.Size, e.Version = w.id, w.n, envelopeVersion
	data, err := e.Encode()
	if err != nil {
		w.Abort()
		return err
	}
	if err := w.f.Sync(); err != nil {
		w.Abort()
		return fmt.Errorf("fsync queue file: %w", err)
	}
	if err := w.f.Close(); err != nil {
		w.f = nil
		os.Remove(w.path)
		return fmt.Errorf("closing queue file: %w", err)
	}
	w.f = nil
	envTmp, err := w.s.writeTemp(w.id+".env", data)
	if err != nil {
		os.Remove(w.path)
		return fmt.Errorf("writing envelope: %w", err)
	}
	if err := os.Rename(w.path, w.s.msgPath(w.id)); err != nil {
		os.Remove(w.path)
		os.Remove(envTmp)
		return err
	}
	if err := os.Rename(envTmp, w.s.envPath(w.id)); err != nil {
		os.Remove(w.s.msgPath(w.id))
		os.Remove(envTmp)
		return err
	}
	if err := syncDir(w.s.path(dirQ)); err != nil {
		// Not known to be durable: take it back so that the client's
		// retry is the only copy.
		w.s.remove(w.id)
		return fmt.Errorf("fsync queue directory: %w", err)
	}
	return nil
}

func (s store) newWriter() (*Writer, error) {
	id := NewID()
	p := s.path(dirTmp, id+".msg")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("creating queue file: %w", err)
	}
	return &Writer{s: s, id: id, f: f, bw: bufio.NewWriterSize(f, 64<<10), path: p}, nil
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
