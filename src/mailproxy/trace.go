package mailproxy

import (
	"bytes"
	"io"
)

// traceHeader is the header smtpd puts on every message it accepts; its
// id then appears in the logs of the MX, of the storage host and — through
// traceScanner — of the POP proxy that hands the message to the user.
var traceHeader = []byte("\nX-Correo-Trace: ")

// maxTraceID bounds what is taken for an id: smtpd's are 16 characters.
const maxTraceID = 64

// traceScanner passes the backend's bytes to the client unchanged and
// reports each message trace id that goes by. It keeps the last bytes of
// each write so a header split across two writes is still seen.
type traceScanner struct {
	w     io.Writer
	found func(id string)
	tail  []byte
	seen  map[string]bool
}

func (t *traceScanner) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.scan(p[:n])
	return n, err
}

const scanKeep = len("\nX-Correo-Trace: ") + maxTraceID + 2

func (t *traceScanner) scan(p []byte) {
	buf := append(t.tail, p...)
	for i := 0; ; {
		j := bytes.Index(buf[i:], traceHeader)
		if j < 0 {
			break
		}
		start := i + j + len(traceHeader)
		end := start
		for end < len(buf) && end-start <= maxTraceID && isIDByte(buf[end]) {
			end++
		}
		if end == len(buf) {
			break // the id may go on in the next write: the tail keeps it
		}
		if end > start && (buf[end] == '\r' || buf[end] == '\n') {
			t.report(string(buf[start:end]))
		}
		i = end
	}
	if len(buf) > scanKeep {
		buf = buf[len(buf)-scanKeep:]
	}
	t.tail = append(t.tail[:0], buf...)
}

// report names each id once per session, however often the message is
// retrieved or the header is seen again through the kept tail.
func (t *traceScanner) report(id string) {
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	if !t.seen[id] && len(t.seen) < 10000 {
		t.seen[id] = true
		t.found(id)
	}
}

func isIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}
