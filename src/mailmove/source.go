package mailmove

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"correo/src/mailbox"
	"correo/src/mailtree"
	"correo/src/pwproto"
)

// sendManifest scans the Maildir and sends its manifest in chunks.
func (s *Server) sendManifest(c net.Conn, st *pwproto.Stream, root string) (Response, error) {
	m, err := mailtree.Scan(root)
	if err != nil {
		return refuse(opManifest, "%v", err), nil
	}
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		return refuse(opManifest, "%v", err), nil
	}
	b := buf.Bytes()
	for len(b) > 0 {
		n := min(len(b), chunkSize)
		c.SetWriteDeadline(time.Now().Add(ioTimeout))
		if err := st.Send(kindManifest, b[:n]); err != nil {
			return Response{}, err
		}
		b = b[n:]
	}
	return Response{OK: true}, nil
}

// sendFiles sends each requested file as it is now: header, body,
// checksum. A file that vanished or changed kind since the scan is sent
// as missing; the next pass sees what replaced it.
func (s *Server) sendFiles(c net.Conn, st *pwproto.Stream, root string, files []mailtree.Entry, rate int64) (Response, error) {
	if len(files) > fetchBatch {
		return refuse(opFetch, "%d files in one request, at most %d", len(files), fetchBatch), nil
	}
	for _, e := range files {
		if err := e.Check(); err != nil || e.Dir {
			return refuse(opFetch, "bad entry %q: a directory, or %v", e.Path, err), nil
		}
	}
	buf := make([]byte, chunkSize)
	lim := newLimiter(rate)
	for _, e := range files {
		c.SetWriteDeadline(time.Now().Add(ioTimeout))
		f, cur, err := mailtree.Open(root, e)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("mailbox move: a file cannot be sent", "path", filepath.Join(root, e.Path), "err", err)
			}
			if err := sendJSON(st, kindFile, fileHeader{Entry: e, Missing: true}); err != nil {
				return Response{}, err
			}
			continue
		}
		err = s.sendFile(st, f, cur, buf, lim)
		f.Close()
		if err != nil {
			return Response{}, err
		}
	}
	return Response{OK: true}, nil
}

func (s *Server) sendFile(st *pwproto.Stream, f *os.File, e mailtree.Entry, buf []byte, lim *limiter) error {
	if err := sendJSON(st, kindFile, fileHeader{Entry: e}); err != nil {
		return err
	}
	hr := mailtree.NewHashReader(io.LimitReader(f, e.Size))
	for {
		n, err := io.ReadFull(hr, buf[:min(len(buf), lim.chunk())])
		if n > 0 {
			lim.wait(int64(n))
			if err := st.Send(kindData, buf[:n]); err != nil {
				return err
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			// A read error mid-file: a short body, which the target
			// refuses (the size no longer matches); the move fails and
			// says so rather than copying a damaged message.
			s.log.Error("mailbox move: reading a message failed", "path", f.Name(), "err", err)
			break
		}
	}
	return sendJSON(st, kindFileEnd, fileEnd{Sum: hr.Sum()})
}

// readMarker is the marker's text, "" when there is none. It does not
// follow a symbolic link: the marker is ours, and a link planted in its
// place must not make status read another file.
func readMarker(root string) string {
	f, err := os.OpenFile(filepath.Join(root, mailbox.MovingMarker), os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 4096))
	return string(trimNL(b))
}

// writeMarker replaces the marker's text durably.
func writeMarker(root, text string) error {
	tmp := filepath.Join(root, mailbox.MovingMarker+".new")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("writing the move marker in %s: %w", root, err)
	}
	_, err = f.WriteString(text + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(root, mailbox.MovingMarker))
	}
	if err == nil {
		err = syncDir(root)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing the move marker in %s: %w", root, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// freeze writes the marker, then waits until nothing that began before it
// can still change the Maildir: this process's deliveries, pop3d's
// session (its lock) and every folder's mailstore change (their locks).
// Each of them checks the marker after taking its lock. Past the
// profile's freeze_timeout the marker is removed and the move refused.
func (s *Server) freeze(user, root, to string) error {
	if mk := readMarker(root); strings.HasPrefix(mk, "moved") {
		return fmt.Errorf("%s's mailbox here was already moved (%s)", user, mk)
	}
	// A user who never received mail has no Maildir: make the root so
	// that the marker also stops the first delivery.
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", root, err)
	}
	if err := writeMarker(root, fmt.Sprintf("frozen for a move to %s since %s", to, s.cfg.Now().UTC().Format(time.RFC3339))); err != nil {
		return err
	}
	timeout := s.cfg.Profile.Cluster.Moves.FreezeTimeout.Std()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := s.cfg.Gate.Wait(ctx, user)
	if err == nil {
		err = waitLock(ctx, filepath.Join(root, pop3Lock), "a POP3 session")
	}
	if err == nil {
		err = s.waitFolders(ctx, root)
	}
	if err != nil {
		if terr := s.thaw(root); terr != nil {
			s.log.Error("mailbox move: thawing after a failed freeze failed", "user", user, "err", terr)
		}
		return fmt.Errorf("freezing %s's mailbox: %w (cluster.moves.freeze_timeout is %s); the mailbox is in use again", user, err, timeout)
	}
	return nil
}

// The lock files the freeze waits on: pop3d's session lock
// (pop3.LockFileName) and src/mailstore's per-folder lock. Named here so
// that pdeliveryd does not link the servers in; a test holds them equal.
const (
	pop3Lock      = "correo-pop3.lock"
	mailstoreLock = "correo-mailstore.lock"
)

// waitFolders takes every folder's mailstore lock once: INBOX's in the
// root, each Maildir++ folder's in its directory.
func (s *Server) waitFolders(ctx context.Context, root string) error {
	dirs := []string{root}
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), ".") && e.Name() != "." && e.Name() != ".." {
			dirs = append(dirs, filepath.Join(root, e.Name()))
		}
	}
	for _, d := range dirs {
		if err := waitLock(ctx, filepath.Join(d, mailstoreLock), "an IMAP change"); err != nil {
			return err
		}
	}
	return nil
}

// waitLock takes path's flock exclusively once, then lets it go. A lock
// file that does not exist has no holder.
func waitLock(ctx context.Context, path, holder string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s still holds %s", holder, path)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// thaw removes the marker of a move that did not finish. A copy already
// marked moved stays frozen: the user's mailbox lives elsewhere now.
func (s *Server) thaw(root string) error {
	path := filepath.Join(root, mailbox.MovingMarker)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if mk := readMarker(root); strings.HasPrefix(mk, "moved") {
		return fmt.Errorf("this copy was already moved (%s): thawing it would serve the mailbox from two hosts", mk)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(root)
}

// retire marks the copy moved, so it stays frozen, and records it for
// the janitor, which deletes it after cluster.moves.grace.
func (s *Server) retire(user, root, to string) error {
	now := s.cfg.Now().UTC()
	if _, err := os.Stat(root); err != nil {
		return fmt.Errorf("%s's mailbox is not here: %w", user, err)
	}
	if err := writeMarker(root, fmt.Sprintf("moved to %s at %s", to, now.Format(time.RFC3339))); err != nil {
		return err
	}
	out := filepath.Join(s.movesDir(), "out")
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, user), []byte(now.Format(time.RFC3339)+" "+to+"\n"), 0o600)
}
