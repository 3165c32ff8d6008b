package lmtpd

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
)

// memSpool is how much of a message is buffered in memory; anything
// larger continues in an unlinked file in the spool directory. Most mail
// is far smaller, and 32 sessions at 1 MiB each is a bounded cost, while
// 32 sessions at the 50 MiB limit would not be.
const memSpool = 1 << 20

// spool receives a message completely before any mailbox is touched.
// That is what lets pdeliveryd check the size against each quota, find the
// trace header, and tell the client's errors (too large, timeout, dropped
// connection) from the disk's (full, unwritable): only a whole message
// reaches a Maildir, and a crash while receiving leaves nothing in any
// Maildir at all. The spool file is never fsynced: it is a buffer, the
// Maildir write is what must be durable, and an unlinked file vanishes
// with the process.
type spool struct {
	dir  string
	buf  *bytes.Buffer
	file *os.File
	size int64
	// Line-end conversion state: the previous chunk ended in CR.
	pendingCR bool
	scratch   []byte
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func newSpool(dir string) *spool {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	return &spool{dir: dir, buf: b}
}

// errSpool marks a failure of the spool itself (the state directory's
// disk), as opposed to one reading from the client.
type errSpool struct{ err error }

func (e *errSpool) Error() string { return "spooling the message: " + e.err.Error() }
func (e *errSpool) Unwrap() error { return e.err }

// Write appends wire data, turning CRLF line ends into LF: Maildir files
// use the Unix convention (as qmail and Dovecot write them), and the W=
// field of the file name gives POP3 the size with CRLF.
func (s *spool) Write(p []byte) (int, error) {
	s.scratch = crlfToLF(s.scratch[:0], p, &s.pendingCR)
	if err := s.put(s.scratch); err != nil {
		return 0, err
	}
	return len(p), nil
}

// finish flushes a CR held back at the very end.
func (s *spool) finish() error {
	if s.pendingCR {
		s.pendingCR = false
		return s.put([]byte{'\r'})
	}
	return nil
}

func (s *spool) put(b []byte) error {
	if s.file == nil && s.buf.Len()+len(b) > memSpool {
		f, err := os.CreateTemp(s.dir, "spool-")
		if err != nil {
			return &errSpool{err}
		}
		// Unlinked at once: nothing to clean up after a crash.
		os.Remove(f.Name())
		if _, err := f.Write(s.buf.Bytes()); err != nil {
			f.Close()
			return &errSpool{err}
		}
		s.file = f
	}
	if s.file != nil {
		if _, err := s.file.Write(b); err != nil {
			return &errSpool{err}
		}
	} else {
		s.buf.Write(b)
	}
	s.size += int64(len(b))
	return nil
}

// Size is the message's size as it will be stored.
func (s *spool) Size() int64 { return s.size }

// ReaderAt returns the stored bytes.
func (s *spool) ReaderAt() io.ReaderAt {
	if s.file != nil {
		return s.file
	}
	return bytes.NewReader(s.buf.Bytes())
}

// Reader reads the whole message from the start.
func (s *spool) Reader() io.Reader { return io.NewSectionReader(s.ReaderAt(), 0, s.size) }

// Close releases the buffer or the file.
func (s *spool) Close() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
	if s.buf != nil {
		if s.buf.Cap() <= 4*memSpool {
			bufPool.Put(s.buf)
		}
		s.buf = nil
	}
}

// crlfToLF appends src to dst with every CRLF turned into LF. A CR at the
// end of src is held back in *pendingCR until the next call shows whether
// an LF follows; a CR not followed by LF is kept.
func crlfToLF(dst, src []byte, pendingCR *bool) []byte {
	if *pendingCR {
		*pendingCR = false
		if len(src) > 0 && src[0] == '\n' {
			dst = append(dst, '\n')
			src = src[1:]
		} else {
			dst = append(dst, '\r')
		}
	}
	for len(src) > 0 {
		i := bytes.IndexByte(src, '\r')
		if i < 0 {
			return append(dst, src...)
		}
		dst = append(dst, src[:i]...)
		switch {
		case i+1 == len(src):
			*pendingCR = true
			return dst
		case src[i+1] == '\n':
			dst = append(dst, '\n')
			src = src[i+2:]
		default:
			dst = append(dst, '\r')
			src = src[i+1:]
		}
	}
	return dst
}

// maxHeaderScan bounds how much of the header section is searched for the
// trace header: smtpd puts it first, so it is always near the top.
const maxHeaderScan = 64 << 10

// TraceHeader is the header smtpd adds with the message's trace id;
// pdeliveryd reuses the id so one id follows a message from MX to mailbox.
const TraceHeader = "X-Correo-Trace"

// FolderHeader is the field smtpd writes right before its X-Correo-Trace
// to file a message in a folder. Only "Junk" is honoured (quarantine), and
// only there: a sender cannot put a field above smtpd's own lines, and one
// that forges both fields further down is not the first X-Correo-Trace.
const FolderHeader = "X-Correo-Folder"

// JunkFolder is the Maildir++ folder quarantined mail goes to.
const JunkFolder = ".Junk"

// findTrace returns the value of the first X-Correo-Trace header in the
// header section of msg (LF line ends), or "" when there is none or its
// value is not a plausible id; and whether the line before it asks for
// the Junk folder.
func findTrace(msg io.ReaderAt, size int64) (trace string, junk bool) {
	n := min(size, maxHeaderScan)
	head := make([]byte, n)
	if _, err := msg.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return "", false
	}
	return traceFromHeader(head)
}

func traceFromHeader(head []byte) (string, bool) {
	var prev []byte
	for len(head) > 0 {
		line := head
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return "", false // end of the header section
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok || !bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte(TraceHeader)) {
			prev = line
			continue
		}
		pn, pv, _ := bytes.Cut(prev, []byte{':'})
		junk := bytes.EqualFold(pn, []byte(FolderHeader)) && string(bytes.TrimSpace(pv)) == "Junk"
		// A folded value (continuation lines) is not an id smtpd writes.
		v := string(bytes.TrimSpace(value))
		if validTrace(v) {
			return v, junk
		}
		return "", junk
	}
	return "", false
}

// validTrace accepts ids that are safe in a header and a log line: 1 to 64
// characters from letters, digits, '-', '_' and '.'.
func validTrace(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
