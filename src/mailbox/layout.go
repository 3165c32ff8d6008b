package mailbox

import (
	"errors"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"strings"
)

// Scheme names a way of spreading user homes over a directory tree so that no
// single directory holds every user (the paper's /var/spool/mail problem).
type Scheme string

const (
	// First3 is the paper's scheme: the first three characters of the name,
	// one directory level each (juan → j/u/a/juan).
	First3 Scheme = "first3"
	// First2Last1 uses the first two characters and the last one
	// (juan → j/u/n/juan), one of the paper's Fig. 4 alternatives.
	First2Last1 Scheme = "first2last1"
	// First1Last2 uses the first character then the last two in order
	// (juan → j/a/n/juan), the other Fig. 4 alternative.
	First1Last2 Scheme = "first1last2"
	// Hash2 uses two levels of two lowercase hex digits taken from the
	// FNV-1a 32-bit hash h of the normalised name: level 1 is (h>>8)&0xff and
	// level 2 is h&0xff. It spreads evenly whatever the names look like, at
	// the price of homes an operator cannot find by eye.
	Hash2 Scheme = "hash2"
)

// PadChar stands in for characters a short name does not have (first3 of
// "ju" is j/u/_/ju). It also replaces '.' and '-' in level directories: a
// level named "." would be the parent itself, and one named "-" confuses
// shell tools (cd -, tar -).
const PadChar = '_'

var schemes = []Scheme{First3, First2Last1, First1Last2, Hash2}

// Schemes returns every known scheme, the paper's first.
func Schemes() []Scheme { return append([]Scheme(nil), schemes...) }

// ParseScheme turns a configuration or command-line value into a Scheme.
func ParseScheme(s string) (Scheme, error) {
	for _, sc := range schemes {
		if string(sc) == s {
			return sc, nil
		}
	}
	valid := make([]string, len(schemes))
	for i, sc := range schemes {
		valid[i] = string(sc)
	}
	return "", fmt.Errorf("unknown mailbox layout scheme %q: use one of %s", s, strings.Join(valid, ", "))
}

func (s Scheme) valid() bool {
	for _, sc := range schemes {
		if sc == s {
			return true
		}
	}
	return false
}

// levelChar maps a name character to the directory it selects.
func levelChar(c byte) byte {
	if c == '.' || c == '-' {
		return PadChar
	}
	return c
}

// Dir returns the user's home relative to the mail root, e.g. "j/u/a/juan".
// The name is normalised first, so "Juan" and "juan" share a home, and any
// name that could escape the root is refused.
func (s Scheme) Dir(name string) (string, error) {
	if !s.valid() {
		_, err := ParseScheme(string(s))
		return "", err
	}
	n, err := NormalizeName(name)
	if err != nil {
		return "", err
	}
	at := func(i int) byte { // the i-th character, or padding
		if i < len(n) {
			return levelChar(n[i])
		}
		return PadChar
	}
	// last returns the k-th character counted from the end (k=1 is the last)
	// of a name padded on the right to width w, so that "j" under
	// first1last2 gives j/_/_ rather than reusing its only character.
	last := func(k, w int) byte {
		l := len(n)
		if l < w {
			l = w
		}
		return at(l - k)
	}
	var lv []byte
	switch s {
	case First3:
		lv = []byte{at(0), at(1), at(2)}
	case First2Last1:
		lv = []byte{at(0), at(1), last(1, 3)}
	case First1Last2:
		lv = []byte{at(0), last(2, 3), last(1, 3)}
	case Hash2:
		h := fnv.New32a()
		h.Write([]byte(n))
		v := h.Sum32()
		return fmt.Sprintf("%02x/%02x/%s", (v>>8)&0xff, v&0xff, n), nil
	}
	return string([]byte{lv[0], '/', lv[1], '/', lv[2], '/'}) + n, nil
}

// Home returns the user's home directory under root.
func (s Scheme) Home(root, name string) (string, error) {
	if root == "" {
		return "", errors.New("mailbox root directory is empty: set the storage root in the host profile")
	}
	d, err := s.Dir(name)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, d), nil
}

// MaildirPath returns the user's Maildir, Home + "/Maildir".
func (s Scheme) MaildirPath(root, name string) (string, error) {
	h, err := s.Home(root, name)
	if err != nil {
		return "", err
	}
	return filepath.Join(h, "Maildir"), nil
}
