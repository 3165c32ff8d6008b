package imapmsg

import (
	"io"
	"strconv"
	"unicode/utf8"
)

// WriteEnvelope writes env in IMAP syntax. utf8ok says the client accepts
// UTF-8 in quoted strings (IMAP4rev2 or UTF8=ACCEPT); otherwise 8-bit
// strings go as literals, which IMAP4rev1 allows.
func WriteEnvelope(w io.Writer, env Envelope, utf8ok bool) error {
	_, err := w.Write(AppendEnvelope(nil, env, utf8ok))
	return err
}

// WriteBodyStructure writes st as BODY (extended false) or BODYSTRUCTURE.
func WriteBodyStructure(w io.Writer, st Structure, extended, utf8ok bool) error {
	_, err := w.Write(AppendBodyStructure(nil, st, extended, utf8ok))
	return err
}

// AppendEnvelope is WriteEnvelope into a buffer, for a server that builds a
// whole FETCH response before writing it.
func AppendEnvelope(b []byte, e Envelope, utf8ok bool) []byte {
	b = append(b, '(')
	b = appendNString(b, e.Date, utf8ok)
	b = append(b, ' ')
	b = appendNString(b, e.Subject, utf8ok)
	for _, l := range [][]Address{e.From, e.Sender, e.ReplyTo, e.To, e.Cc, e.Bcc} {
		b = append(b, ' ')
		b = appendAddrs(b, l, utf8ok)
	}
	b = append(b, ' ')
	b = appendNString(b, e.InReplyTo, utf8ok)
	b = append(b, ' ')
	b = appendNString(b, e.MessageID, utf8ok)
	return append(b, ')')
}

func appendAddrs(b []byte, l []Address, utf8ok bool) []byte {
	if len(l) == 0 {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	for _, a := range l {
		b = append(b, '(')
		b = appendNString(b, a.Name, utf8ok)
		b = append(b, ' ')
		b = appendNString(b, a.ADL, utf8ok)
		b = append(b, ' ')
		b = appendNString(b, a.Mailbox, utf8ok)
		b = append(b, ' ')
		b = appendNString(b, a.Host, utf8ok)
		b = append(b, ')')
	}
	return append(b, ')')
}

// AppendBodyStructure is WriteBodyStructure into a buffer.
func AppendBodyStructure(b []byte, s Structure, extended, utf8ok bool) []byte {
	b = append(b, '(')
	if s.IsMultipart() {
		for _, c := range s.Children {
			b = AppendBodyStructure(b, c, extended, utf8ok)
		}
		b = append(b, ' ')
		b = appendString(b, s.Subtype, utf8ok)
		if extended {
			b = append(b, ' ')
			b = appendParams(b, s.Params, utf8ok)
			b = appendExt(b, s, utf8ok)
		}
		return append(b, ')')
	}
	b = appendString(b, s.Type, utf8ok)
	b = append(b, ' ')
	b = appendString(b, s.Subtype, utf8ok)
	b = append(b, ' ')
	b = appendParams(b, s.Params, utf8ok)
	b = append(b, ' ')
	b = appendNString(b, s.ID, utf8ok)
	b = append(b, ' ')
	b = appendNString(b, s.Desc, utf8ok)
	b = append(b, ' ')
	b = appendString(b, s.Encoding, utf8ok)
	b = append(b, ' ')
	b = strconv.AppendInt(b, s.Size, 10)
	if s.Envelope != nil && s.Body != nil {
		b = append(b, ' ')
		b = AppendEnvelope(b, *s.Envelope, utf8ok)
		b = append(b, ' ')
		b = AppendBodyStructure(b, *s.Body, extended, utf8ok)
		b = append(b, ' ')
		b = strconv.AppendInt(b, s.Lines, 10)
	} else if asciiEqualFold(s.Type, "text") {
		b = append(b, ' ')
		b = strconv.AppendInt(b, s.Lines, 10)
	}
	if extended {
		b = append(b, ' ')
		b = appendNString(b, s.MD5, utf8ok)
		b = appendExt(b, s, utf8ok)
	}
	return append(b, ')')
}

// appendExt writes disposition, language and location, which both kinds of
// part share.
func appendExt(b []byte, s Structure, utf8ok bool) []byte {
	b = append(b, ' ')
	if s.Disposition == nil {
		b = append(b, "NIL"...)
	} else {
		b = append(b, '(')
		b = appendString(b, s.Disposition.Type, utf8ok)
		b = append(b, ' ')
		b = appendParams(b, s.Disposition.Params, utf8ok)
		b = append(b, ')')
	}
	b = append(b, ' ')
	if len(s.Language) == 0 {
		b = append(b, "NIL"...)
	} else {
		b = append(b, '(')
		for i, l := range s.Language {
			if i > 0 {
				b = append(b, ' ')
			}
			b = appendString(b, l, utf8ok)
		}
		b = append(b, ')')
	}
	b = append(b, ' ')
	return appendNString(b, s.Location, utf8ok)
}

func appendParams(b []byte, ps []Param, utf8ok bool) []byte {
	if len(ps) == 0 {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	for i, p := range ps {
		if i > 0 {
			b = append(b, ' ')
		}
		b = appendString(b, p.Name, utf8ok)
		b = append(b, ' ')
		b = appendString(b, p.Value, utf8ok)
	}
	return append(b, ')')
}

func appendNString(b []byte, s NString, utf8ok bool) []byte {
	if !s.Valid {
		return append(b, "NIL"...)
	}
	return appendString(b, s.S, utf8ok)
}

// appendString writes s quoted when IMAP allows it and as a literal
// otherwise: CR or LF (never in a quoted string), 8-bit bytes when the client
// has not accepted UTF-8 or when they are not UTF-8. NUL is dropped: no IMAP
// string but literal8 may carry it, and header text never needs it.
func appendString(b []byte, s string, utf8ok bool) []byte {
	literal := false
	hasNUL := false
	eightBit := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0:
			hasNUL = true
		case c == '\r' || c == '\n':
			literal = true
		case c >= 0x80:
			eightBit = true
		}
	}
	if hasNUL {
		s = stripNUL(s)
	}
	if eightBit && (!utf8ok || !utf8.ValidString(s)) {
		literal = true
	}
	if literal {
		b = append(b, '{')
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, "}\r\n"...)
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

func stripNUL(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != 0 {
			out = append(out, s[i])
		}
	}
	return string(out)
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}
