package pop3

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"correo/src/mailbox"
)

// movingPollInterval is how often a logged-in session looks for the moving
// marker (a Server takes the value New finds). The mover waits for the
// session lock after writing it, so this (plus the final reply's write)
// is how long a move waits for POP.
var movingPollInterval = 300 * time.Millisecond

// Replies of a mailbox frozen for a move (mailbox.MovingMarker).
const (
	replyMovingLogin = "-ERR [IN-USE] Mailbox is being moved to another server, try again in a minute."
	replyMovedEnd    = "-ERR [SYS/TEMP] Mailbox moved to another server; no changes were made."
	replyMovingQuit  = "-ERR [SYS/TEMP] Mailbox is being moved; no messages were deleted."
)

// watchMoving looks for the marker every interval while the session
// holds the mailbox. It is a timer, not a goroutine: between looks a
// session costs a runtime timer and nothing else. On seeing the marker it
// sets moving and puts the read deadline in the past, which wakes a
// session waiting for a command; one that is sending a message goes on
// (its writes have their own deadline) and notices moving when the
// command ends. stop may be called more than once; after it returns,
// conn is not touched again.
func watchMoving(maildir string, interval time.Duration, conn net.Conn, moving *atomic.Bool) (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	look := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if mailbox.Moving(maildir) {
			moving.Store(true)
			conn.SetReadDeadline(time.Now())
			return
		}
		t.Reset(interval)
	}
	mu.Lock()
	t = time.AfterFunc(interval, look)
	mu.Unlock()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// endMoved ends a session whose mailbox is being moved, before anything
// else is read or applied. The line is best effort: a client that does
// not read must not hold the lock the mover is waiting for.
func (ss *session) endMoved() {
	ss.result = "mailbox moved"
	ss.s.log.Info("session ended: the mailbox is being moved", "trace", ss.trace, "user", ss.name)
	ss.conn.SetWriteDeadline(time.Now().Add(time.Second))
	ss.reply(replyMovedEnd)
	ss.bw.Flush()
}

// unlock stops the marker watch and releases the mailbox.
func (ss *session) unlock() {
	if ss.stopWatch != nil {
		ss.stopWatch()
		ss.stopWatch = nil
	}
	if ss.release != nil {
		ss.release()
		ss.release = nil
	}
}
