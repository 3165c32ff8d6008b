package imap

import (
	"errors"
	"net"
	"strings"
	"time"

	"correo/src/imapwire"
)

// idle is IDLE (RFC 2177): updates are pushed as the folder changes until
// the client sends DONE. The watch is the store's (one inotify descriptor
// per process, shared), so an idle session costs a goroutine and buffers.
func (ss *session) idle(cmd *imapwire.Command) bool {
	if len(cmd.Args) != 0 {
		return ss.bad1(cmd, "IDLE takes no arguments.")
	}
	var events <-chan struct{}
	if ss.state == stateSelected {
		ch, stop, err := ss.store.Watch(ss.mb.Name())
		if err != nil {
			return ss.no(cmd, err)
		}
		defer stop()
		events = ch
		// Changes made before IDLE began are announced at once.
		if done := ss.announce(true); done {
			return true
		}
	}
	ss.w.Continue("idling")
	if err := ss.w.Flush(); err != nil {
		return true
	}
	type lineResult struct {
		line string
		err  error
	}
	lines := make(chan lineResult, 1)
	// Autologout still applies: RFC 2177 asks clients to re-issue IDLE
	// within 29 minutes. The marker watch ends IDLE through this deadline
	// too.
	ss.setReadDeadline(time.Now().Add(ss.s.cfg.Limits.IdleTimeout))
	go func() {
		l, err := ss.r.ReadLine()
		lines <- lineResult{l, err}
	}()
	for {
		select {
		case <-events:
			if done := ss.announce(true); done {
				return true
			}
			ss.conn.SetWriteDeadline(time.Now().Add(time.Minute))
			if err := ss.w.Flush(); err != nil {
				ss.conn.Close()
				<-lines
				return true
			}
		case r := <-lines:
			if ss.moving.Load() {
				// Even after DONE: the next command would be refused.
				return ss.byeMoved()
			}
			if r.err != nil {
				var ne net.Error
				if errors.As(r.err, &ne) && ne.Timeout() {
					ss.result = "timeout"
					ss.w.Tagged("*", "BYE", "", "Autologout: idle for too long.")
				}
				return true
			}
			if !strings.EqualFold(strings.TrimSpace(r.line), "DONE") {
				ss.w.Tagged(cmd.Tag, "BAD", "", "Expected DONE to end IDLE.")
				return ss.tooBadEnd()
			}
			ss.w.Tagged(cmd.Tag, "OK", "", "IDLE terminated.")
			return false
		}
	}
}
