package mailtree

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Scan lists the tree at root: directories and regular files, sorted by
// path. It skips what is not part of the mailbox: symbolic links (never
// followed: one could point at another user's mail), devices, sockets and
// FIFOs, the contents of every tmp/ directory (deliveries in progress; the
// directory itself is listed so that the target has it), lock files, the
// move marker, correo-uidlist.tmp and the stage's own temporary files.
//
// The root itself is opened normally (it is the operator's configured
// path, which may well go through a symlinked spool); nothing below it is
// followed. A root that does not exist is an empty tree: a user who never
// received mail. Entries that vanish during the walk (a POP3 DELE, an IMAP
// flag change renaming a file) are left out, not errors: the mailbox is
// live, and the next pass sees its new state.
func Scan(root string) (*Manifest, error) {
	fd, err := openat(unix.AT_FDCWD, root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return &Manifest{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("scanning mailbox %s: %w", root, err)
	}
	defer unix.Close(fd)
	return scanFD(fd, root, nil)
}

// scanFD scans the directory open as rootfd; name is for messages. temp,
// if set, is called with each stage temporary file found (dirfd, name) so
// that the stage can remove leftovers of an interrupted pass.
func scanFD(rootfd int, name string, temp func(dirfd int, name string)) (*Manifest, error) {
	s := scanner{root: name, temp: temp}
	if err := s.walk(rootfd, ""); err != nil {
		return nil, err
	}
	slices.SortFunc(s.entries, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	return &Manifest{Entries: s.entries}, nil
}

type scanner struct {
	root    string
	temp    func(int, string)
	entries []Entry
}

// walk lists the directory rel (open as a descriptor of its own, dirfd,
// which walk does not close) and descends into its subdirectories.
func (s *scanner) walk(dirfd int, rel string) error {
	// A fresh open file description for reading: a dup would share the
	// directory offset with dirfd, and the stage scans its long-lived root
	// descriptor again and again.
	own, err := openDirAt(dirfd, "")
	if err != nil {
		return fmt.Errorf("scanning %s: %w", s.full(rel), err)
	}
	f := os.NewFile(uintptr(own), s.full(rel))
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("scanning %s: reading directory: %w", s.full(rel), err)
	}
	for _, name := range names {
		p := name
		if rel != "" {
			p = rel + "/" + name
		}
		st, err := lstatAt(dirfd, name)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("scanning %s: %w", s.full(p), err)
		}
		if skipName(name) {
			if s.temp != nil && strings.HasPrefix(name, tempPrefix) && isReg(&st) {
				s.temp(dirfd, name)
			}
			continue
		}
		e := Entry{Path: p, MTime: st.Mtim.Nano(), Mode: uint32(st.Mode) & 0o7777}
		switch {
		case isReg(&st):
			e.Size = st.Size
			s.entries = append(s.entries, e)
		case isDir(&st):
			e.Dir = true
			if name == tmpDir {
				s.entries = append(s.entries, e)
				continue
			}
			child, err := openat(dirfd, name, dirFlags, 0)
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				// Removed, or replaced by something else, since the
				// fstatat: as if it had never been there.
				continue
			}
			if err != nil {
				return fmt.Errorf("scanning %s: %w", s.full(p), err)
			}
			s.entries = append(s.entries, e)
			err = s.walk(child, p)
			unix.Close(child)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *scanner) full(rel string) string {
	if rel == "" {
		return s.root
	}
	return filepath.Join(s.root, filepath.FromSlash(rel))
}
