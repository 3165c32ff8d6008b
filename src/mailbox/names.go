package mailbox

import (
	"fmt"
)

// MaxNameLen is the longest user name accepted, in bytes. It keeps a home
// directory path well under PATH_MAX and a name within what mail clients and
// the passwd server expect.
const MaxNameLen = 64

// NameError reports a user name that NormalizeName refused.
type NameError struct {
	Name   string // the name as given, before normalisation
	Reason string // what is wrong with it
}

func (e *NameError) Error() string {
	return fmt.Sprintf("invalid user name %q: %s (allowed: 1 to %d characters from a-z 0-9 . _ -, not starting with '.' or '-', not ending with '.', no \"..\")",
		e.Name, e.Reason, MaxNameLen)
}

// NormalizeName is the single gate every user name passes before it becomes
// part of a path, a lookup key or a log line. It lower-cases ASCII letters and
// refuses anything that could escape a directory (".", "..", "/", NUL), hide in
// a terminal (control characters), be confused with another name (non-ASCII
// look-alikes, spaces) or be taken for a command-line option (leading '-').
//
// Upper-case is folded rather than refused because mail addresses are
// case-insensitive in practice: "Juan" and "juan" must be the same mailbox.
func NormalizeName(s string) (string, error) {
	bad := func(reason string) (string, error) {
		return "", &NameError{Name: s, Reason: reason}
	}
	if s == "" {
		return bad("empty")
	}
	if len(s) > MaxNameLen {
		return bad(fmt.Sprintf("%d bytes long, more than %d", len(s), MaxNameLen))
	}
	// Check every byte before building the result so the reason names the
	// most dangerous problem, not merely the first odd character.
	var other byte
	otherAt := -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0:
			return bad(fmt.Sprintf("contains a NUL byte at offset %d", i))
		case c == '/':
			return bad(fmt.Sprintf("contains '/' at offset %d", i))
		case c < 0x20 || c == 0x7f:
			return bad(fmt.Sprintf("contains control character 0x%02x at offset %d", c, i))
		case c >= 0x80:
			return bad(fmt.Sprintf("contains a non-ASCII byte 0x%02x at offset %d", c, i))
		case c == ' ':
			return bad(fmt.Sprintf("contains a space at offset %d", i))
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			if otherAt < 0 {
				other, otherAt = c, i
			}
		}
	}
	if otherAt >= 0 {
		return bad(fmt.Sprintf("contains %q at offset %d", other, otherAt))
	}
	switch {
	case s == "." || s == "..":
		return bad("is a relative directory name")
	case s[0] == '.':
		return bad("starts with '.'")
	case s[len(s)-1] == '.':
		return bad("ends with '.'")
	case s[0] == '-':
		return bad("starts with '-' (it would look like a command-line option)")
	}
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '.' && s[i+1] == '.' {
			return bad(fmt.Sprintf("contains \"..\" at offset %d", i))
		}
	}
	b := []byte(s)
	changed := false
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
			changed = true
		}
	}
	if !changed {
		return s, nil
	}
	return string(b), nil
}
