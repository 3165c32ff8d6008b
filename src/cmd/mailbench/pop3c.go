package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// StatusError is a POP3 -ERR or an IMAP NO/BAD: the server refused a
// command.
type StatusError struct {
	Proto  string // "pop3" or "imap"
	Cmd    string
	Status string // "-ERR", "NO", "BAD"
	Text   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s refused: %s %s", e.Proto, e.Cmd, e.Status, e.Text)
}

// maxMessageLine bounds one line of a message: a message may carry long
// lines, but not without end.
const maxMessageLine = 1 << 20

// parsePOPStatus reads "+OK text" or "-ERR text".
func parsePOPStatus(line string) (ok bool, text string, err error) {
	switch {
	case line == "+OK" || strings.HasPrefix(line, "+OK "):
		return true, strings.TrimPrefix(strings.TrimPrefix(line, "+OK"), " "), nil
	case line == "-ERR" || strings.HasPrefix(line, "-ERR "):
		return false, strings.TrimPrefix(strings.TrimPrefix(line, "-ERR"), " "), nil
	}
	return false, "", &ProtocolError{fmt.Sprintf("POP3 status line %q is neither +OK nor -ERR", trunc(line))}
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// parseListLine reads a LIST line, "msg size".
func parseListLine(line string) (n int, size int64, err error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0, 0, &ProtocolError{fmt.Sprintf("LIST line %q is not \"number size\"", trunc(line))}
	}
	n, err1 := strconv.Atoi(f[0])
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || n < 1 || size < 0 {
		return 0, 0, &ProtocolError{fmt.Sprintf("LIST line %q is not \"number size\"", trunc(line))}
	}
	return n, size, nil
}

type pop3Conn struct {
	conn    net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
}

func dialPOP3(ctx context.Context, addr string, timeout time.Duration, stls *tls.Config) (*pop3Conn, error) {
	dl := net.Dialer{Timeout: timeout}
	conn, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &pop3Conn{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn), timeout: timeout}
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := c.status("greeting"); err != nil {
		conn.Close()
		return nil, err
	}
	if stls != nil {
		if _, err := c.cmd("STLS", "STLS"); err != nil {
			conn.Close()
			return nil, err
		}
		tc := tls.Client(conn, forAddr(stls, addr))
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS with %s: %w", addr, err)
		}
		c.conn, c.r, c.w = tc, bufio.NewReader(tc), bufio.NewWriter(tc)
	}
	return c, nil
}

func (c *pop3Conn) status(cmd string) (string, error) {
	line, err := readLine(c.r, maxReplyLine)
	if err != nil {
		return "", err
	}
	ok, text, err := parsePOPStatus(line)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", &StatusError{"pop3", cmd, "-ERR", text}
	}
	return text, nil
}

// cmd sends a command; name is what an error calls it (never the
// password).
func (c *pop3Conn) cmd(name, line string) (string, error) {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	c.w.WriteString(line + "\r\n")
	if err := c.w.Flush(); err != nil {
		return "", err
	}
	return c.status(name)
}

// multi reads a multi-line answer to its terminating dot, giving each
// line (dot-unstuffed) to each, and returns the bytes read.
func (c *pop3Conn) multi(each func(string) error) (int64, error) {
	return readMultiline(c.r, each)
}

func readMultiline(r *bufio.Reader, each func(string) error) (int64, error) {
	var n int64
	for {
		line, err := readLine(r, maxMessageLine)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if line == "." {
			return n, nil
		}
		line = strings.TrimPrefix(line, ".")
		n += int64(len(line)) + 2
		if each != nil {
			if err := each(line); err != nil {
				return n, err
			}
		}
	}
}

// session runs one POP3 session as a mail client does: log in, STAT,
// LIST, RETR the first retr messages, DELE them when dele, QUIT (which
// commits the deletions).
func (c *pop3Conn) session(user, password string, retr int, dele bool) (int64, error) {
	if _, err := c.cmd("USER", "USER "+user); err != nil {
		return 0, err
	}
	if _, err := c.cmd("PASS", "PASS "+password); err != nil {
		return 0, err
	}
	if _, err := c.cmd("STAT", "STAT"); err != nil {
		return 0, err
	}
	if _, err := c.cmd("LIST", "LIST"); err != nil {
		return 0, err
	}
	var msgs []int
	if _, err := c.multi(func(l string) error {
		n, _, err := parseListLine(l)
		msgs = append(msgs, n)
		return err
	}); err != nil {
		return 0, err
	}
	var bytes int64
	for i := 0; i < retr && i < len(msgs); i++ {
		if _, err := c.cmd("RETR", "RETR "+strconv.Itoa(msgs[i])); err != nil {
			return bytes, err
		}
		n, err := c.multi(nil)
		bytes += n
		if err != nil {
			return bytes, err
		}
		if dele {
			if _, err := c.cmd("DELE", "DELE "+strconv.Itoa(msgs[i])); err != nil {
				return bytes, err
			}
		}
	}
	_, err := c.cmd("QUIT", "QUIT")
	return bytes, err
}

func (c *pop3Conn) Close() error { return c.conn.Close() }
