package imapmsg

import (
	"io"
	"sync"
)

// crlfBufs pools the reader's buffers, given back at the end of the stream:
// a FETCH of BODY[] for every message of a folder would otherwise allocate
// 24 KB per message.
var crlfBufs = sync.Pool{New: func() any { return new(crlfBuf) }}

type crlfBuf struct {
	in  [8 * 1024]byte
	out [16 * 1024]byte
}

// CRLFSize is the size of b once every lone LF becomes CRLF. prevCR says
// whether the byte before b was a CR, so a CRLF split across two calls is not
// counted twice.
func CRLFSize(b []byte, prevCR bool) int64 {
	n := int64(len(b))
	for i, c := range b {
		if c == '\n' {
			if i == 0 && !prevCR || i > 0 && b[i-1] != '\r' {
				n++
			}
		}
	}
	return n
}

// CRLFReader converts a lone LF to CRLF while reading; CRLF and lone CR pass
// unchanged. It keeps two small buffers of its own, so reading a large body
// costs no more memory than a small one.
type CRLFReader struct {
	r      io.Reader
	bufs   *crlfBuf
	in     []byte
	out    []byte // converted bytes
	off    int    // next byte of out to return
	prevCR bool
	err    error
}

// NewCRLFReader returns a reader giving r's bytes in CRLF form.
func NewCRLFReader(r io.Reader) *CRLFReader {
	return &CRLFReader{r: r}
}

func (c *CRLFReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for c.off == len(c.out) {
		if c.err != nil {
			if c.bufs != nil {
				crlfBufs.Put(c.bufs)
				c.bufs, c.in, c.out, c.off = nil, nil, nil, 0
			}
			return 0, c.err
		}
		if c.in == nil {
			c.bufs = crlfBufs.Get().(*crlfBuf)
			c.in, c.out = c.bufs.in[:], c.bufs.out[:0]
		}
		n, err := c.r.Read(c.in)
		c.err = err
		c.out = c.convert(c.in[:n], c.out[:0])
		c.off = 0
	}
	n := copy(p, c.out[c.off:])
	c.off += n
	return n, nil
}

func (c *CRLFReader) convert(src, out []byte) []byte {
	if len(src) == 0 {
		return out
	}
	start := 0
	for i, b := range src {
		if b == '\n' && !(i == 0 && c.prevCR || i > 0 && src[i-1] == '\r') {
			out = append(out, src[start:i]...)
			out = append(out, '\r')
			start = i
		}
	}
	out = append(out, src[start:]...)
	c.prevCR = src[len(src)-1] == '\r'
	return out
}
