package mailtree

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Open opens the file e of the tree at root for sending. No component
// below root may be a symbolic link, and the file must be a regular file:
// the path came from a manifest and the tree is live, so anything may have
// replaced it since the scan.
//
// It returns e as the file is now (size, mtime, mode of the open file):
// the sender must announce that one, not the scanned one, because a
// metadata file (correo-uidlist, correo-keywords) is replaced by rename
// while the mailbox is live and the stage refuses a body whose length is
// not the announced size. A file that vanished since the scan gives an
// error wrapping fs.ErrNotExist; the sender should skip it (a later pass
// sees the change).
func Open(root string, e Entry) (*os.File, Entry, error) {
	if err := e.Check(); err != nil {
		return nil, e, fmt.Errorf("opening for sending: %w", err)
	}
	if e.Dir {
		return nil, e, fmt.Errorf("opening %q for sending: a directory has no contents to send", e.Path)
	}
	full := filepath.Join(root, filepath.FromSlash(e.Path))
	rootfd, err := openat(unix.AT_FDCWD, root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, e, fmt.Errorf("opening mailbox %s: %w", root, err)
	}
	defer unix.Close(rootfd)
	dirfd, name, err := openParent(rootfd, e.Path)
	if err != nil {
		return nil, e, fmt.Errorf("opening %s for sending: %w", full, err)
	}
	defer unix.Close(dirfd)
	// O_NONBLOCK so that a FIFO put there does not hang the open; it
	// changes nothing for a regular file.
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, e, fmt.Errorf("opening %s for sending: it is a symbolic link, refused", full)
		}
		return nil, e, fmt.Errorf("opening %s for sending: %w", full, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, e, fmt.Errorf("opening %s for sending: %w", full, err)
	}
	if !isReg(&st) {
		unix.Close(fd)
		return nil, e, fmt.Errorf("opening %s for sending: not a regular file (mode %#o), refused", full, st.Mode)
	}
	cur := e
	cur.Size, cur.MTime, cur.Mode = st.Size, st.Mtim.Nano(), uint32(st.Mode)&0o7777
	return os.NewFile(uintptr(fd), full), cur, nil
}

// SumSize is the length of a checksum (SHA-256).
const SumSize = sha256.Size

// Sum reads r to its end and returns the SHA-256 of what it read and its
// length.
func Sum(r io.Reader) ([]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return nil, n, err
	}
	return h.Sum(nil), n, nil
}

// HashReader passes a reader through, hashing what is read, so that a
// sender computes the checksum while it sends and reads each file once.
type HashReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

// NewHashReader wraps r.
func NewHashReader(r io.Reader) *HashReader {
	return &HashReader{r: r, h: sha256.New()}
}

func (h *HashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// Sum is the SHA-256 of the bytes read so far.
func (h *HashReader) Sum() []byte { return h.h.Sum(nil) }

// N is the number of bytes read so far.
func (h *HashReader) N() int64 { return h.n }
