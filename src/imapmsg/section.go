package imapmsg

import (
	"bytes"
	"io"
	"strings"
)

// Section returns the bytes of BODY[path.spec (fields)] in CRLF form and
// their size. spec is "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT",
// "TEXT" or "MIME" (any case); not also selects HEADER.FIELDS.NOT. A part
// that does not exist, or a spec that does not apply to it (HEADER of a
// text part, MIME without a part number), gives an empty string: RFC 9051
// makes that the answer, and it must never end the session.
func (m *Message) Section(path []int, spec string, fields []string, not bool) (io.Reader, int64) {
	spec = strings.ToUpper(spec)
	if spec == "HEADER.FIELDS.NOT" {
		spec, not = "HEADER.FIELDS", true
	}
	if len(path) == 0 {
		switch spec {
		case "":
			return m.rangeReader(pos{}, m.tree().end)
		case "HEADER":
			return m.rangeReader(pos{}, m.body)
		case "TEXT":
			return m.rangeReader(m.body, m.tree().end)
		case "HEADER.FIELDS":
			return headerFields(&m.h, fields, not)
		}
		return empty()
	}
	p := m.resolve(path)
	if p == nil {
		return empty()
	}
	switch spec {
	case "":
		return m.rangeReader(p.body, p.end)
	case "MIME":
		return m.rangeReader(p.hdr, p.body)
	}
	// HEADER and TEXT after a number need a message/rfc822 part, whose
	// encapsulated message they address.
	msg := p.msg
	if msg == nil {
		return empty()
	}
	switch spec {
	case "HEADER":
		return m.rangeReader(msg.hdr, msg.body)
	case "TEXT":
		return m.rangeReader(msg.body, msg.end)
	case "HEADER.FIELDS":
		return headerFields(msg.h, fields, not)
	}
	return empty()
}

// SectionBytes is Section read into memory, for small sections and tests.
func (m *Message) SectionBytes(path []int, spec string, fields []string, not bool) []byte {
	r, n := m.Section(path, spec, fields, not)
	b := make([]byte, 0, min(n, 1<<20))
	buf := bytes.NewBuffer(b)
	io.Copy(buf, r)
	return buf.Bytes()
}

// resolve follows a numeric section path (RFC 9051 section 6.4.5). The body
// of a non-multipart message (the top level, or inside a message/rfc822) is
// its part 1, so that part is the message itself.
func (m *Message) resolve(path []int) *node {
	p := m.tree()
	inMsg := true // p is already the message whose numbers we take
	for _, n := range path {
		if n < 1 {
			return nil
		}
		if !inMsg && p.msg != nil {
			p = p.msg
		}
		switch {
		case p.isMultipart():
			if n > len(p.children) {
				return nil
			}
			p = p.children[n-1]
		case n == 1:
			// A non-multipart part has only part 1, itself: Dovecot answers
			// BODY[2.1] for a leaf 2 so, and clients that number every leaf
			// as x.1 rely on it.
		default:
			return nil
		}
		inMsg = false
	}
	return p
}

func empty() (io.Reader, int64) { return strings.NewReader(""), 0 }

func (m *Message) rangeReader(a, b pos) (io.Reader, int64) {
	if b.raw <= a.raw {
		return empty()
	}
	return NewCRLFReader(io.NewSectionReader(m.r, a.raw, b.raw-a.raw)), b.crlf - a.crlf
}

// headerFields builds HEADER.FIELDS: the matching fields as written (only
// line ends changed) and the blank line that ends a header, which RFC 9051
// says is part of the answer even when nothing matches.
func headerFields(h *header, names []string, not bool) (io.Reader, int64) {
	var out []byte
	if h != nil {
		for _, f := range h.fields {
			in := false
			for _, n := range names {
				if f.Name == "" {
					break
				}
				if strings.EqualFold(n, f.Name) {
					in = true
					break
				}
			}
			if in != not {
				out = appendCRLF(out, f.Raw)
				if len(out) > 0 && out[len(out)-1] != '\n' {
					out = append(out, '\r', '\n') // the header's last line had no end
				}
			}
		}
	}
	out = append(out, '\r', '\n')
	return bytes.NewReader(out), int64(len(out))
}

func appendCRLF(out, b []byte) []byte {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// Partial applies <offset.count> to a section of the given size; count < 0
// means to the end. An offset past the end gives an empty string, as RFC
// 9051 says.
func Partial(r io.Reader, size, offset, count int64) (io.Reader, int64) {
	if offset >= size || offset < 0 {
		return empty()
	}
	if offset > 0 {
		if s, ok := r.(io.Seeker); ok {
			s.Seek(offset, io.SeekCurrent)
		} else if _, err := io.CopyN(io.Discard, r, offset); err != nil {
			return empty()
		}
	}
	n := size - offset
	if count >= 0 && count < n {
		n = count
	}
	return io.LimitReader(r, n), n
}
