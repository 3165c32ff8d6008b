package mailmove

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"correo/src/mailbox"
)

// Sweep deletes the copies of mailboxes moved away more than the
// profile's cluster.moves.grace ago, and what is left in the trash.
// pdeliveryd runs it at start and every hour. A copy is deleted only if
// its marker still says moved: a user moved back here since has a live
// Maildir, which commit made without the marker.
func (s *Server) Sweep() (removed int, err error) {
	out := filepath.Join(s.movesDir(), "out")
	entries, err := os.ReadDir(out)
	if errors.Is(err, fs.ErrNotExist) {
		entries = nil
	} else if err != nil {
		return 0, err
	}
	grace := s.cfg.Profile.Cluster.Moves.Grace.Std()
	now := s.cfg.Now()
	for _, e := range entries {
		user := e.Name()
		if n, err := mailbox.NormalizeName(user); err != nil || n != user {
			continue
		}
		if s.sweepOne(out, user, now, grace) {
			removed++
		}
	}
	trash := filepath.Join(s.movesDir(), "trash")
	if t, err := os.ReadDir(trash); err == nil {
		for _, e := range t {
			os.RemoveAll(filepath.Join(trash, e.Name()))
		}
	}
	return removed, nil
}

// sweepOne deletes user's moved copy if its grace is over. The record is
// read under the user's hold, so a move back and away again cannot slip
// in between and have its new copy deleted early.
func (s *Server) sweepOne(out, user string, now time.Time, grace time.Duration) bool {
	release, err := s.hold(user, "sweep")
	if err != nil {
		return false // a move of the user is in progress: next sweep
	}
	defer release()
	b, err := os.ReadFile(filepath.Join(out, user))
	if err != nil {
		return false
	}
	when, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	t, err := time.Parse(time.RFC3339, when)
	if err != nil || now.Sub(t) < grace {
		return false
	}
	removed := false
	if root, err := s.scheme.MaildirPath(s.dataDir, user); err == nil && strings.HasPrefix(readMarker(root), "moved") {
		if err := s.trash(root); err != nil {
			s.log.Error("mailbox move: deleting a moved mailbox failed", "user", user, "path", root, "err", err)
			return false
		}
		os.Remove(filepath.Dir(root)) // the home, when nothing else is in it
		removed = true
		s.log.Info("deleted a moved mailbox after its grace period", "user", user, "path", root, "moved", when)
	}
	os.Remove(filepath.Join(out, user))
	return removed
}
