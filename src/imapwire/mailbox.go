package imapwire

import (
	"encoding/base64"
	"errors"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// The base64 of modified UTF-7: "," instead of "/", no padding.
var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding).Strict()

// EncodeMailbox encodes a UTF-8 mailbox name in modified UTF-7 (RFC 3501
// section 5.1.3), for IMAP4rev1 clients. Invalid UTF-8 is encoded as
// U+FFFD; CheckMailboxName keeps such names out of the store.
func EncodeMailbox(s string) string {
	var b strings.Builder
	var run []uint16
	flush := func() {
		if len(run) == 0 {
			return
		}
		raw := make([]byte, 0, 2*len(run))
		for _, u := range run {
			raw = append(raw, byte(u>>8), byte(u))
		}
		b.WriteByte('&')
		b.WriteString(mutf7.EncodeToString(raw))
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		run = utf16.AppendRune(run, r)
	}
	flush()
	return b.String()
}

var errMUTF7 = errors.New("invalid modified UTF-7 mailbox name")

// DecodeMailbox decodes a modified UTF-7 name to UTF-8. It accepts only
// the one encoding EncodeMailbox produces: two spellings of one name
// would be two names to the client and one to the store (or the other way
// round), so anything else (8-bit octets, printable ASCII in base64, an
// unterminated or empty "&...", two "&...-" runs in a row, bad base64,
// odd octets, lone surrogates) is an error.
func DecodeMailbox(s string) (string, error) {
	if !strings.Contains(s, "&") {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				return "", errMUTF7
			}
		}
		return s, nil
	}
	var b strings.Builder
	prevEncoded := false
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", errMUTF7
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			prevEncoded = false
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", errMUTF7
		}
		enc := s[i+1 : i+1+end]
		i += end + 2
		if enc == "" {
			b.WriteByte('&')
			prevEncoded = false
			continue
		}
		if prevEncoded {
			return "", errMUTF7
		}
		// Go's base64 skips CR and LF; the name must not.
		for j := 0; j < len(enc); j++ {
			if c := enc[j]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == ',') {
				return "", errMUTF7
			}
		}
		raw, err := mutf7.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 {
			return "", errMUTF7
		}
		units := make([]uint16, len(raw)/2)
		for j := range units {
			units[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		for j := 0; j < len(units); j++ {
			u := units[j]
			var r rune
			switch {
			case utf16.IsSurrogate(rune(u)):
				if j+1 == len(units) {
					return "", errMUTF7
				}
				r = utf16.DecodeRune(rune(u), rune(units[j+1]))
				if r == utf8.RuneError {
					return "", errMUTF7
				}
				j++
			case u >= 0x20 && u <= 0x7e:
				return "", errMUTF7
			default:
				r = rune(u)
			}
			b.WriteRune(r)
		}
		prevEncoded = true
	}
	return b.String(), nil
}

// MailboxFromWire turns a mailbox name as the client sent it into the
// UTF-8 name correo stores: modified UTF-7 decoded for IMAP4rev1 clients,
// UTF-8 checked for clients that enabled IMAP4rev2 or UTF8=ACCEPT (RFC
// 9051 section 5.1, which no longer decodes "&"). INBOX is case-
// insensitive and comes back as "INBOX". The result still needs
// CheckMailboxName.
func MailboxFromWire(name string, utf8ok bool) (string, error) {
	var err error
	if utf8ok {
		if !utf8.ValidString(name) {
			return "", errors.New("mailbox name is not valid UTF-8")
		}
	} else if name, err = DecodeMailbox(name); err != nil {
		return "", err
	}
	if len(name) >= 5 && strings.EqualFold(name[:5], "INBOX") && (len(name) == 5 || name[5] == '/') {
		name = "INBOX" + name[5:]
	}
	return name, nil
}

// MailboxToWire is the inverse of MailboxFromWire, quoting included: the
// result is ready to be written as a mailbox argument.
func MailboxToWire(name string, utf8ok bool) string {
	if !utf8ok {
		name = EncodeMailbox(name)
	}
	return Astring(name, utf8ok)
}

// MaxMailboxName bounds a mailbox name in octets (UTF-8): with the
// storage's prefix it stays within a file name's 255.
const MaxMailboxName = 255

// CheckMailboxName refuses names that must not reach the storage: empty,
// longer than MaxMailboxName, not UTF-8, with control characters or NUL,
// with the LIST wildcards "%" and "*" (a folder so named could never be
// listed on its own), or with a "/" hierarchy that is not a plain path:
// no leading or doubled "/", no trailing "/" (CREATE strips one before
// asking), and no "." or ".." component.
func CheckMailboxName(name string) error {
	switch {
	case name == "":
		return errors.New("empty mailbox name")
	case len(name) > MaxMailboxName:
		return errors.New("mailbox name longer than 255 octets")
	case !utf8.ValidString(name):
		return errors.New("mailbox name is not valid UTF-8")
	}
	for _, r := range name {
		switch {
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == utf8.RuneError:
			return errors.New("control character in mailbox name")
		case r == '%' || r == '*':
			return errors.New("mailbox names cannot contain % or *")
		}
	}
	if name[0] == '/' {
		return errors.New("mailbox name starts with /")
	}
	for c := range strings.SplitSeq(name, "/") {
		switch c {
		case "":
			return errors.New("empty hierarchy level in mailbox name (// or a trailing /)")
		case ".", "..":
			return errors.New(`mailbox name has a "." or ".." level`)
		}
	}
	return nil
}

// DateTimeLayout is date-time of RFC 9051 (INTERNALDATE, APPEND).
const DateTimeLayout = "02-Jan-2006 15:04:05 -0700"

// FormatDateTime formats an INTERNALDATE.
func FormatDateTime(t time.Time) string { return t.Format(DateTimeLayout) }

// ParseDateTime parses an APPEND date-time; the day may be two digits or
// a space and one digit (date-day-fixed), as clients send both.
func ParseDateTime(s string) (time.Time, error) {
	if len(s) > 0 && s[0] == ' ' {
		s = "0" + s[1:]
	}
	t, err := time.Parse(DateTimeLayout, s)
	if err != nil {
		return time.Time{}, errors.New(`invalid date-time: expected "dd-Mon-yyyy hh:mm:ss +zzzz"`)
	}
	return t, nil
}

// ParseDate parses a search date, "1-Feb-1994" or "01-Feb-1994".
func ParseDate(s string) (time.Time, error) {
	// "_2" takes "1", "01" and " 1".
	t, err := time.Parse("_2-Jan-2006", s)
	if err != nil {
		return time.Time{}, &Error{Text: "Invalid date: expected d-Mon-yyyy"}
	}
	return t, nil
}
