package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// maxLiteral bounds one literal in a server's answer (a FETCHed message).
const maxLiteral = 256 << 20

// imapResp is one server response with its literals counted, not kept:
// mailbench only needs to know what kind of answer it was.
type imapResp struct {
	Tag    string // "*", "+" or the command's tag
	Status string // OK, NO, BAD, BYE, PREAUTH for status responses
	Text   string // the rest of the first line, literals removed
	Bytes  int64  // literal bytes read
}

// literalSize returns n when line ends with {n} or {n+}.
func literalSize(line string) (int64, bool, error) {
	if !strings.HasSuffix(line, "}") {
		return 0, false, nil
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, nil
	}
	num := strings.TrimSuffix(line[i+1:len(line)-1], "+")
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, false, &ProtocolError{fmt.Sprintf("literal size %q", trunc(line[i:]))}
	}
	if n > maxLiteral {
		return 0, false, &ProtocolError{fmt.Sprintf("literal of %d bytes, over the %d mailbench reads", n, maxLiteral)}
	}
	return n, true, nil
}

// readIMAP reads one response: a line, and for every literal announced
// at a line's end the literal's bytes and the line that follows.
func readIMAP(r *bufio.Reader) (imapResp, error) {
	var resp imapResp
	var first string
	for part := 0; ; part++ {
		line, err := readLine(r, maxReplyLine)
		if err != nil {
			return resp, err
		}
		if part == 0 {
			first = line
		}
		n, ok, err := literalSize(line)
		if err != nil {
			return resp, err
		}
		if !ok {
			break
		}
		if _, err := io.CopyN(io.Discard, r, n); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return resp, err
		}
		resp.Bytes += n
		if part > 1000 {
			return resp, &ProtocolError{"more than 1000 literals in one response"}
		}
	}
	tag, rest, _ := strings.Cut(first, " ")
	if tag == "" {
		return resp, &ProtocolError{fmt.Sprintf("IMAP response %q has no tag", trunc(first))}
	}
	resp.Tag, resp.Text = tag, rest
	if tag == "+" {
		return resp, nil
	}
	word, text, _ := strings.Cut(rest, " ")
	switch w := strings.ToUpper(word); w {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		resp.Status, resp.Text = w, text
	}
	if tag != "*" && resp.Status == "" {
		return resp, &ProtocolError{fmt.Sprintf("tagged response %q has no OK, NO or BAD", trunc(first))}
	}
	return resp, nil
}

// exists reads "n EXISTS" from an untagged response's text.
func exists(text string) (int, bool) {
	n, rest, _ := strings.Cut(text, " ")
	if !strings.EqualFold(rest, "EXISTS") {
		return 0, false
	}
	v, err := strconv.Atoi(n)
	return v, err == nil && v >= 0
}

// quoteIMAP makes an IMAP quoted string.
func quoteIMAP(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

type imapConn struct {
	conn    net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
	tag     int
	exists  int
}

func dialIMAP(ctx context.Context, addr string, timeout time.Duration, stls *tls.Config) (*imapConn, error) {
	dl := net.Dialer{Timeout: timeout}
	conn, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &imapConn{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn), timeout: timeout}
	conn.SetDeadline(time.Now().Add(timeout))
	g, err := readIMAP(c.r)
	if err == nil && (g.Tag != "*" || g.Status != "OK" && g.Status != "PREAUTH") {
		err = &StatusError{"imap", "greeting", g.Status, g.Text}
	}
	if err == nil && stls != nil {
		if _, err = c.do("STARTTLS", "STARTTLS"); err == nil {
			tc := tls.Client(conn, forAddr(stls, addr))
			if err = tc.HandshakeContext(ctx); err == nil {
				c.conn, c.r, c.w = tc, bufio.NewReader(tc), bufio.NewWriter(tc)
			}
		}
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// do sends a tagged command and reads to its tagged reply; name is what
// an error calls it (never the password). It returns the literal bytes
// read.
func (c *imapConn) do(name, args string) (int64, error) {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	c.tag++
	tag := "m" + strconv.Itoa(c.tag)
	c.w.WriteString(tag + " " + args + "\r\n")
	if err := c.w.Flush(); err != nil {
		return 0, err
	}
	var bytes int64
	for {
		resp, err := c.readUntagged()
		bytes += resp.Bytes
		if err != nil {
			return bytes, err
		}
		if resp.Tag == tag {
			if resp.Status != "OK" {
				return bytes, &StatusError{"imap", name, resp.Status, resp.Text}
			}
			return bytes, nil
		}
	}
}

// readUntagged reads a response and notes what it says about the mailbox.
func (c *imapConn) readUntagged() (imapResp, error) {
	resp, err := readIMAP(c.r)
	if err != nil {
		return resp, err
	}
	if resp.Tag == "*" {
		if n, ok := exists(resp.Text); ok {
			c.exists = n
		}
		if resp.Status == "BYE" {
			return resp, &StatusError{"imap", "session", "BYE", resp.Text}
		}
	}
	return resp, nil
}

// session runs LOGIN, SELECT INBOX, a FETCH of the first fetch messages'
// bodies, IDLE for idle (0: none), LOGOUT.
func (c *imapConn) session(user, password string, fetch int, idle time.Duration) (int64, error) {
	if _, err := c.do("LOGIN", "LOGIN "+quoteIMAP(user)+" "+quoteIMAP(password)); err != nil {
		return 0, err
	}
	if _, err := c.do("SELECT", "SELECT INBOX"); err != nil {
		return 0, err
	}
	var bytes int64
	if n := min(fetch, c.exists); n > 0 {
		b, err := c.do("FETCH", fmt.Sprintf("FETCH 1:%d (RFC822.SIZE BODY.PEEK[])", n))
		bytes += b
		if err != nil {
			return bytes, err
		}
	}
	if idle > 0 {
		if err := c.idle(idle); err != nil {
			return bytes, err
		}
	}
	if _, err := c.do("LOGOUT", "LOGOUT"); err != nil {
		var se *StatusError
		if !(errors.As(err, &se) && se.Status == "BYE") {
			return bytes, err
		}
	}
	return bytes, nil
}

// idle enters IDLE, stays for d (what a mail client does between
// checks), and leaves it with DONE.
func (c *imapConn) idle(d time.Duration) error {
	c.conn.SetDeadline(time.Now().Add(c.timeout + d))
	c.tag++
	tag := "m" + strconv.Itoa(c.tag)
	c.w.WriteString(tag + " IDLE\r\n")
	if err := c.w.Flush(); err != nil {
		return err
	}
	for {
		resp, err := c.readUntagged()
		if err != nil {
			return err
		}
		if resp.Tag == "+" {
			break
		}
		if resp.Tag == tag {
			return &StatusError{"imap", "IDLE", resp.Status, resp.Text}
		}
	}
	// Updates during IDLE are read by the kernel's buffer meanwhile;
	// what matters for load is the session held open.
	time.Sleep(d)
	c.w.WriteString("DONE\r\n")
	if err := c.w.Flush(); err != nil {
		return err
	}
	for {
		resp, err := c.readUntagged()
		if err != nil {
			return err
		}
		if resp.Tag == tag {
			if resp.Status != "OK" {
				return &StatusError{"imap", "IDLE", resp.Status, resp.Text}
			}
			return nil
		}
	}
}

func (c *imapConn) Close() error { return c.conn.Close() }
