package mailtree

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Everything below a root is reached with *at system calls from a
// directory descriptor, one component at a time with O_NOFOLLOW: resolving
// a whole path string would follow a symbolic link planted in any of its
// components, and checking with Lstat first would leave a window between
// the check and the use.

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openDirAt opens the directory rel ("" for dirfd itself) below dirfd
// without following any symbolic link. The caller closes the result.
func openDirAt(dirfd int, rel string) (int, error) {
	fd, err := openat(dirfd, ".", dirFlags, 0)
	if err != nil {
		return -1, err
	}
	if rel == "" {
		return fd, nil
	}
	for c := range strings.SplitSeq(rel, "/") {
		next, err := openat(fd, c, dirFlags, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// openParent opens the directory holding the valid path p and returns it
// with p's base name.
func openParent(rootfd int, p string) (int, string, error) {
	dir, name := splitPath(p)
	fd, err := openDirAt(rootfd, dir)
	if err != nil {
		return -1, "", fmt.Errorf("opening parent directory %q: %w", dir, explain(err))
	}
	return fd, name, nil
}

// explain turns the errors of a no-follow walk into words an operator can
// act on; the errno stays wrapped for errors.Is.
func explain(err error) error {
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("a component is a symbolic link or not a directory, refused (someone changed the tree by hand?): %w", err)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("does not exist (put the parent directory first): %w", err)
	}
	return err
}

func lstatAt(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

func isDir(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }
func isReg(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFREG }

// openat is unix.Openat repeated when a signal interrupts it, as package
// os does: opening can block (network file systems, FUSE) and the Go
// runtime signals threads to preempt goroutines.
func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
