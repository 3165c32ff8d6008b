package imapwire

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Writer writes responses. It does not flush: the server flushes once per
// batch of pipelined commands, as pop3 does.
type Writer struct {
	w *bufio.Writer
}

// NewWriter writes responses to w.
func NewWriter(w *bufio.Writer) *Writer { return &Writer{w: w} }

// Tagged writes "tag status [code] text"; tag "*" makes it an untagged
// status response (OK, NO, BAD, BYE, PREAUTH).
func (w *Writer) Tagged(tag, status, code, text string) error {
	w.w.WriteString(tag)
	w.w.WriteByte(' ')
	w.w.WriteString(status)
	if code != "" {
		w.w.WriteString(" [")
		w.w.WriteString(clean(code))
		w.w.WriteByte(']')
	}
	if text == "" {
		// resp-text needs a text after the code (RFC 9051 allows it
		// empty, RFC 3501 does not).
		text = status
	}
	w.w.WriteByte(' ')
	w.w.WriteString(clean(text))
	_, err := w.w.WriteString("\r\n")
	return err
}

// Untagged writes "* " and data, which the caller built with Quote,
// Astring, NString and Literal; it is written as is, literals included.
func (w *Writer) Untagged(data string) error {
	w.w.WriteString("* ")
	w.w.WriteString(data)
	_, err := w.w.WriteString("\r\n")
	return err
}

// Raw writes s as it is, for a response built in pieces (a FETCH whose
// body comes from LiteralFrom); the caller ends it with "\r\n".
func (w *Writer) Raw(s string) error {
	_, err := w.w.WriteString(s)
	return err
}

// LiteralFrom writes a literal of exactly size octets read from r, so a
// message body goes from its file to the client without being held whole.
// A binary literal (~{n}, for FETCH BINARY with NUL in it) when binary.
// If r ends early the response cannot be completed: the error says so and
// the session must be closed.
func (w *Writer) LiteralFrom(size int64, r io.Reader, binary bool) error {
	if binary {
		w.w.WriteByte('~')
	}
	fmt.Fprintf(w.w, "{%d}\r\n", size)
	n, err := io.CopyN(w.w, r, size)
	if err != nil {
		return fmt.Errorf("literal of %d octets: wrote %d: %w", size, n, err)
	}
	return nil
}

// Continue writes a continuation request "+ text".
func (w *Writer) Continue(text string) error {
	if text == "" {
		text = "Ready"
	}
	w.w.WriteString("+ ")
	w.w.WriteString(clean(text))
	_, err := w.w.WriteString("\r\n")
	return err
}

// Flush sends what was written.
func (w *Writer) Flush() error { return w.w.Flush() }

// clean keeps a text on its line: CR, LF and NUL become spaces, so nothing
// a client sent and the server echoes can start a response of its own.
func clean(s string) string {
	if !strings.ContainsAny(s, "\r\n\x00") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

// quotable reports whether s can be a quoted string: no NUL, CR or LF, and
// 8-bit (valid UTF-8) only when utf8ok.
func quotable(s string, utf8ok bool) bool {
	if len(s) > 1024 {
		// Long strings go as literals: simpler for clients to read.
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 || c == '\r' || c == '\n' || c >= 0x80 && !utf8ok {
			return false
		}
	}
	return !utf8ok || utf8.ValidString(s)
}

// Quote returns s as a quoted string. It is only right when s is
// quotable; String chooses for you.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// Literal returns s as a literal "{n}\r\n" s.
func Literal(s string) string {
	return "{" + strconv.Itoa(len(s)) + "}\r\n" + s
}

// String returns s as a quoted string when it can be one, else a literal.
// utf8ok: the client has enabled IMAP4rev2 or UTF8=ACCEPT. No IMAP string
// may hold NUL: content with NUL goes as literal8 through LiteralFrom.
func String(s string, utf8ok bool) string {
	if quotable(s, utf8ok) {
		return Quote(s)
	}
	return Literal(s)
}

// NString is String, or NIL for nil.
func NString(s *string, utf8ok bool) string {
	if s == nil {
		return "NIL"
	}
	return String(*s, utf8ok)
}

// Astring returns s as an atom when it is one (and not NIL, which would
// read as absent), else as String.
func Astring(s string, utf8ok bool) string {
	if s != "" && !strings.EqualFold(s, "NIL") {
		atom := true
		for i := 0; i < len(s); i++ {
			if c := s[i]; !isAtomChar(c) && c != ']' || c == '%' || c == '*' {
				atom = false
				break
			}
		}
		if atom {
			return s
		}
	}
	return String(s, utf8ok)
}
