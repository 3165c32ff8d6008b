package imapmsg

import (
	"bytes"
	"mime"
	"sort"
	"strconv"
	"strings"
)

// field is one header field as stored: Name as written (case kept), Value
// from after the colon to the end of its last continuation line, folding and
// line ends included, so HEADER.FIELDS can give back the exact bytes.
type field struct {
	Name  string
	Raw   []byte // the whole field, name to last line end
	Value []byte
}

// header is a parsed header block: the raw bytes kept (at most
// MaxHeaderBytes) and its fields in order.
type header struct {
	raw    []byte
	fields []field
}

// parseHeader splits raw into fields. Lines that are not a field (no colon, a
// name with spaces such as an mbox "From " line, a continuation with nothing
// to continue) are skipped: real mail has them and refusing the message would
// hide it from the user.
func parseHeader(raw []byte) header {
	h := header{raw: raw}
	rest := raw
	var cur *field
	curStart, curCol := 0, 0
	off := 0
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		line := rest
		if i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		lineStart := off
		off += len(line)
		if line[0] == ' ' || line[0] == '\t' {
			if cur != nil {
				cur.Raw = raw[curStart:off]
				cur.Value = raw[curStart+curCol+1 : off]
			}
			continue
		}
		cur = nil
		c := bytes.IndexByte(line, ':')
		var name []byte
		if c >= 0 {
			name = bytes.TrimRight(line[:c], " \t")
		}
		if len(name) == 0 || !validFieldName(name) {
			// Not a field, but part of the header: HEADER.FIELDS.NOT gives it
			// back (as Dovecot does), no name lookup ever finds it.
			h.fields = append(h.fields, field{Raw: line})
			cur = &h.fields[len(h.fields)-1]
			curStart, curCol = lineStart, len(line)-1
			continue
		}
		h.fields = append(h.fields, field{Name: string(name), Raw: line, Value: line[c+1:]})
		cur = &h.fields[len(h.fields)-1]
		curStart, curCol = lineStart, c
	}
	return h
}

func validFieldName(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// get returns the first field called name (case-insensitive), or nil.
func (h *header) get(name string) *field {
	for i := range h.fields {
		if h.fields[i].Name != "" && strings.EqualFold(h.fields[i].Name, name) {
			return &h.fields[i]
		}
	}
	return nil
}

// value is the first field's value in the form ENVELOPE uses: line ends
// removed (the folding whitespace stays, as Dovecot does), leading and
// trailing whitespace trimmed. ok is false when there is no such field.
func (h *header) value(name string) (string, bool) {
	f := h.get(name)
	if f == nil {
		return "", false
	}
	return unfold(f.Value), true
}

func unfold(v []byte) string {
	var b strings.Builder
	b.Grow(len(v))
	for len(v) > 0 {
		line := v
		if i := bytes.IndexByte(v, '\n'); i >= 0 {
			line, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		// Trailing whitespace of each line goes, the continuation's leading
		// whitespace stays: Dovecot's ENVELOPE strings, which clients compare.
		b.Write(bytes.TrimRight(line, " \t\r"))
	}
	return strings.Trim(b.String(), " \t")
}

// wordDecoder decodes UTF-8 and the single-byte charsets of charset.go; a
// word in any other charset is left encoded, which still lets SEARCH match
// its ASCII parts.
var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

// decode2047 decodes encoded words, word by word so that one bad word does not
// leave the whole value undecoded.
func decode2047(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	var b strings.Builder
	prevWord := false
	for i, w := range strings.Fields(s) {
		d, err := wordDecoder.Decode(w)
		isWord := err == nil
		// RFC 2047: the space between two encoded words is not text.
		if i > 0 && !(isWord && prevWord) {
			b.WriteByte(' ')
		}
		if isWord {
			b.WriteString(d)
		} else {
			b.WriteString(w)
		}
		prevWord = isWord
	}
	return b.String()
}

// Param is one Content-Type or Content-Disposition parameter as written.
type Param struct{ Name, Value string }

// mediaType is a tolerant parse of Content-Type / Content-Disposition:
// mime.ParseMediaType rejects too much real mail (duplicate parameters, stray
// semicolons, 8-bit values), and a rejected Content-Type would turn an
// attachment into text.
type mediaType struct {
	Type, Subtype string // Subtype empty for Content-Disposition
	Params        []Param
}

// is compares case-insensitively, as media types are; the written case is
// kept for BODYSTRUCTURE because Dovecot and clients echo it. An empty subtype
// matches any.
func (m *mediaType) is(typ, sub string) bool {
	return strings.EqualFold(m.Type, typ) && (sub == "" || strings.EqualFold(m.Subtype, sub))
}

func (m *mediaType) param(name string) (string, bool) {
	for _, p := range m.Params {
		if strings.EqualFold(p.Name, name) {
			return p.Value, true
		}
	}
	return "", false
}

// parseMediaType parses "type/subtype; a=b; c=\"d\"". withSubtype is false
// for Content-Disposition. ok is false when there is no usable type.
func parseMediaType(v string, withSubtype bool) (mediaType, bool) {
	var m mediaType
	s := &lexer{s: v}
	m.Type = s.token()
	if m.Type == "" {
		return m, false
	}
	if withSubtype {
		s.skipCFWS()
		if !s.eat('/') {
			return m, false
		}
		m.Subtype = s.token()
		if m.Subtype == "" {
			return m, false
		}
	}
	for len(m.Params) < 64 {
		s.skipCFWS()
		if s.done() {
			break
		}
		if !s.eat(';') {
			// Garbage between parameters: skip to the next ';'.
			if i := strings.IndexByte(s.s[s.i:], ';'); i >= 0 {
				s.i += i
				continue
			}
			break
		}
		name := s.token()
		if name == "" {
			continue
		}
		s.skipCFWS()
		if !s.eat('=') {
			continue
		}
		s.skipCFWS()
		var val string
		if s.peek() == '"' {
			val = s.quoted()
		} else {
			val = s.paramToken()
		}
		m.Params = append(m.Params, Param{name, val})
	}
	m.Params = merge2231(m.Params)
	return m, true
}

// merge2231 joins RFC 2231 continuations (name*0*=..., name*1=...) into one
// parameter, "name*" when any piece is extended and "name" otherwise, after
// the ordinary parameters, as Dovecot does; the value stays encoded, as
// everything in BODYSTRUCTURE does. Clients then see one filename, not
// pieces.
func merge2231(ps []Param) []Param {
	type piece struct {
		n   int
		ext bool
		v   string
	}
	var order []string
	groups := map[string][]piece{}
	names := map[string]string{}
	out := ps[:0:0]
	for _, p := range ps {
		i := strings.IndexByte(p.Name, '*')
		if i <= 0 {
			out = append(out, p)
			continue
		}
		base, rest := p.Name[:i], p.Name[i+1:]
		ext := strings.HasSuffix(rest, "*")
		rest = strings.TrimSuffix(rest, "*")
		n, err := strconv.Atoi(rest)
		if rest == "" || err != nil || n < 0 || n > 999 {
			out = append(out, p) // name* alone, or not a continuation
			continue
		}
		key := strings.ToLower(base)
		if _, ok := groups[key]; !ok {
			order = append(order, key)
			names[key] = base
		}
		groups[key] = append(groups[key], piece{n, ext, p.Value})
	}
	for _, key := range order {
		g := groups[key]
		sort.SliceStable(g, func(a, b int) bool { return g[a].n < g[b].n })
		var v strings.Builder
		ext := false
		for _, pc := range g {
			v.WriteString(pc.v)
			ext = ext || pc.ext
		}
		name := names[key]
		if ext {
			name += "*"
		}
		out = append(out, Param{name, v.String()})
	}
	return out
}

// lexer walks RFC 5322/2045 structured values, always making progress and
// never failing: it is used on untrusted headers.
type lexer struct {
	s string
	i int
}

func (l *lexer) done() bool { return l.i >= len(l.s) }

func (l *lexer) peek() byte {
	if l.done() {
		return 0
	}
	return l.s[l.i]
}

func (l *lexer) eat(c byte) bool {
	if l.peek() == c && !l.done() {
		l.i++
		return true
	}
	return false
}

// skipCFWS skips whitespace and comments, returning the last comment's text
// (Dovecot uses it as the display name of "user@host (Name)").
func (l *lexer) skipCFWS() string {
	var last string
	for !l.done() {
		switch c := l.s[l.i]; c {
		case ' ', '\t', '\r', '\n':
			l.i++
		case '(':
			last = l.comment()
		default:
			return last
		}
	}
	return last
}

func (l *lexer) comment() string {
	depth := 0
	var b strings.Builder
	for !l.done() {
		c := l.s[l.i]
		l.i++
		switch c {
		case '\\':
			if !l.done() {
				b.WriteByte(l.s[l.i])
				l.i++
			}
			continue
		case '(':
			depth++
			if depth == 1 {
				continue
			}
		case ')':
			depth--
			if depth == 0 {
				return b.String()
			}
		}
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// quoted reads a quoted-string, unescaping; an unterminated one runs to the
// end.
func (l *lexer) quoted() string {
	l.i++ // opening quote
	var b strings.Builder
	for !l.done() {
		c := l.s[l.i]
		l.i++
		switch c {
		case '"':
			return b.String()
		case '\\':
			if !l.done() {
				b.WriteByte(l.s[l.i])
				l.i++
			}
		case '\r', '\n':
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// token reads an RFC 2045 token after optional CFWS.
func (l *lexer) token() string {
	l.skipCFWS()
	st := l.i
	for !l.done() && !strings.ContainsRune("()<>@,;:\\\"/[]?= \t\r\n", rune(l.s[l.i])) && l.s[l.i] > ' ' {
		l.i++
	}
	return l.s[st:l.i]
}

// paramToken is a lenient parameter value: everything to ';' or whitespace,
// because unquoted values with '/' or '?' are common (name=a/b.pdf).
func (l *lexer) paramToken() string {
	st := l.i
	for !l.done() && l.s[l.i] != ';' && l.s[l.i] > ' ' {
		l.i++
	}
	return l.s[st:l.i]
}
