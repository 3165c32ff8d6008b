package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

// ReplyError is a server's refusal: an SMTP or LMTP reply of 4xx or 5xx
// (or any code the step did not expect).
type ReplyError struct {
	Step string // "MAIL", "RCPT", "DATA", "AUTH", "greeting" ...
	Code int
	Text string
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("%s refused: %d %s", e.Step, e.Code, e.Text)
}

// ProtocolError is an answer mailbench cannot read: the server broke the
// protocol, or the target is not the service it was said to be.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "protocol error: " + e.Msg }

// Limits on what a server may send back, so a broken peer cannot make
// mailbench buffer without bound.
const (
	maxReplyLine  = 4096
	maxReplyLines = 100
)

// readLine reads one line ended by LF (CR removed), at most max bytes.
func readLine(r *bufio.Reader, max int) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > max {
			return "", &ProtocolError{fmt.Sprintf("line longer than %d bytes", max)}
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// parseReplyLine splits "250-text" / "250 text" / "250".
func parseReplyLine(line string) (code int, more bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", &ProtocolError{fmt.Sprintf("reply %q is shorter than a code", line)}
	}
	code, cerr := strconv.Atoi(line[:3])
	if cerr != nil || code < 100 || code > 599 || line[0] == '+' || line[0] == '-' {
		return 0, false, "", &ProtocolError{fmt.Sprintf("reply %q does not start with a three-digit code", line)}
	}
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case '-':
		more = true
	case ' ':
	default:
		return 0, false, "", &ProtocolError{fmt.Sprintf("reply %q: the code is followed by %q", line, line[3])}
	}
	return code, more, line[4:], nil
}

// readReply reads one (possibly multi-line) SMTP reply.
func readReply(r *bufio.Reader) (code int, lines []string, err error) {
	for {
		line, err := readLine(r, maxReplyLine)
		if err != nil {
			return 0, nil, err
		}
		c, more, text, err := parseReplyLine(line)
		if err != nil {
			return 0, nil, err
		}
		if len(lines) > 0 && c != code {
			return 0, nil, &ProtocolError{fmt.Sprintf("multi-line reply changes code from %d to %d", code, c)}
		}
		code = c
		lines = append(lines, text)
		if len(lines) > maxReplyLines {
			return 0, nil, &ProtocolError{fmt.Sprintf("reply of more than %d lines", maxReplyLines)}
		}
		if !more {
			return code, lines, nil
		}
	}
}

// smtpConn is one SMTP session. go-smtp's client waits for every reply
// before the next command and cannot pipeline (RFC 2920), which is one of
// the things to load; so mailbench speaks SMTP itself, as lmtpclient does
// for LMTP, and uses go-sasl for AUTH PLAIN.
type smtpConn struct {
	conn    net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	ext     map[string]string
	timeout time.Duration
	dirty   bool // a refused transaction: RSET before the next
}

type smtpDial struct {
	Addr      string
	Hello     string
	StartTLS  bool        // STARTTLS before AUTH (submission)
	TLS       *tls.Config // for STARTTLS
	User      string      // AUTH PLAIN when set
	Password  string
	PlainAuth bool // AUTH without TLS (a trusted network's dev cluster)
	Timeout   time.Duration
}

func dialSMTP(ctx context.Context, d smtpDial) (*smtpConn, error) {
	dl := net.Dialer{Timeout: d.Timeout}
	conn, err := dl.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, err
	}
	c := &smtpConn{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn), timeout: d.Timeout}
	if err := c.start(d); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *smtpConn) arm() { c.conn.SetDeadline(time.Now().Add(c.timeout)) }

func (c *smtpConn) start(d smtpDial) error {
	c.arm()
	code, lines, err := readReply(c.r)
	if err != nil {
		return fmt.Errorf("reading the greeting of %s: %w", d.Addr, err)
	}
	if code != 220 {
		return &ReplyError{"greeting", code, strings.Join(lines, " ")}
	}
	if err := c.ehlo(d.Hello); err != nil {
		return err
	}
	if d.StartTLS {
		if _, ok := c.ext["STARTTLS"]; !ok {
			if !d.PlainAuth {
				return &ProtocolError{fmt.Sprintf("%s does not offer STARTTLS; pass --plain-auth to send AUTH without TLS (trusted networks only)", d.Addr)}
			}
		} else {
			if err := c.expect("STARTTLS", "STARTTLS", 220); err != nil {
				return err
			}
			tc := tls.Client(c.conn, forAddr(d.TLS, d.Addr))
			if err := tc.HandshakeContext(context.Background()); err != nil {
				return fmt.Errorf("TLS with %s: %w (pass --ca with the cluster's certificate, or --insecure-skip-verify for a test cluster)", d.Addr, err)
			}
			c.conn, c.r, c.w = tc, bufio.NewReader(tc), bufio.NewWriter(tc)
			if err := c.ehlo(d.Hello); err != nil {
				return err
			}
		}
	}
	if d.User != "" {
		_, ir, err := sasl.NewPlainClient("", d.User, d.Password).Start()
		if err != nil {
			return err
		}
		if err := c.expect("AUTH", "AUTH PLAIN "+base64.StdEncoding.EncodeToString(ir), 235); err != nil {
			return err
		}
	}
	return nil
}

func (c *smtpConn) ehlo(hello string) error {
	c.w.WriteString("EHLO " + hello + "\r\n")
	if err := c.w.Flush(); err != nil {
		return err
	}
	code, lines, err := readReply(c.r)
	if err != nil {
		return err
	}
	if code != 250 {
		return &ReplyError{"EHLO", code, strings.Join(lines, " ")}
	}
	c.ext = map[string]string{}
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

func (c *smtpConn) expect(step, cmd string, want int) error {
	c.w.WriteString(cmd + "\r\n")
	if err := c.w.Flush(); err != nil {
		return err
	}
	code, lines, err := readReply(c.r)
	if err != nil {
		return err
	}
	if code != want {
		return &ReplyError{step, code, strings.Join(lines, " ")}
	}
	return nil
}

// send runs one transaction. body is CRLF text with no line starting
// with a dot (mailbench makes its own), so it goes out as is. The first
// refusal is the transaction's error; a refused recipient fails the
// message even when others were accepted.
func (c *smtpConn) send(from string, rcpts []string, body []byte, pipelining bool) error {
	c.arm()
	if c.dirty {
		if err := c.expect("RSET", "RSET", 250); err != nil {
			return err
		}
		c.dirty = false
	}
	_, canPipe := c.ext["PIPELINING"]
	var first error
	note := func(step string, code int, lines []string, want int) {
		if code != want && first == nil {
			first = &ReplyError{step, code, strings.Join(lines, " ")}
		}
	}
	accepted := 0
	dataCode := 0
	if pipelining && canPipe {
		c.w.WriteString("MAIL FROM:<" + from + ">\r\n")
		for _, r := range rcpts {
			c.w.WriteString("RCPT TO:<" + r + ">\r\n")
		}
		c.w.WriteString("DATA\r\n")
		if err := c.w.Flush(); err != nil {
			return err
		}
		code, lines, err := readReply(c.r)
		if err != nil {
			return err
		}
		note("MAIL", code, lines, 250)
		for range rcpts {
			code, lines, err := readReply(c.r)
			if err != nil {
				return err
			}
			note("RCPT", code, lines, 250)
			if code == 250 || code == 251 {
				accepted++
			}
		}
		code, lines, err = readReply(c.r)
		if err != nil {
			return err
		}
		dataCode = code
		note("DATA", code, lines, 354)
	} else {
		if err := c.expect("MAIL", "MAIL FROM:<"+from+">", 250); err != nil {
			c.dirty = true
			return err
		}
		for _, r := range rcpts {
			err := c.expect("RCPT", "RCPT TO:<"+r+">", 250)
			var re *ReplyError
			if err != nil && !errors.As(err, &re) {
				return err
			}
			if err == nil {
				accepted++
			} else if first == nil {
				first = err
			}
		}
		if accepted == 0 {
			c.dirty = true
			return first
		}
		c.w.WriteString("DATA\r\n")
		if err := c.w.Flush(); err != nil {
			return err
		}
		code, lines, err := readReply(c.r)
		if err != nil {
			return err
		}
		dataCode = code
		note("DATA", code, lines, 354)
	}
	if dataCode == 354 {
		if accepted > 0 {
			c.w.Write(body)
		}
		c.w.WriteString(".\r\n")
		if err := c.w.Flush(); err != nil {
			return err
		}
		code, lines, err := readReply(c.r)
		if err != nil {
			return err
		}
		note("end of data", code, lines, 250)
	}
	if first != nil {
		c.dirty = true
	}
	return first
}

func (c *smtpConn) Close() error {
	c.conn.SetDeadline(time.Now().Add(time.Second))
	c.w.WriteString("QUIT\r\n")
	if c.w.Flush() == nil {
		readReply(c.r)
	}
	return c.conn.Close()
}

// forAddr is cfg for a connection to addr: mailbench dials the address it
// checked, not a name, so the certificate is verified against that
// address (the cluster's certificates carry their hosts' addresses).
func forAddr(cfg *tls.Config, addr string) *tls.Config {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName != "" {
		return cfg
	}
	c := cfg.Clone()
	c.ServerName, _, _ = net.SplitHostPort(addr)
	return c
}
