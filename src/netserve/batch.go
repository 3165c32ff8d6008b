package netserve

import (
	"net"
	"sync"
	"syscall"
	"time"
)

// batchLimit is how much a batching connection holds before it writes
// anyway: far above any burst of replies, far below a memory concern.
const batchLimit = 32 << 10

// BatchReplies wraps a listener so that what a server writes on a
// connection waits until the server next reads from it, or closes it.
// Replies to pipelined commands (RFC 2920, and LMTP's MAIL, RCPT, DATA)
// then leave in one write and one segment, where a server that flushes
// after every reply line, as go-smtp does, makes a system call for each.
// A reply is never held back waiting for the peer: a server that has
// answered either reads next (and the read sends the replies first) or
// closes (and so does the close).
//
// Only for request-reply protocols whose server never writes and then
// waits for something other than the peer: a write is otherwise delayed
// until the next read. A failed write is reported by the next Write,
// Read or Close.
func BatchReplies(ln net.Listener) net.Listener { return batchListener{ln} }

type batchListener struct{ net.Listener }

func (l batchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Batch(c), nil
}

// Batch is BatchReplies for one connection.
func Batch(c net.Conn) net.Conn { return &batchConn{Conn: c} }

type batchConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
	err error // the write that failed, returned from then on
}

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= batchLimit {
		c.flushLocked()
	}
	if c.err != nil {
		return 0, c.err
	}
	return len(p), nil
}

func (c *batchConn) flushLocked() {
	if len(c.buf) == 0 || c.err != nil {
		return
	}
	_, c.err = c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	if cap(c.buf) > batchLimit {
		c.buf = nil // one large reply need not stay allocated
	}
}

// Flush sends what is held.
func (c *batchConn) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
	return c.err
}

func (c *batchConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	held := len(c.buf) > 0 && c.err == nil
	c.mu.Unlock()
	if held {
		// Input that has arrived already is read first: a pipelined
		// transaction larger than the server's read buffer (an LMTP
		// BDAT of 4 KB behind MAIL and RCPT) would otherwise send the
		// replies so far in a segment of their own, and wake the client
		// for a part of its answers.
		if n, ok := c.readReady(p); ok {
			return n, nil
		}
	}
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// readReady reads what the socket holds without waiting; ok is false
// when it holds nothing (or on any error or end of input, which the
// blocking read that follows reports).
func (c *batchConn) readReady(p []byte) (n int, ok bool) {
	sc, isSys := c.Conn.(syscall.Conn)
	if !isSys || len(p) == 0 {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), p)
		return true // never wait here
	})
	if err != nil || rerr != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// SetWriteDeadline and SetDeadline send what is held first when the new
// deadline has passed already: that is how a writer says "no more
// writes" (crypto/tls does it after its close_notify alert), and the
// replies before it must still leave, under the deadline they were
// written with. A deadline in the future holds nothing back.
func (c *batchConn) SetWriteDeadline(t time.Time) error {
	c.flushBefore(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *batchConn) SetDeadline(t time.Time) error {
	c.flushBefore(t)
	return c.Conn.SetDeadline(t)
}

func (c *batchConn) flushBefore(t time.Time) {
	if !t.IsZero() && !t.After(time.Now()) {
		c.Flush()
	}
}

func (c *batchConn) Close() error {
	c.Flush()
	return c.Conn.Close()
}
