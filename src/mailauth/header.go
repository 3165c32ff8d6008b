package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/mail"
	"strings"
)

// ErrHeaderTooLarge is ReadHeader's error for a header block longer than
// its limit.
var ErrHeaderTooLarge = errors.New("mailauth: message header block too large")

// ReadHeader reads a message's header block from br: every field, and the
// empty line that ends the block if there is one (a message without a
// body may end without it). It reads at most max bytes (0: no limit) and
// returns ErrHeaderTooLarge past that, having consumed them. What follows
// in br is the body.
func ReadHeader(br *bufio.Reader, max int) ([]byte, error) {
	var hdr []byte
	partial := false // the last read stopped inside a long line
	for {
		line, err := br.ReadSlice('\n')
		if max > 0 && len(hdr)+len(line) > max {
			return nil, ErrHeaderTooLarge
		}
		hdr = append(hdr, line...)
		switch {
		case err == bufio.ErrBufferFull:
			partial = true
			continue
		case err == io.EOF:
			return hdr, nil
		case err != nil:
			return nil, err
		}
		if !partial && (len(line) == 1 || len(line) == 2 && line[0] == '\r') {
			return hdr, nil
		}
		partial = false
	}
}

// field is one header field as it stands in the message: raw is every
// byte of it, continuation lines and line ends included.
type field struct {
	name string // trimmed; "" for a line with no colon
	raw  []byte
}

// value is the field's body unfolded: line ends removed, the leading and
// trailing white space trimmed.
func (f field) value() string {
	_, v, _ := bytes.Cut(f.raw, []byte(":"))
	v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
	v = bytes.ReplaceAll(v, []byte("\n"), nil)
	return strings.TrimSpace(string(v))
}

// splitFields cuts a header block into fields the way go-msgauth's dkim
// package does (a line starting with a space or a tab continues the field
// before it), so the n-th DKIM-Signature here is its n-th too. The empty
// line ending the block is not a field.
func splitFields(hdr []byte) []field {
	var fs []field
	for len(hdr) > 0 {
		n := bytes.IndexByte(hdr, '\n') + 1
		if n == 0 {
			n = len(hdr)
		}
		line := hdr[:n]
		hdr = hdr[n:]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // the end of the block
		}
		if len(fs) > 0 && (line[0] == ' ' || line[0] == '\t') {
			f := &fs[len(fs)-1]
			f.raw = f.raw[:len(f.raw):len(f.raw)]
			f.raw = append(f.raw, line...)
			continue
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		f := field{raw: line}
		if ok {
			f.name = strings.TrimSpace(string(name))
		}
		fs = append(fs, f)
	}
	return fs
}

// StripForged returns the header block without the Authentication-Results
// fields that claim authServID as theirs (compared without regard to case,
// RFC 8601 section 5): only this cluster writes those, so one that arrives
// from outside is forged. Fields with another authserv-id, and everything
// else, are kept byte for byte and in order. An empty authServID strips
// nothing.
func StripForged(header []byte, authServID string) []byte {
	if authServID == "" {
		return header
	}
	out := make([]byte, 0, len(header))
	rest := header
	for _, f := range splitFields(header) {
		rest = rest[len(f.raw):]
		if strings.EqualFold(f.name, "Authentication-Results") && strings.EqualFold(authServIDOf(f.value()), authServID) {
			continue
		}
		out = append(out, f.raw...)
	}
	return append(out, rest...) // the empty line, and anything after it
}

// authServIDOf reads the authserv-id at the start of an
// Authentication-Results value: a token or a quoted-string after optional
// comments and white space (RFC 8601 section 2.2). "" if there is none.
func authServIDOf(v string) string {
	v = skipCFWS(v)
	if strings.HasPrefix(v, `"`) {
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			switch v[i] {
			case '\\':
				if i+1 < len(v) {
					i++
					b.WriteByte(v[i])
				}
			case '"':
				return b.String()
			default:
				b.WriteByte(v[i])
			}
		}
		return "" // unterminated
	}
	end := strings.IndexAny(v, " \t;(\r\n")
	if end < 0 {
		end = len(v)
	}
	return v[:end]
}

// skipCFWS drops leading white space and comments (nested, with quoted
// pairs).
func skipCFWS(v string) string {
	for {
		v = strings.TrimLeft(v, " \t\r\n")
		if !strings.HasPrefix(v, "(") {
			return v
		}
		depth := 0
		i := 0
	comment:
		for ; i < len(v); i++ {
			switch v[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
				if depth == 0 {
					break comment
				}
			}
		}
		if i >= len(v) {
			return ""
		}
		v = v[i+1:]
	}
}

// authorDomains is every distinct domain of the RFC5322.From addresses,
// lower-case, in order of appearance, across every From field (RFC 7489
// section 6.6.1: a message must not escape its policy by having several).
// A From that net/mail cannot parse is read leniently: every "@domain" in
// it counts, so an odd display name hides no address.
func authorDomains(fs []field) (domains []string, nFrom int) {
	seen := map[string]bool{}
	add := func(d string) {
		d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
		if d != "" && !seen[d] {
			seen[d] = true
			domains = append(domains, d)
		}
	}
	for _, f := range fs {
		if !strings.EqualFold(f.name, "From") {
			continue
		}
		nFrom++
		v := f.value()
		if list, err := mail.ParseAddressList(v); err == nil {
			for _, a := range list {
				if i := strings.LastIndexByte(a.Address, '@'); i >= 0 {
					add(a.Address[i+1:])
				}
			}
			continue
		}
		for {
			i := strings.IndexByte(v, '@')
			if i < 0 {
				break
			}
			v = v[i+1:]
			end := strings.IndexAny(v, " \t<>,;:()\"[]\\@")
			if end < 0 {
				end = len(v)
			}
			add(v[:end])
		}
	}
	return domains, nFrom
}
