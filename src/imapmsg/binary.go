package imapmsg

import (
	"errors"
	"io"
	"strings"
)

// ErrUnknownCTE is returned by Binary for a Content-Transfer-Encoding this
// package cannot decode; the server answers NO [UNKNOWN-CTE] (RFC 3516).
var ErrUnknownCTE = errors.New("imapmsg: unknown content-transfer-encoding")

// Binary returns BINARY[path]: the part's body with its transfer encoding
// undone, and the decoded size (BINARY.SIZE). Finding the size decodes the
// part once, so a server that needs only the size should call BinarySize.
// An empty path is the whole message, which has no encoding of its own. A
// nonexistent part is an empty string, as for BODY.
func (m *Message) Binary(path []int) (io.Reader, int64, error) {
	n, err := m.BinarySize(path)
	if err != nil {
		return nil, 0, err
	}
	r, err := m.binaryReader(path)
	if err != nil {
		return nil, 0, err
	}
	return io.LimitReader(r, n), n, nil
}

// BinarySize is BINARY.SIZE[path].
func (m *Message) BinarySize(path []int) (int64, error) {
	r, err := m.binaryReader(path)
	if err != nil {
		return 0, err
	}
	return io.Copy(io.Discard, r)
}

func (m *Message) binaryReader(path []int) (io.Reader, error) {
	if len(path) == 0 {
		r, _ := m.Section(nil, "", nil, false)
		return r, nil
	}
	p := m.resolve(path)
	if p == nil {
		r, _ := empty()
		return r, nil
	}
	r, _ := m.rangeReader(p.body, p.end)
	if p.isMultipart() || p.msg != nil {
		return r, nil
	}
	return decoder(p.enc.S, r)
}

// decoder undoes a transfer encoding over CRLF-form input.
func decoder(enc string, r io.Reader) (io.Reader, error) {
	switch strings.ToLower(enc) {
	case "", "7bit", "8bit", "binary":
		return r, nil
	case "base64":
		return &base64Reader{r: r}, nil
	case "quoted-printable":
		return &qpReader{r: r}, nil
	}
	return nil, ErrUnknownCTE
}

// base64Reader decodes leniently: characters outside the alphabet (line
// ends, spaces, garbage) are skipped, and '=' ends a group wherever it is,
// so that concatenated base64 blocks still decode. encoding/base64 fails on
// all of these, and real attachments have them.
type base64Reader struct {
	r    io.Reader
	in   [4096]byte
	quad [4]byte
	nq   int
	obuf [3 * 1024]byte // decoded bytes of one input buffer: at most 3/4 of it
	out  []byte
	err  error
}

var b64val = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(a); i++ {
		t[a[i]] = byte(i)
	}
	return
}()

func (b *base64Reader) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			b.flush()
			if len(b.out) == 0 {
				return 0, b.err
			}
			break
		}
		n, err := b.r.Read(b.in[:])
		b.err = err
		out := b.obuf[:0]
		for _, c := range b.in[:n] {
			if c == '=' {
				b.out = out
				b.flush()
				out = b.out
				continue
			}
			v := b64val[c]
			if v == 0xff {
				continue
			}
			b.quad[b.nq] = v
			b.nq++
			if b.nq == 4 {
				out = append(out, b.quad[0]<<2|b.quad[1]>>4, b.quad[1]<<4|b.quad[2]>>2, b.quad[2]<<6|b.quad[3])
				b.nq = 0
			}
		}
		b.out = out
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

// flush ends a partial group: 2 characters are 1 byte, 3 are 2.
func (b *base64Reader) flush() {
	switch b.nq {
	case 2:
		b.out = append(b.out, b.quad[0]<<2|b.quad[1]>>4)
	case 3:
		b.out = append(b.out, b.quad[0]<<2|b.quad[1]>>4, b.quad[1]<<4|b.quad[2]>>2)
	}
	b.nq = 0
}

// qpReader decodes quoted-printable leniently: an '=' not followed by two hex
// digits or a line end is kept as it is (mime/quotedprintable fails there).
type qpReader struct {
	r     io.Reader
	in    [4096]byte
	obuf  []byte // reused: decoding never grows the input but for held spaces
	out   []byte
	st    int // 0 normal, 1 after '=', 2 after '=' and a hex digit, 3 soft break (whitespace after '=')
	first byte
	ws    []byte // spaces and tabs not yet known to be inside a line
	err   error
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func (q *qpReader) Read(p []byte) (int, error) {
	for len(q.out) == 0 {
		if q.err != nil {
			switch q.st {
			case 2: // a lone '=' at the very end is a soft break: nothing

				q.out = append(q.out, '=', q.first)
			}
			q.st = 0
			if len(q.out) == 0 {
				return 0, q.err
			}
			break
		}
		n, err := q.r.Read(q.in[:])
		q.err = err
		if q.obuf == nil {
			q.obuf = make([]byte, 0, len(q.in)+1024+8)
		}
		out := q.obuf[:0]
		for _, c := range q.in[:n] {
			switch q.st {
			case 0:
				switch c {
				case ' ', '\t':
					// RFC 2045: whitespace at the end of a line was added in
					// transport and is dropped; keep it until the line goes on.
					if len(q.ws) < 1024 {
						q.ws = append(q.ws, c)
					}
					continue
				case '\r', '\n':
					q.ws = q.ws[:0]
				default:
					out = append(out, q.ws...)
					q.ws = q.ws[:0]
				}
				if c == '=' {
					q.st = 1
				} else {
					out = append(out, c)
				}
			case 1:
				switch {
				case c == '\n':
					q.st = 0
				case c == '\r' || c == ' ' || c == '\t':
					q.st = 3
				default:
					if _, ok := unhex(c); ok {
						q.first, q.st = c, 2
					} else if c == '=' {
						out = append(out, '=')
					} else {
						out = append(out, '=', c)
						q.st = 0
					}
				}
			case 2:
				hi, _ := unhex(q.first)
				if lo, ok := unhex(c); ok {
					out = append(out, hi<<4|lo)
				} else {
					out = append(out, '=', q.first, c)
				}
				q.st = 0
			case 3:
				if c == '\n' {
					q.st = 0
				} else if c != '\r' && c != ' ' && c != '\t' {
					out = append(out, c) // '=' then spaces mid-line: drop them
					q.st = 0
				}
			}
		}
		q.out = out
	}
	n := copy(p, q.out)
	q.out = q.out[n:]
	return n, nil
}
