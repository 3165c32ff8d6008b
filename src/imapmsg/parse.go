package imapmsg

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
)

// Limits bound the work and memory of parsing one message. Past a limit the
// rest is opaque body, never an error: the user must still be able to fetch
// and delete the message.
type Limits struct {
	MaxParts       int // MIME parts in the whole tree (Dovecot: 10 000)
	MaxDepth       int // nesting of multipart and message/rfc822
	MaxHeaderBytes int // bytes of one header kept for parsing its fields
}

// DefaultLimits are generous for real mail (a 1 000-part message parses
// fully) and keep a hostile one to a few megabytes of memory.
var DefaultLimits = Limits{MaxParts: 5000, MaxDepth: 50, MaxHeaderBytes: 256 << 10}

// maxBoundaryLine is how much of a body line is kept to compare with
// boundaries: RFC 2046 limits a boundary to 70 characters, but the lenient
// prefix match below must see "--" + boundary + "--".
const maxBoundaryLine = 256

// pos is one offset in three measures: the file, the CRLF form, and the number
// of LFs before it (lines of text/* parts are counted as LFs, as Dovecot does).
type pos struct{ raw, crlf, lf int64 }

// node is one part of the MIME tree. Offsets only: bodies stay in the file.
type node struct {
	hdr, body, end pos

	ct       mediaType
	enc      NString // Content-Transfer-Encoding as written
	id, desc NString
	md5, loc NString
	disp     mediaType
	hasDisp  bool
	lang     []string

	children []*node // multipart
	msg      *node   // message/rfc822: the encapsulated message
	h        *header // only for messages (the root and msg parts): ENVELOPE, HEADER.FIELDS
}

func (p *node) isMultipart() bool { return p.children != nil }

// Message is one stored message.
type Message struct {
	r    io.ReaderAt
	size int64
	lim  Limits
	h    header
	body pos // start of the top-level body, from the header-only pass
	root *node
}

// Parse reads the top-level header of the size-byte message in r, enough for
// ENVELOPE and header search. The MIME tree is parsed on first need.
func Parse(r io.ReaderAt, size int64) (*Message, error) {
	return ParseLimits(r, size, DefaultLimits)
}

// ParseLimits is Parse with explicit limits.
func ParseLimits(r io.ReaderAt, size int64, lim Limits) (*Message, error) {
	if size < 0 {
		return nil, errors.New("imapmsg: negative size")
	}
	if lim.MaxParts < 1 {
		lim.MaxParts = 1
	}
	if lim.MaxDepth < 1 {
		lim.MaxDepth = 1
	}
	m := &Message{r: r, size: size, lim: lim}
	sc := newScanner(r, size)
	var raw []byte
	for {
		line, ok := sc.next(lim.MaxHeaderBytes - len(raw))
		if !ok {
			break
		}
		if isBlank(sc) {
			break
		}
		raw = append(raw, line...)
	}
	sc.release()
	if sc.err != nil {
		return nil, sc.err
	}
	m.h = parseHeader(raw)
	m.body = sc.p
	return m, nil
}

// isBlank reports whether the scanner's current line is an empty line.
func isBlank(sc *scanner) bool {
	return sc.lineLen == int64(sc.term) && sc.term > 0
}

// Size is the message's size in CRLF form (RFC822.SIZE).
func (m *Message) Size() int64 {
	return m.tree().end.crlf
}

func (m *Message) tree() *node {
	if m.root != nil {
		return m.root
	}
	p := &parser{sc: newScanner(m.r, m.size), lim: m.lim}
	root := &node{}
	p.parsePart(root, 0, false, true)
	p.sc.release()
	if p.sc.err != nil {
		// A read error midway: keep what was parsed, ending at the file's end,
		// rather than leave the session without a structure.
		root.end = pos{raw: m.size, crlf: m.size, lf: p.sc.p.lf}
	}
	m.root = root
	return root
}

// scanner reads lines from a ReaderAt with bounded memory, keeping only a
// prefix of each line and tracking the three measures of every offset.
type scanner struct {
	br      *bufio.Reader
	p       pos // start of the next line
	lp      pos // start of the current line
	lineLen int64
	term    int // 0 (last line without LF), 1 (LF), 2 (CRLF)
	prev    int // term of the line before the current one
	buf     []byte
	err     error
	eof     bool
}

// readerPool keeps the scanners' buffers: FETCH over a folder parses
// thousands of messages, and a fresh 32 KB buffer each was most of the
// garbage.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32*1024) }}

func newScanner(r io.ReaderAt, size int64) *scanner {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(io.NewSectionReader(r, 0, size))
	return &scanner{br: br}
}

// release gives the buffer back; the scanner must not be used again.
func (s *scanner) release() {
	s.br.Reset(nil)
	readerPool.Put(s.br)
	s.br = nil
}

// next reads one line and returns at most keep bytes of it (the slice is
// valid until the next call). ok is false at the end of the file.
func (s *scanner) next(keep int) ([]byte, bool) {
	if s.eof {
		return nil, false
	}
	if keep < 0 {
		keep = 0
	}
	s.prev = s.term
	s.lp = s.p
	s.buf = s.buf[:0]
	var n int64
	var last, beforeLast byte
	for {
		chunk, err := s.br.ReadSlice('\n')
		if len(chunk) > 0 {
			if room := keep - len(s.buf); room > 0 {
				if room > len(chunk) {
					room = len(chunk)
				}
				s.buf = append(s.buf, chunk[:room]...)
			}
			n += int64(len(chunk))
			if len(chunk) >= 2 {
				beforeLast = chunk[len(chunk)-2]
			} else {
				beforeLast = last
			}
			last = chunk[len(chunk)-1]
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err != io.EOF {
				s.err = err
			}
			s.eof = true
		}
		break
	}
	if n == 0 {
		return nil, false
	}
	s.lineLen = n
	s.term = 0
	crlf := n
	if last == '\n' {
		s.term = 1
		if n >= 2 && beforeLast == '\r' {
			s.term = 2
		} else {
			crlf++
		}
		s.p.lf++
	}
	// A lone LF cannot hide inside a line: lines end at LF.
	s.p.raw += n
	s.p.crlf += crlf
	return s.buf, true
}

// beforeTerm is the position just before the previous line's terminator:
// where a part ends when the current line is a boundary (RFC 2046: the line
// end before a delimiter belongs to the delimiter).
func (s *scanner) beforeTerm(floor pos) pos {
	q := s.lp
	if s.prev > 0 {
		q = pos{q.raw - int64(s.prev), q.crlf - 2, q.lf - 1}
	}
	if q.raw < floor.raw {
		return floor
	}
	return q
}

type parser struct {
	sc     *scanner
	lim    Limits
	bounds []string
	nparts int
	toEOF  bool // MaxParts reached: no more boundaries are seen
	endAt  pos  // where the part that just ended ends
}

// boundary reports whether line is a delimiter of an open multipart,
// innermost first (Dovecot's rule, so "--abcd" belongs to an inner "abcd"
// rather than an outer "abc"). Prefix matching tolerates trailing garbage.
func (p *parser) boundary(line []byte) (int, bool) {
	if p.toEOF || len(line) < 3 || line[0] != '-' || line[1] != '-' {
		return -1, false
	}
	rest := line[2:]
	for i := len(p.bounds) - 1; i >= 0; i-- {
		b := p.bounds[i]
		if len(rest) >= len(b) && string(rest[:len(b)]) == b {
			return i, bytes.HasPrefix(rest[len(b):], []byte("--"))
		}
	}
	return -1, false
}

// skipBody reads lines until a boundary of an open multipart or the end of
// the file; p.endAt is then where the content before it ends.
func (p *parser) skipBody(start pos) (int, bool) {
	keep := 0
	if len(p.bounds) > 0 && !p.toEOF {
		keep = maxBoundaryLine
	}
	for {
		line, ok := p.sc.next(keep)
		if !ok {
			p.endAt = p.sc.p
			return -1, false
		}
		if keep == 0 {
			continue
		}
		if i, cl := p.boundary(line); i >= 0 {
			p.endAt = p.sc.beforeTerm(start)
			return i, cl
		}
	}
}

// parsePart parses a header and body starting at the scanner's position and
// returns the boundary that ended it (-1 at the end of the file).
func (p *parser) parsePart(part *node, depth int, digest, isMsg bool) (int, bool) {
	p.nparts++
	part.hdr = p.sc.p
	var raw []byte
	bi, cl := -1, false
	ended := false
	for {
		line, ok := p.sc.next(max(p.lim.MaxHeaderBytes-len(raw), maxBoundaryLine))
		if !ok {
			part.body, part.end = p.sc.p, p.sc.p
			ended = true
			break
		}
		if i, c := p.boundary(line); i >= 0 {
			part.body = p.sc.beforeTerm(part.hdr)
			part.end = part.body
			bi, cl, ended = i, c, true
			break
		}
		if isBlank(p.sc) {
			part.body = p.sc.p
			break
		}
		if room := p.lim.MaxHeaderBytes - len(raw); room > 0 {
			raw = append(raw, line[:min(room, len(line))]...)
		}
	}
	h := parseHeader(raw)
	part.fill(&h, digest)
	if isMsg {
		part.h = &h
	}
	if ended {
		if part.ct.is("multipart", "") {
			part.children = []*node{}
		}
		p.endAt = part.end
		return bi, cl
	}

	bnd, _ := part.ct.param("boundary")
	switch {
	case part.ct.is("multipart", "") && bnd != "" && depth < p.lim.MaxDepth && !p.toEOF:
		part.children = []*node{}
		p.bounds = append(p.bounds, bnd)
		mine := len(p.bounds) - 1
		bi, cl = p.skipBody(part.body) // preamble
		for bi == mine && !cl {
			if p.nparts >= p.lim.MaxParts {
				p.toEOF = true
				p.bounds = p.bounds[:mine]
				bi, cl = p.skipBody(part.body)
				// The rest of the file is the last part's body, as Dovecot
				// does, so none of it becomes unreachable.
				for c := lastDescendant(part); c != nil; c = lastDescendant(c) {
					c.end = p.endAt
				}
				part.end = p.endAt
				return bi, cl
			}
			child := &node{}
			part.children = append(part.children, child)
			bi, cl = p.parsePart(child, depth+1, part.ct.is("multipart", "digest"), false)
		}
		p.bounds = p.bounds[:mine]
		if bi == mine && cl {
			// The epilogue starts after the close delimiter's line end, so a
			// delimiter right after it cannot take that line end: the part
			// keeps it, as in Dovecot.
			bi, cl = p.skipBody(p.sc.p)
		}
		part.end = p.endAt
		return bi, cl
	case part.isMessageRFC822() && depth < p.lim.MaxDepth && !p.toEOF:
		child := &node{}
		part.msg = child
		bi, cl = p.parsePart(child, depth+1, false, true)
		part.end = child.end
		return bi, cl
	default:
		if part.ct.is("multipart", "") {
			// No boundary, too deep or past MaxParts: a multipart with no
			// parts, so that BODY[1] agrees with BODYSTRUCTURE's empty part.
			part.children = []*node{}
		}
		bi, cl = p.skipBody(part.body)
		part.end = p.endAt
		return bi, cl
	}
}

func lastDescendant(p *node) *node {
	if p.msg != nil {
		return p.msg
	}
	if n := len(p.children); n > 0 {
		return p.children[n-1]
	}
	return nil
}

// isMessageRFC822 says whether the body is itself a message to parse. An
// encoded message/rfc822 (forbidden by RFC 2046, but sent) stays a leaf.
func (p *node) isMessageRFC822() bool {
	if !p.ct.is("message", "rfc822") && !p.ct.is("message", "global") {
		return false
	}
	switch strings.ToLower(p.enc.S) {
	case "", "7bit", "8bit", "binary":
		return true
	}
	return false
}

// fill takes from the header what BODYSTRUCTURE needs.
func (p *node) fill(h *header, digest bool) {
	if v, ok := h.value("Content-Type"); ok {
		if mt, ok := parseMediaType(v, true); ok {
			p.ct = mt
		}
	}
	if p.ct.is("text", "") {
		if _, ok := p.ct.param("charset"); !ok {
			// Clients pick a charset from BODYSTRUCTURE; RFC 2045's default is
			// us-ascii and Dovecot says so explicitly, after the others.
			p.ct.Params = append(p.ct.Params[:len(p.ct.Params):len(p.ct.Params)], Param{"charset", "us-ascii"})
		}
	}
	if p.ct.Type == "" {
		if digest {
			p.ct = mediaType{Type: "message", Subtype: "rfc822"}
		} else {
			p.ct = mediaType{Type: "text", Subtype: "plain", Params: []Param{{"charset", "us-ascii"}}}
		}
	}
	if v, ok := h.value("Content-Transfer-Encoding"); ok {
		l := &lexer{s: v}
		if t := l.token(); t != "" {
			p.enc = ns(t)
		}
	}
	p.id.S, p.id.Valid = h.value("Content-ID")
	p.desc.S, p.desc.Valid = h.value("Content-Description")
	p.md5.S, p.md5.Valid = h.value("Content-MD5")
	p.loc.S, p.loc.Valid = h.value("Content-Location")
	if v, ok := h.value("Content-Disposition"); ok {
		p.disp, p.hasDisp = parseMediaType(v, false)
	}
	if v, ok := h.value("Content-Language"); ok {
		for _, t := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			if len(p.lang) < 32 {
				p.lang = append(p.lang, t)
			}
		}
	}
}
