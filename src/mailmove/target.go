package mailmove

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"correo/src/cluster"
	"correo/src/mailbox"
	"correo/src/mailtree"
	"correo/src/pwproto"
)

// peer dials the source host's mailbox_move port.
func (s *Server) peer(from string) (*Client, error) {
	if from == s.cfg.Host.Name {
		return nil, fmt.Errorf("the source %s is this host", from)
	}
	addr, err := s.cfg.Profile.Listen(from, cluster.SvcMailboxMove)
	if err != nil {
		return nil, fmt.Errorf("source host: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	return Dial(ctx, addr.String(), s.cfg.Ring)
}

// sourceManifest connects to the source and fetches the manifest of
// user's Maildir there; the caller closes the connection.
func (s *Server) sourceManifest(user, from string) (*Client, *mailtree.Manifest, error) {
	src, err := s.peer(from)
	if err != nil {
		return nil, nil, err
	}
	m, err := src.manifest(user)
	if err != nil {
		src.Close()
		return nil, nil, fmt.Errorf("the manifest of %s's mailbox on %s: %w", user, from, err)
	}
	return src, m, nil
}

// pull brings the stage up to the source's Maildir: removals first (a
// path that changed kind is in both lists), then directories, then the
// files in batches; Sync makes it durable. Progress goes to correoctl on
// st a few times a second.
func (s *Server) pull(c net.Conn, st *pwproto.Stream, user, from string, rate int64) (Pass, error) {
	start := time.Now()
	var pass Pass
	src, m, err := s.sourceManifest(user, from)
	if err != nil {
		return pass, err
	}
	defer src.Close()
	stage, err := mailtree.OpenStage(s.stagePath(user))
	if err != nil {
		return pass, err
	}
	synced := false
	defer func() {
		// A pass cut short (the source went away) keeps what it copied:
		// a stage left unsynced is emptied when next opened.
		if !synced {
			stage.Sync()
		}
		stage.Close()
	}()
	have, err := stage.Manifest()
	if err != nil {
		return pass, err
	}
	fetch, remove := mailtree.Diff(m, have)
	for _, e := range m.Entries {
		pass.Total += e.Size
	}
	for _, e := range remove {
		if err := stage.Remove(e); err != nil {
			return pass, err
		}
		pass.Removed++
	}
	var files []mailtree.Entry
	prog := Progress{}
	for _, e := range fetch {
		if e.Dir {
			if err := stage.Put(e, nil, nil); err != nil {
				return pass, err
			}
			continue
		}
		files = append(files, e)
		prog.TotalFiles++
		prog.TotalBytes += e.Size
	}
	lastProgress := time.Now()
	for len(files) > 0 {
		batch := files[:min(len(files), fetchBatch)]
		files = files[len(batch):]
		err := src.fetch(user, batch, rate, stage, func(n int64, done bool) error {
			prog.Bytes += n
			pass.Bytes += n
			if done {
				prog.Files++
				pass.Files++
			}
			if time.Since(lastProgress) > 250*time.Millisecond {
				lastProgress = time.Now()
				c.SetWriteDeadline(time.Now().Add(ioTimeout))
				// correoctl gone (killed, say): stop copying, so that
				// its -resume finds the user free.
				if err := sendJSON(st, kindProgress, prog); err != nil {
					return fmt.Errorf("correoctl went away: %w", err)
				}
			}
			return nil
		})
		if err != nil {
			return pass, fmt.Errorf("copying from %s: %w", from, err)
		}
	}
	synced = true
	if err := stage.Sync(); err != nil {
		return pass, err
	}
	pass.Took = time.Since(start)
	return pass, nil
}

// verify compares the stage with the source's manifest now (the source
// is frozen by then, so the manifest is final).
func (s *Server) verify(user, from string) (Pass, error) {
	start := time.Now()
	var pass Pass
	src, m, err := s.sourceManifest(user, from)
	if err != nil {
		return pass, err
	}
	defer src.Close()
	stage, err := mailtree.OpenStage(s.stagePath(user))
	if err != nil {
		return pass, err
	}
	defer stage.Close()
	have, err := stage.Manifest()
	if err != nil {
		return pass, err
	}
	if err := mailtree.Verify(m, have); err != nil {
		return pass, fmt.Errorf("the copy of %s's mailbox differs from %s's: %w", user, from, err)
	}
	for _, e := range m.Entries {
		if !e.Dir {
			pass.Files++
			pass.Bytes += e.Size
		}
	}
	pass.Total = pass.Bytes
	pass.Took = time.Since(start)
	return pass, nil
}

// commit makes the stage the user's Maildir. A copy left here by an
// earlier move away (marked moved) is put in the trash first; any other
// Maildir is the user's live mail and is never overwritten. Committing
// again after success is a no-op, so -resume may repeat it.
func (s *Server) commit(user, root string) error {
	stage := s.stagePath(user)
	if _, err := os.Stat(stage); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(root); err == nil && !mailbox.Moving(root) {
			return nil // committed before
		}
		return fmt.Errorf("no copy of %s's mailbox is staged here: pull it first", user)
	}
	if _, err := os.Lstat(root); err == nil {
		if !strings.HasPrefix(readMarker(root), "moved") {
			return fmt.Errorf("%s already holds a mailbox of %s at %s that was not moved away; move it aside by hand if it is stale", s.cfg.Host.Name, user, root)
		}
		if err := s.trash(root); err != nil {
			return err
		}
	}
	home := filepath.Dir(root)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", home, err)
	}
	if err := os.Rename(stage, root); err != nil {
		return fmt.Errorf("putting the copy in place: %w", err)
	}
	if err := syncDir(home); err != nil {
		return err
	}
	// The record of an earlier move away is void now that the user is
	// back.
	os.Remove(filepath.Join(s.movesDir(), "out", user))
	return syncDir(filepath.Dir(stage))
}

// trash moves dir out of the way by rename (instant, durable), then
// deletes it in the background.
func (s *Server) trash(dir string) error {
	t := filepath.Join(s.movesDir(), "trash")
	if err := os.MkdirAll(t, 0o700); err != nil {
		return err
	}
	dst := filepath.Join(t, fmt.Sprintf("%s.%d", filepath.Base(filepath.Dir(dir)), time.Now().UnixNano()))
	if err := os.Rename(dir, dst); err != nil {
		return fmt.Errorf("moving %s to the trash: %w", dir, err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return err
	}
	go os.RemoveAll(dst)
	return nil
}
