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
	budget := int64(MaxSearchBytes)
	if withHeaders && headerContains(&m.h, n) {
		return true
	}
	return m.partContains(m.tree(), n, withHeaders, &budget)
}

func headerContains(h *header, needle string) bool {
	for _, f := range h.fields {
		if strings.Contains(strings.ToLower(f.Name+": "+decode2047(unfold(f.Value))), needle) {
			return true
		}
	}
	return false
}

func (m *Message) partContains(p *Part, needle string, withHeaders bool, budget *int64) bool {
	if *budget <= 0 {
		return false
	}
	switch {
	case p.isMultipart():
		for _, c := range p.children {
			if m.partContains(c, needle, withHeaders, budget) {
				return true
			}
		}
		return false
	case p.msg != nil:
		if withHeaders && headerContains(p.msg.h, needle) {
			return true
		}
		return m.partContains(p.msg, needle, withHeaders, budget)
	case !p.ct.is("text", ""):
		return false
	}
	r, _ := m.rangeReader(p.body, p.end)
	d, err := decoder(p.enc.S, r)
	if err != nil {
		d = r // unknown encoding: search the bytes as they are
	}
	cs, _ := p.ct.param("charset")
	latin1 := strings.EqualFold(cs, "iso-8859-1") || strings.EqualFold(cs, "windows-1252") || strings.EqualFold(cs, "latin1")
	return streamContains(d, needle, latin1, budget)
}

// streamContains searches r chunk by chunk, keeping the last len(needle)
// bytes of each chunk so a match across chunks is found.
func streamContains(r io.Reader, needle string, latin1 bool, budget *int64) bool {
	nb := []byte(needle)
	buf := make([]byte, 32*1024)
	var carry []byte
	for *budget > 0 {
		n, err := r.Read(buf[:min(int64(len(buf)), *budget)])
		*budget -= int64(n)
		if n > 0 {
			chunk := buf[:n]
			if latin1 {
				chunk = latin1ToUTF8(chunk)
			}
			text := bytes.ToLower(append(carry, chunk...))
			if bytes.Contains(text, nb) {
				return true
			}
			keep := len(nb) + utf8.UTFMax
			if keep > len(text) {
				keep = len(text)
			}
			carry = append(carry[:0], text[len(text)-keep:]...)
		}
		if err != nil {
			return false
		}
	}
	return false
}

func latin1ToUTF8(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/8)
	for _, c := range b {
		if c < 0x80 {
			out = append(out, c)
		} else {
			out = utf8.AppendRune(out, rune(c))
		}
	}
	return out
}
