package mailbox

import (
	"io/fs"
	"syscall"
)

// rawFile is a new regular file written with plain system calls. An
// os.File registers its descriptor with the runtime's poller, which a
// regular file refuses, after four fcntl calls: five of a delivery's
// fifteen system calls, for nothing.
type rawFile struct {
	fd   int
	name string
}

// createExcl creates path (O_EXCL) for writing. Its errors are
// *fs.PathError, so errors.Is(err, fs.ErrNotExist) and fs.ErrExist work
// as with os.OpenFile.
func createExcl(path string, mode uint32) (*rawFile, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, mode)
		switch err {
		case nil:
			return &rawFile{fd: fd, name: path}, nil
		case syscall.EINTR:
			continue
		}
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
}

func (f *rawFile) Name() string { return f.name }

// Write writes all of p, as os.File does: short writes and EINTR are
// retried.
func (f *rawFile) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := syscall.Write(f.fd, p[done:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return done, &fs.PathError{Op: "write", Path: f.name, Err: err}
		}
		if n == 0 {
			return done, &fs.PathError{Op: "write", Path: f.name, Err: syscall.EIO}
		}
		done += n
	}
	return done, nil
}

func (f *rawFile) Sync() error {
	if err := syscall.Fsync(f.fd); err != nil {
		return &fs.PathError{Op: "fsync", Path: f.name, Err: err}
	}
	return nil
}

// Dev is the file system holding the file (st_dev).
func (f *rawFile) Dev() (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(f.fd, &st); err != nil {
		return 0, &fs.PathError{Op: "fstat", Path: f.name, Err: err}
	}
	return uint64(st.Dev), nil
}

// Close closes the descriptor once; Linux frees it even when close
// reports an error, so it is never retried.
func (f *rawFile) Close() error {
	if f.fd < 0 {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	err := syscall.Close(f.fd)
	f.fd = -1
	if err != nil {
		return &fs.PathError{Op: "close", Path: f.name, Err: err}
	}
	return nil
}
