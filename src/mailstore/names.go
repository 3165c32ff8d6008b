package mailstore

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// Inbox is the name of the folder that is the Maildir itself.
const Inbox = "INBOX"

// MaxNameLen bounds a folder name in bytes. With escaping, the directory
// name must still fit NAME_MAX (255), which is checked separately.
const MaxNameLen = 200

// maxDepth bounds the hierarchy: deeper trees are not a real user's need,
// and every level costs a LIST entry.
const maxDepth = 16

// NameError reports a folder name that cannot be used.
type NameError struct {
	Name   string
	Reason string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("invalid folder name %q: %s (use '/' between levels; no control characters, '%%' or '*', no empty, \".\" or \"..\" levels)", e.Name, e.Reason)
}

// CanonicalName validates a folder name and returns its canonical
// spelling: INBOX in capitals, also as the first level of a child.
func CanonicalName(name string) (string, error) {
	bad := func(why string) (string, error) { return "", &NameError{Name: name, Reason: why} }
	if name == "" {
		return bad("empty")
	}
	if len(name) > MaxNameLen {
		return bad(fmt.Sprintf("%d bytes long, more than %d", len(name), MaxNameLen))
	}
	if !utf8.ValidString(name) {
		return bad("not valid UTF-8")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == 0:
			return bad(fmt.Sprintf("contains NUL at offset %d", i))
		case c < 0x20 || c == 0x7f:
			return bad(fmt.Sprintf("contains control character 0x%02x at offset %d", c, i))
		case c == '%' || c == '*':
			return bad(fmt.Sprintf("contains the LIST wildcard %q", c))
		}
	}
	parts := strings.Split(name, "/")
	if len(parts) > maxDepth {
		return bad(fmt.Sprintf("%d levels, more than %d", len(parts), maxDepth))
	}
	for _, p := range parts {
		switch p {
		case "":
			return bad("empty level (leading, trailing or doubled '/')")
		case ".", "..":
			return bad(fmt.Sprintf("level %q", p))
		}
	}
	if strings.EqualFold(parts[0], Inbox) {
		parts[0] = Inbox
	}
	canon := strings.Join(parts, "/")
	if canon != Inbox && len(dirName(canon)) > 255 {
		return bad("too long once stored as a directory name")
	}
	return canon, nil
}

// dirName is the Maildir++ directory of a canonical non-INBOX name.
func dirName(canon string) string {
	parts := strings.Split(canon, "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, ".", "%2E")
	}
	return "." + strings.Join(parts, ".")
}

// nameOfDir turns a directory entry of the root back into a folder name;
// ok is false for entries that are not folders this package would have
// made (".", "..", empty levels, bad escapes, ".INBOX" itself).
func nameOfDir(d string) (string, bool) {
	if len(d) < 2 || d[0] != '.' || d == ".." {
		return "", false
	}
	parts := strings.Split(d[1:], ".")
	for i, p := range parts {
		if p == "" {
			return "", false
		}
		// Only the one escape this package writes is understood; any
		// other '%' would make two directories decode to one name.
		rest := p
		var b strings.Builder
		for {
			j := strings.IndexByte(rest, '%')
			if j < 0 {
				b.WriteString(rest)
				break
			}
			if !strings.HasPrefix(rest[j:], "%2E") {
				return "", false
			}
			b.WriteString(rest[:j])
			b.WriteByte('.')
			rest = rest[j+3:]
		}
		parts[i] = b.String()
	}
	name := strings.Join(parts, "/")
	canon, err := CanonicalName(name)
	if err != nil || canon == Inbox || dirName(canon) != d {
		return "", false
	}
	return canon, true
}

// folderPath returns the directory of a folder under root, checked to stay
// there.
func folderPath(root, canon string) (string, error) {
	if canon == Inbox {
		return root, nil
	}
	p := filepath.Join(root, dirName(canon))
	if filepath.Dir(p) != filepath.Clean(root) {
		return "", &NameError{Name: canon, Reason: "would leave the mailbox directory"}
	}
	return p, nil
}

// parentName is the name one level up, "" at the top.
func parentName(canon string) string {
	if i := strings.LastIndexByte(canon, '/'); i >= 0 {
		return canon[:i]
	}
	return ""
}
