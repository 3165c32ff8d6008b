package clustertest

import (
	"fmt"
	"net"
	"net/textproto"
	"testing"
	"time"
)

// TextConn is a raw client for a line protocol (SMTP, LMTP): it sends
// exactly what a test says, well-behaved or not, and reads replies by
// textproto's rules (multi-line replies joined). Conn and TP are there
// for what the methods do not cover (a message body, STARTTLS, reading
// what a server sends before it hangs up).
type TextConn struct {
	T    testing.TB
	Conn net.Conn
	TP   *textproto.Conn
}

// textTimeout bounds every read and write: a server that stops answering
// fails the test instead of hanging it.
const textTimeout = 30 * time.Second

// DialText connects to addr and reads the greeting, which must have code
// greet. The connection is closed when the test ends.
func DialText(t testing.TB, network, addr string, greet int) *TextConn {
	t.Helper()
	conn, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &TextConn{T: t, Conn: conn, TP: textproto.NewConn(conn)}
	c.Expect(greet)
	return c
}

// Reply reads one reply. When none can be read the code is 0 and the text
// says why (a test of a server that hangs up looks for that).
func (c *TextConn) Reply() (int, string) {
	c.T.Helper()
	c.Conn.SetReadDeadline(time.Now().Add(textTimeout))
	code, msg, err := c.TP.ReadResponse(0)
	if err != nil && code == 0 {
		return 0, err.Error()
	}
	return code, msg
}

// Expect reads one reply and fails the test unless it has code.
func (c *TextConn) Expect(code int) string {
	c.T.Helper()
	got, msg := c.Reply()
	if got != code {
		c.T.Fatalf("reply %d %s, want %d", got, msg, code)
	}
	return msg
}

// Line sends one line; a failed write fails the test.
func (c *TextConn) Line(format string, a ...any) {
	c.T.Helper()
	c.Conn.SetWriteDeadline(time.Now().Add(textTimeout))
	if err := c.TP.PrintfLine(format, a...); err != nil {
		c.T.Fatalf("sending %q: %v", fmt.Sprintf(format, a...), err)
	}
}

// Cmd sends one line and reads its reply. A failed write is code 0, as a
// failed read is.
func (c *TextConn) Cmd(format string, a ...any) (int, string) {
	c.T.Helper()
	c.Conn.SetWriteDeadline(time.Now().Add(textTimeout))
	if err := c.TP.PrintfLine(format, a...); err != nil {
		return 0, err.Error()
	}
	return c.Reply()
}

// Want sends one line and fails the test unless the reply has code.
func (c *TextConn) Want(code int, format string, a ...any) string {
	c.T.Helper()
	got, msg := c.Cmd(format, a...)
	if got != code {
		c.T.Fatalf("%s: reply %d %s, want %d", fmt.Sprintf(format, a...), got, msg, code)
	}
	return msg
}
