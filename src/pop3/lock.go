package pop3

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// LockFileName is the file in a Maildir that pop3d flocks while a session
// holds the mailbox. Maildir readers ignore files outside tmp/, new/ and
// cur/.
const LockFileName = "correo-pop3.lock"

// locks excludes concurrent sessions on one mailbox. The in-process set
// covers mailboxes whose Maildir does not exist yet (nothing to flock);
// the flock covers other pop3d processes on the same host. A flock dies
// with the process, so a crash leaves no stale lock behind.
type locks struct {
	mu   sync.Mutex
	held map[string]bool
}

// errInUse: another session holds the mailbox.
var errInUse = errors.New("mailbox in use")

// acquire locks the mailbox of user at maildir; release undoes it.
func (l *locks) acquire(user, maildir string) (release func(), err error) {
	l.mu.Lock()
	if l.held == nil {
		l.held = map[string]bool{}
	}
	if l.held[user] {
		l.mu.Unlock()
		return nil, errInUse
	}
	l.held[user] = true
	l.mu.Unlock()
	unhold := func() {
		l.mu.Lock()
		delete(l.held, user)
		l.mu.Unlock()
	}
	f, err := os.OpenFile(filepath.Join(maildir, LockFileName), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		// No Maildir yet: an empty mailbox, nothing another process
		// could delete.
		return unhold, nil
	}
	if err != nil {
		unhold()
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		unhold()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errInUse
		}
		return nil, err
	}
	return func() {
		f.Close() // closing releases the flock
		unhold()
	}, nil
}
