package mailbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// MovingMarker is the file in a Maildir's root that freezes the mailbox
// while it is being moved to another storage host (correoctl mailbox
// move). Every program that changes a Maildir checks for it after taking
// its own lock and changes nothing while it is there: pdeliveryd answers
// 451, pop3d and imapd refuse logins and end their sessions without
// applying anything. The mover writes it, then takes each of those locks
// once, so that every change that began before the marker has ended and
// every later one sees it. It is never copied to the target.
const MovingMarker = "correo-moving"

// ErrMoving is returned for a change refused because the mailbox is
// frozen for a move.
var ErrMoving = errors.New("mailbox is being moved to another storage host")

// Moving reports whether the Maildir at root is frozen for a move. A
// Maildir that does not exist is not, and neither is one whose marker
// cannot be looked up (not a directory, no permission): the change that
// asked fails on the same path with its own, truer, error.
func Moving(root string) bool {
	_, err := os.Lstat(filepath.Join(root, MovingMarker))
	return err == nil
}

// CheckNotMoving is Moving as an error for the change's caller.
func CheckNotMoving(root string) error {
	if Moving(root) {
		return fmt.Errorf("%s: %w", root, ErrMoving)
	}
	return nil
}
