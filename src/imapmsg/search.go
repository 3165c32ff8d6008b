package imapmsg

import (
	"bytes"
	"io"
	"strings"
	"unicode/utf8"
)

// MaxSearchBytes bounds the decoded text one Contains call reads, so a
// SEARCH BODY over a folder of huge attachments-as-text cannot run away.
const MaxSearchBytes = 16 << 20

// Contains reports whether needle occurs, case-insensitively, in the
// message's decoded text: the text/* parts (transfer encoding undone,
// ISO-8859-1 and US-ASCII turned into UTF-8), plus, when withHeaders (SEARCH
// TEXT rather than BODY), the decoded header fields of the message and of
// any encapsulated message. Other parts (images, archives) are not text and
// are skipped.
func (m *Message) Contains(needle string, withHeaders bool) bool {
	n := strings.ToLower(needle)
	if n == "" {
		return true
	}
	if withHeaders && headerContains(&m.h, n) {
		return true
	}
	s := &searcher{needle: []byte(n), budget: MaxSearchBytes, withHeaders: withHeaders}
	return m.partContains(m.tree(), s)
}

func headerContains(h *header, needle string) bool {
	for _, f := range h.fields {
		if strings.Contains(strings.ToLower(f.Name+": "+decode2047(unfold(f.Value))), needle) {
			return true
		}
	}
	return false
}

// searcher is one Contains call: its buffer serves every part, so a message
// of thousands of tiny parts costs one buffer, not thousands.
type searcher struct {
	needle      []byte
	budget      int64
	withHeaders bool
	buf         []byte
	carry       []byte
}

func (m *Message) partContains(p *node, s *searcher) bool {
	if s.budget <= 0 {
		return false
	}
	switch {
	case p.isMultipart():
		for _, c := range p.children {
			if m.partContains(c, s) {
				return true
			}
		}
		return false
	case p.msg != nil:
		if s.withHeaders && headerContains(p.msg.h, string(s.needle)) {
			return true
		}
		return m.partContains(p.msg, s)
	case !p.ct.is("text", ""):
		return false
	}
	r, _ := m.rangeReader(p.body, p.end)
	d, err := decoder(p.enc.S, r)
	if err != nil {
		d = r // unknown encoding: search the bytes as they are
	}
	cs, _ := p.ct.param("charset")
	var conv func(byte) rune
	if !strings.EqualFold(cs, "us-ascii") {
		conv = singleByte(cs) // nil for UTF-8 and for what is not known
	}
	return s.stream(d, conv)
}

// stream searches r chunk by chunk, keeping the last len(needle) bytes of
// each chunk so a match across chunks is found.
func (s *searcher) stream(r io.Reader, conv func(byte) rune) bool {
	if s.buf == nil {
		s.buf = make([]byte, 32*1024)
	}
	s.carry = s.carry[:0]
	for s.budget > 0 {
		n, err := r.Read(s.buf[:min(int64(len(s.buf)), s.budget)])
		s.budget -= int64(n)
		if n > 0 {
			chunk := s.buf[:n]
			if conv != nil {
				chunk = toUTF8(chunk, conv)
			}
			text := bytes.ToLower(append(s.carry, chunk...))
			if bytes.Contains(text, s.needle) {
				return true
			}
			keep := min(len(s.needle)+utf8.UTFMax, len(text))
			s.carry = append(s.carry[:0], text[len(text)-keep:]...)
		}
		if err != nil {
			return false
		}
	}
	return false
}
