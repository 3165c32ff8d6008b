package mailstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The IMAP system flags this package stores.
const (
	FlagSeen      = `\Seen`
	FlagAnswered  = `\Answered`
	FlagFlagged   = `\Flagged`
	FlagDeleted   = `\Deleted`
	FlagDraft     = `\Draft`
	FlagForwarded = `$Forwarded` // a keyword, kept as Maildir's P ("passed")
)

// letterOf maps flags to their Maildir info letters. Keys are lower-case:
// IMAP flags are case-insensitive.
var letterOf = map[string]byte{
	`\seen`: 'S', `\answered`: 'R', `\flagged`: 'F', `\deleted`: 'T', `\draft`: 'D', `$forwarded`: 'P',
}

var flagOf = map[byte]string{
	'S': FlagSeen, 'R': FlagAnswered, 'F': FlagFlagged, 'T': FlagDeleted, 'D': FlagDraft, 'P': FlagForwarded,
}

// SystemFlags are the flags every folder supports, for FLAGS and
// PERMANENTFLAGS.
var SystemFlags = []string{FlagAnswered, FlagFlagged, FlagDeleted, FlagSeen, FlagDraft}

// ErrTooManyKeywords: the folder's 26 keyword letters are all taken.
var ErrTooManyKeywords = errors.New("this folder already has 26 keywords, the most a Maildir file name can carry; reuse an existing keyword")

// maxKeywords is the number of letters a–z.
const maxKeywords = 26

// keywordsFile maps the letters a–z to keywords, per folder.
const keywordsFile = "correo-keywords"

// keywords is one folder's letter table; index 0 is 'a'.
type keywords struct {
	names []string
}

// letter finds a keyword (case-insensitively, as IMAP compares them).
func (k *keywords) letter(kw string) (byte, bool) {
	for i, n := range k.names {
		if strings.EqualFold(n, kw) {
			return byte('a' + i), true
		}
	}
	return 0, false
}

func (k *keywords) name(l byte) (string, bool) {
	i := int(l) - 'a'
	if i < 0 || i >= len(k.names) {
		return "", false
	}
	return k.names[i], true
}

// validKeyword follows RFC 9051's flag-keyword (an atom) and refuses what
// would break the keyword file (spaces, control characters).
func validKeyword(kw string) error {
	if kw == "" || len(kw) > 100 {
		return fmt.Errorf("keyword %q: must be 1 to 100 characters", kw)
	}
	for i := 0; i < len(kw); i++ {
		c := kw[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return fmt.Errorf("keyword %q: character %q is not allowed in an IMAP keyword", kw, c)
		}
	}
	return nil
}

func readKeywords(dir string) (*keywords, error) {
	data, err := os.ReadFile(filepath.Join(dir, keywordsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &keywords{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the keyword table of %s: %w", dir, err)
	}
	k := &keywords{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		l, kw, ok := strings.Cut(line, " ")
		// Letters are handed out in order, so a table with a gap or a
		// bad entry was not written by us: keep what is sound before it
		// rather than guess what a letter means.
		if !ok || len(l) != 1 || int(l[0]) != 'a'+len(k.names) || validKeyword(kw) != nil {
			break
		}
		k.names = append(k.names, kw)
		if len(k.names) == maxKeywords {
			break
		}
	}
	return k, nil
}

func (k *keywords) write(dir string) error {
	var b bytes.Buffer
	for i, n := range k.names {
		fmt.Fprintf(&b, "%c %s\n", 'a'+i, n)
	}
	return writeDurable(dir, keywordsFile, b.Bytes())
}

// infoFlags returns the flag letters of an info part (":2,FS" → "FS").
func infoFlags(info string) string {
	if f, ok := strings.CutPrefix(info, ":2,"); ok {
		return f
	}
	return ""
}

// flagNames lists the IMAP flags of the letters; letters with no meaning
// here (another program's) are not shown.
func flagNames(letters string, k *keywords) []string {
	out := make([]string, 0, len(letters))
	for i := 0; i < len(letters); i++ {
		c := letters[i]
		if f, ok := flagOf[c]; ok {
			out = append(out, f)
		} else if n, ok := k.name(c); ok {
			out = append(out, n)
		}
	}
	return out
}

// lettersFor turns IMAP flags into letters, giving new keywords letters
// when add is true (the caller then writes the table). added says whether
// the table grew.
func lettersFor(flags []string, k *keywords, add bool) (letters string, added bool, err error) {
	var set []byte
	for _, f := range flags {
		if l, ok := letterOf[strings.ToLower(f)]; ok {
			set = append(set, l)
			continue
		}
		if strings.HasPrefix(f, `\`) {
			return "", false, fmt.Errorf("flag %q cannot be stored: only \\Seen \\Answered \\Flagged \\Deleted \\Draft and keywords", f)
		}
		if err := validKeyword(f); err != nil {
			return "", false, err
		}
		if l, ok := k.letter(f); ok {
			set = append(set, l)
			continue
		}
		if !add {
			continue // not in this folder: no message can have it
		}
		if len(k.names) >= maxKeywords {
			return "", false, ErrTooManyKeywords
		}
		k.names = append(k.names, f)
		added = true
		set = append(set, byte('a'+len(k.names)-1))
	}
	return normLetters(string(set)), added, nil
}

// normLetters sorts and deduplicates, as the Maildir spec wants the info.
func normLetters(s string) string {
	b := []byte(s)
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	out := b[:0]
	for i, c := range b {
		if i == 0 || c != b[i-1] {
			out = append(out, c)
		}
	}
	return string(out)
}

// StoreOp is how STORE combines the given flags with a message's.
type StoreOp int

const (
	OpReplace StoreOp = iota // FLAGS
	OpAdd                    // +FLAGS
	OpRemove                 // -FLAGS
)

// applyOp computes the new letters. Letters of other programs (not ours to
// know) survive every op, including replace.
func applyOp(old, given string, op StoreOp) string {
	has := func(s string, c byte) bool { return strings.IndexByte(s, c) >= 0 }
	var b []byte
	switch op {
	case OpAdd:
		b = append([]byte(old), given...)
	case OpRemove:
		for i := 0; i < len(old); i++ {
			if !has(given, old[i]) {
				b = append(b, old[i])
			}
		}
	case OpReplace:
		b = append(b, given...)
		for i := 0; i < len(old); i++ {
			c := old[i]
			if _, ours := flagOf[c]; !ours && !(c >= 'a' && c <= 'z') {
				b = append(b, c)
			}
		}
	}
	return normLetters(string(b))
}
