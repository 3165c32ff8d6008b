package imap

import (
	"sync/atomic"
	"time"

	"correo/src/mailbox"
)

// Answers for a mailbox frozen while it is moved to another storage host
// (mailbox.MovingMarker). RFC 9051 has no code for "moved"; UNAVAILABLE
// ("temporary failure because a subsystem is down") is the closest for
// the BYE, since the client should simply reconnect, and the proxy will
// then route it to the new host. INUSE (RFC 5530: in use by another
// session) is the login's, as pop3d's [IN-USE].
const (
	textMovingLogin = "Mailbox is being moved to another server, try again in a minute."
	textMovedBye    = "Mailbox moved to another server; reconnect."
)

// testNoMovingWatch lets a test see what a command does when it, not the
// watch, is the first to meet the marker.
var testNoMovingWatch atomic.Bool

// watchMoving makes the session end soon after the marker appears. The
// store's WatchMoving costs no goroutine per session (one inotify watch
// per mailbox, events for the marker's name only), so 10 000 idle
// sessions pay a small struct each. The callback only sets the flag and
// puts the read deadline in the past: that wakes a session waiting for a
// command or in IDLE; one in the middle of a command sees the flag when
// the command ends. It reports false, with the watch stopped, if the
// marker was already there.
func (ss *session) watchMoving() bool {
	conn, root := ss.conn, ss.root
	if testNoMovingWatch.Load() {
		return !mailbox.Moving(root)
	}
	ss.stopMoving = ss.store.WatchMoving(func() {
		if mailbox.Moving(root) {
			ss.moving.Store(true)
			conn.SetReadDeadline(time.Now())
		}
	})
	if mailbox.Moving(root) {
		ss.stopWatch()
		return false
	}
	return true
}

func (ss *session) stopWatch() {
	if ss.stopMoving != nil {
		ss.stopMoving()
		ss.stopMoving = nil
	}
}

// setReadDeadline sets the read deadline for the next command, unless the
// mailbox is being moved: the watch may have put it in the past just
// before, and that must not be undone.
func (ss *session) setReadDeadline(t time.Time) {
	ss.conn.SetReadDeadline(t)
	if ss.moving.Load() {
		ss.conn.SetReadDeadline(time.Now())
	}
}

// byeMoved ends the session of a mailbox being moved; true, for
// dispatch's "done".
func (ss *session) byeMoved() bool {
	if ss.result != "mailbox moved" {
		ss.s.log.Info("session ended: the mailbox is being moved", "trace", ss.trace, "user", ss.user.Name)
	}
	ss.result = "mailbox moved"
	// Best effort: a client that does not read must not keep the session.
	ss.conn.SetWriteDeadline(time.Now().Add(time.Second))
	ss.w.Tagged("*", "BYE", "UNAVAILABLE", textMovedBye)
	ss.state = stateLogout
	return true
}
