package mailtree

import (
	"fmt"
	"slices"
	"strings"
)

// Diff compares the source's manifest with the target's and returns what
// the target must fetch and remove to become equal to the source.
//
// fetch, in src's order (parents first), holds every file missing from dst
// or differing in size, mtime or mode, and every directory missing from
// dst or differing in mode or mtime. Directory mtimes are compared, though
// Verify ignores them, because a pass that changes a directory's contents
// also changes its mtime on the target: fetching the directory again makes
// Stage.Sync put the source's mtime back, and that costs no data.
//
// remove holds the entries of dst that are not in src, deepest first (so a
// directory comes after its contents). A path that is a file on one side
// and a directory on the other is in both lists; apply remove before
// fetch.
func Diff(src, dst *Manifest) (fetch, remove []Entry) {
	have := make(map[string]Entry, len(dst.Entries))
	for _, e := range dst.Entries {
		have[e.Path] = e
	}
	keep := make(map[string]bool, len(src.Entries))
	for _, e := range src.Entries {
		d, ok := have[e.Path]
		switch {
		case !ok:
			fetch = append(fetch, e)
		case d.Dir != e.Dir:
			fetch = append(fetch, e)
			continue // not kept: removed first
		case d.Mode != e.Mode || d.MTime != e.MTime || (!e.Dir && d.Size != e.Size):
			fetch = append(fetch, e)
		}
		keep[e.Path] = true
	}
	for _, d := range slices.Backward(dst.Entries) {
		if !keep[d.Path] {
			remove = append(remove, d)
		}
	}
	// dst is sorted by path, and a child's path is greater than its
	// parent's, so the reverse order is already deepest first. A dst that
	// is not sorted (a caller's hand-made manifest) is sorted here to keep
	// the promise.
	if !slices.IsSortedFunc(remove, func(a, b Entry) int { return strings.Compare(b.Path, a.Path) }) {
		slices.SortFunc(remove, func(a, b Entry) int { return strings.Compare(b.Path, a.Path) })
	}
	return fetch, remove
}

// maxNamed is how many differences Verify's error names.
const maxNamed = 5

// Verify reports whether the two manifests describe the same tree: the
// same paths, each of the same kind and mode, and for files the same size
// and mtime. Directory mtimes are not compared: the move itself changes
// them on the source (it creates the freeze marker and lock files), and
// no mail protocol reads them. The error counts the differences and names
// the first few.
func Verify(src, dst *Manifest) error {
	have := make(map[string]Entry, len(dst.Entries))
	for _, e := range dst.Entries {
		have[e.Path] = e
	}
	var diffs []string
	n := 0
	note := func(format string, args ...any) {
		n++
		if len(diffs) < maxNamed {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		}
	}
	for _, e := range src.Entries {
		d, ok := have[e.Path]
		delete(have, e.Path)
		switch {
		case !ok:
			note("%q missing on target", e.Path)
		case d.Dir != e.Dir:
			note("%q is a %s on source, a %s on target", e.Path, kind(e), kind(d))
		case !e.Dir && d.Size != e.Size:
			note("%q has size %d on source, %d on target", e.Path, e.Size, d.Size)
		case !e.Dir && d.MTime != e.MTime:
			note("%q has mtime %d on source, %d on target", e.Path, e.MTime, d.MTime)
		case d.Mode != e.Mode:
			note("%q has mode %#o on source, %#o on target", e.Path, e.Mode, d.Mode)
		}
	}
	// Extra target entries, in path order so the message is stable.
	for _, d := range dst.Entries {
		if _, extra := have[d.Path]; extra {
			note("%q exists only on target", d.Path)
		}
	}
	if n == 0 {
		return nil
	}
	more := ""
	if n > len(diffs) {
		more = fmt.Sprintf("; and %d more", n-len(diffs))
	}
	return fmt.Errorf("verify: %d of %d paths differ between source and target: %s%s",
		n, len(src.Entries), strings.Join(diffs, "; "), more)
}

func kind(e Entry) string {
	if e.Dir {
		return "directory"
	}
	return "file"
}
