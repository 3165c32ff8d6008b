package mailtree

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"correo/src/mailbox"
)

// Entry is one file or directory of the tree.
type Entry struct {
	// Path is relative to the root, '/'-separated, and passes ValidPath.
	Path string
	Dir  bool
	// Size is the file's length in bytes; 0 for a directory.
	Size int64
	// MTime is the modification time in Unix nanoseconds.
	MTime int64
	// Mode holds the permission bits only (mode & 0o7777).
	Mode uint32
}

// Manifest lists a tree: entries sorted by Path (byte order), which puts
// every directory before its contents.
type Manifest struct {
	Entries []Entry
}

const (
	// MaxNameLen is the longest path component: NAME_MAX on Linux file
	// systems, so a longer name cannot exist on the source.
	MaxNameLen = 255
	// MaxPathLen bounds a whole path (PATH_MAX without its NUL), so one
	// entry of a manifest cannot be arbitrarily large.
	MaxPathLen = 4095

	// tempPrefix starts the names of the stage's files being received.
	// Scan skips them, so a transfer cut off by a crash is not mistaken
	// for part of the mailbox.
	tempPrefix = ".mailtree-"
	// tmpDir is the Maildir delivery directory: what is in it is a
	// message still being written, which the delivery agent will either
	// move to new/ (and a later pass copies it) or remove.
	tmpDir = "tmp"
)

// skippedNames are per-host runtime files, never part of the mailbox:
// the move's own freeze marker (the target must not start frozen), lock
// files (flock works on the inode of each host; the target's programs
// create their own), and the UID list's write-in-progress file, which
// mailstore never reads.
var skippedNames = map[string]bool{
	mailbox.MovingMarker:    true,
	"correo-pop3.lock":      true,
	"correo-mailstore.lock": true,
	"correo-uidlist.tmp":    true,
}

// skipName reports whether Scan leaves out an entry with this base name.
func skipName(name string) bool {
	return skippedNames[name] || strings.HasPrefix(name, tempPrefix)
}

// ValidPath checks a relative path of the tree. It is the first thing done
// with every path that arrives from the network: it must be non-empty,
// relative, '/'-separated with no empty, "." or ".." component, without
// NUL, with components of at most MaxNameLen bytes and at most MaxPathLen
// bytes in all. Such a path names something strictly inside the root,
// as long as no component is a symbolic link (which the stage checks as
// it walks).
func ValidPath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if len(p) > MaxPathLen {
		return fmt.Errorf("path %.40q... is %d bytes long, more than %d", p, len(p), MaxPathLen)
	}
	if p[0] == '/' {
		return fmt.Errorf("path %q is absolute; paths are relative to the mailbox root", p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("path %q contains a NUL byte", p)
	}
	for c := range strings.SplitSeq(p, "/") {
		switch {
		case c == "":
			return fmt.Errorf("path %q has an empty component (leading, trailing or doubled '/')", p)
		case c == "." || c == "..":
			return fmt.Errorf("path %q has a %q component", p, c)
		case len(c) > MaxNameLen:
			return fmt.Errorf("path %q has a component of %d bytes, more than %d", p, len(c), MaxNameLen)
		}
	}
	return nil
}

// Check validates one entry on its own: its path, its kind and size, its
// mode, and that it is something Scan would list (not a lock file, the
// move marker, a stage temporary file, or something inside a tmp/
// directory), so a peer cannot make the target create those.
func (e Entry) Check() error {
	if err := ValidPath(e.Path); err != nil {
		return err
	}
	if e.Size < 0 {
		return fmt.Errorf("entry %q: negative size %d", e.Path, e.Size)
	}
	if e.Dir && e.Size != 0 {
		return fmt.Errorf("entry %q: a directory with size %d (directories have size 0)", e.Path, e.Size)
	}
	if e.Mode&^0o7777 != 0 {
		return fmt.Errorf("entry %q: mode %#o has bits other than permissions (0o7777)", e.Path, e.Mode)
	}
	dir, name := splitPath(e.Path)
	if skipName(name) {
		return fmt.Errorf("entry %q: %q is a per-host runtime file that is never copied", e.Path, name)
	}
	for c := range strings.SplitSeq(dir, "/") {
		if c == tmpDir {
			return fmt.Errorf("entry %q: inside a Maildir tmp/ directory, whose contents are never copied", e.Path)
		}
	}
	return nil
}

// Check validates a manifest: every entry (Entry.Check), strictly
// increasing paths (sorted, no duplicates), and every entry's parent
// listed before it as a directory. A manifest that passes can be applied
// in order: a directory always exists before anything is put into it.
func (m *Manifest) Check() error {
	dirs := make(map[string]bool)
	for i, e := range m.Entries {
		if err := e.Check(); err != nil {
			return fmt.Errorf("manifest entry %d: %w", i, err)
		}
		if i > 0 {
			prev := m.Entries[i-1].Path
			if e.Path == prev {
				return fmt.Errorf("manifest entry %d: %q is listed twice", i, e.Path)
			}
			if e.Path < prev {
				return fmt.Errorf("manifest entry %d: %q comes after %q; entries must be sorted by path", i, e.Path, prev)
			}
		}
		if parent, _ := splitPath(e.Path); parent != "" && !dirs[parent] {
			return fmt.Errorf("manifest entry %d: %q is listed without its parent directory %q", i, e.Path, parent)
		}
		if e.Dir {
			dirs[e.Path] = true
		}
	}
	return nil
}

// splitPath splits a valid path into its parent ("" for the root) and
// base name.
func splitPath(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// wireEntry is Entry's JSON form. A path that is not valid UTF-8 travels as
// bytes ("b", base64) because encoding/json would silently replace its
// invalid bytes with U+FFFD, and a Maildir file's name must arrive exactly
// (other software may have written Latin-1 folder or file names).
type wireEntry struct {
	P *string `json:"p,omitempty"`
	B []byte  `json:"b,omitempty"`
	D bool    `json:"d,omitempty"`
	S int64   `json:"s,omitempty"`
	M int64   `json:"m"`
	O uint32  `json:"o"`
}

// MarshalJSON writes the wire form (see wireEntry).
func (e Entry) MarshalJSON() ([]byte, error) {
	w := wireEntry{D: e.Dir, S: e.Size, M: e.MTime, O: e.Mode}
	if utf8.ValidString(e.Path) {
		p := e.Path
		w.P = &p
	} else {
		w.B = []byte(e.Path)
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the wire form. It checks only the form (exactly one
// of "p" and "b"); Check validates the contents.
func (e *Entry) UnmarshalJSON(data []byte) error {
	var w wireEntry
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	switch {
	case w.P != nil && w.B != nil:
		return errors.New(`manifest entry has both "p" and "b" paths`)
	case w.P != nil:
		e.Path = *w.P
	case w.B != nil:
		e.Path = string(w.B)
	default:
		return errors.New(`manifest entry has no path ("p" or "b")`)
	}
	e.Dir, e.Size, e.MTime, e.Mode = w.D, w.S, w.M, w.O
	return nil
}

// Encode writes the manifest as JSON: {"e":[entry,...]}.
func (m *Manifest) Encode(w io.Writer) error {
	entries := m.Entries
	if entries == nil {
		entries = []Entry{}
	}
	if err := json.NewEncoder(w).Encode(struct {
		E []Entry `json:"e"`
	}{entries}); err != nil {
		return fmt.Errorf("encoding manifest: %w", err)
	}
	return nil
}

// maxEntryBytes is the wire budget per allowed entry: far above a real
// Maildir path (a folder, cur/ and a file name: under 600 bytes), so only a
// broken or hostile peer reaches it.
const maxEntryBytes = 8 << 10

// errTooLarge ends a read past DecodeManifest's byte budget.
var errTooLarge = errors.New("too large")

// DecodeManifest reads a manifest written by Encode and checks it (Check).
// It refuses more than max entries as they arrive, and more than about
// max*8 KiB of input, so a broken peer cannot exhaust memory.
func DecodeManifest(r io.Reader, max int) (*Manifest, error) {
	if max < 0 {
		max = 0
	}
	limit := int64(64<<10) + int64(max)*maxEntryBytes
	lr := &budgetReader{r: r, left: limit}
	dec := json.NewDecoder(lr)
	fail := func(err error) (*Manifest, error) {
		if errors.Is(err, errTooLarge) {
			return nil, fmt.Errorf("decoding manifest: more than %d bytes of input for at most %d entries; the peer is broken or the limit is too low", limit, max)
		}
		return nil, fmt.Errorf("decoding manifest: %w", err)
	}
	if err := expectDelim(dec, '{'); err != nil {
		return fail(err)
	}
	m := &Manifest{}
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		key, _ := tok.(string)
		if key != "e" {
			// Unknown keys are skipped so that a newer peer can add some.
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return fail(err)
			}
			continue
		}
		if seen {
			return fail(errors.New(`key "e" appears twice`))
		}
		seen = true
		if err := expectDelim(dec, '['); err != nil {
			return fail(err)
		}
		// Entries are decoded one at a time so that the count is refused
		// when it is reached, not after the whole list is in memory.
		for dec.More() {
			if len(m.Entries) >= max {
				return nil, fmt.Errorf("decoding manifest: more than %d entries; refusing (raise the limit if the mailbox really is that large)", max)
			}
			var e Entry
			if err := dec.Decode(&e); err != nil {
				return fail(fmt.Errorf("entry %d: %w", len(m.Entries), err))
			}
			m.Entries = append(m.Entries, e)
		}
		if err := expectDelim(dec, ']'); err != nil {
			return fail(err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return fail(err)
	}
	if !seen {
		return fail(errors.New(`no "e" list`))
	}
	if err := m.Check(); err != nil {
		return nil, fmt.Errorf("received manifest refused: %w", err)
	}
	return m, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("expected %q, got %v", want, tok)
	}
	return nil
}

// budgetReader is io.LimitReader that fails instead of ending quietly, so
// that an oversized manifest is reported as such and not as truncated
// JSON.
type budgetReader struct {
	r    io.Reader
	left int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}
