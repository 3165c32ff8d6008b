// Package lmtpclient is an LMTP client (RFC 2033) that pipelines
// (RFC 2920): MAIL, every RCPT and DATA go out in one write, and their
// replies are read afterwards. go-smtp's client waits for each reply in
// turn; a queue delivering thousands of small messages a second to its
// storage hosts spent two extra round trips per message that way, each a
// write, a read and a wake-up on both sides. Servers that do not advertise
// PIPELINING get one command at a time.
//
// A message for one recipient, to a server that offers CHUNKING (RFC
// 3030) too, goes as BDAT n LAST in the same write as MAIL and RCPT: the
// whole transaction is one write and one read, and the message bytes are
// sent as they are, with no dot-stuffing on either side. With one
// recipient the replies cannot be miscounted: after BDAT LAST there is
// exactly one, the recipient's when it was accepted, else the refusal of
// BDAT itself. Several recipients keep DATA, where a failed BDAT would be
// indistinguishable from one recipient's failure.
//
// The caller owns the connection's deadlines (delivery arms one per read
// and write).
package lmtpclient

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
)

// Limits on what a server may send back, so that a broken or hostile peer
// cannot make the client buffer without bound.
const (
	maxLineBytes  = 2048
	maxReplyLines = 100
)

// Reply is one server reply. Text is the reply's lines joined by spaces,
// without the code and without the enhanced status code, which is in
// Enhanced when the server gave one ("2.1.5").
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

// OK reports a 2xx reply.
func (r Reply) OK() bool { return r.Code >= 200 && r.Code < 300 }

func (r Reply) String() string {
	s := strconv.Itoa(r.Code)
	if r.Enhanced != "" {
		s += " " + r.Enhanced
	}
	if r.Text != "" {
		s += " " + r.Text
	}
	return s
}

// ReplyError is a refusal of the session (greeting or LHLO).
type ReplyError struct {
	Command string // "greeting" or "LHLO"
	Reply   Reply
}

func (e *ReplyError) Error() string { return fmt.Sprintf("%s refused: %s", e.Command, e.Reply) }

// Client is one LMTP session. It is not safe for concurrent use.
type Client struct {
	conn       net.Conn
	r          *bufio.Reader
	w          *bufio.Writer
	pipelining bool
	size       bool
	chunking   bool
	broken     error
}

// New reads the server's greeting and introduces the client with LHLO.
// On error the connection is left to the caller to close.
func New(conn net.Conn, hello string) (*Client, error) {
	if strings.ContainsAny(hello, " \r\n") || hello == "" {
		return nil, fmt.Errorf("LHLO name %q: must be one word", hello)
	}
	c := &Client{conn: conn, r: bufio.NewReaderSize(conn, 4096), w: bufio.NewWriterSize(conn, 32<<10)}
	greet, _, err := c.read()
	if err != nil {
		return nil, fmt.Errorf("reading the greeting: %w", err)
	}
	if greet.Code != 220 {
		return nil, &ReplyError{Command: "greeting", Reply: greet}
	}
	c.w.WriteString("LHLO " + hello + "\r\n")
	if err := c.w.Flush(); err != nil {
		return nil, fmt.Errorf("sending LHLO: %w", err)
	}
	lhlo, lines, err := c.read()
	if err != nil {
		return nil, fmt.Errorf("reading the LHLO reply: %w", err)
	}
	if lhlo.Code != 250 {
		return nil, &ReplyError{Command: "LHLO", Reply: lhlo}
	}
	for _, l := range lines[1:] { // the first line greets; the rest are extensions
		kw, _, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(l)), " ")
		switch kw {
		case "PIPELINING":
			c.pipelining = true
		case "SIZE":
			c.size = true
		case "CHUNKING":
			c.chunking = true
		}
	}
	return c, nil
}

// Pipelining reports whether the server advertised PIPELINING.
func (c *Client) Pipelining() bool { return c.pipelining }

// Chunking reports whether the server advertised CHUNKING.
func (c *Client) Chunking() bool { return c.chunking }

// Outcome is what one transaction got back. A zero Reply (Code 0) means
// none was read: the connection failed before, or the command was not
// sent (no RCPT after a refused MAIL without pipelining; DATA when every
// RCPT was refused).
type Outcome struct {
	Mail  Reply
	Rcpts []Reply // one per recipient, in order
	Data  Reply   // DATA's reply (354 to go on); zero when BDAT was used
	// Sent reports that the whole message went out (after DATA's 354, or
	// with BDAT); whether it was stored is in Final.
	Sent bool
	// Final holds, aligned with Rcpts, each accepted recipient's reply
	// after the message (LMTP answers per recipient).
	Final []Reply
}

// Send runs one transaction: MAIL FROM:<from>, RCPT TO:<r> for each
// recipient, DATA, then msg (dot-stuffed, lines ended with CRLF) and one
// reply per accepted recipient. size is the message's size for the SIZE
// parameter (0: none). An error means the connection is unusable: the
// outcome then holds every reply read before it.
func (c *Client) Send(from string, size int64, rcpts []string, msg io.Reader) (*Outcome, error) {
	out := &Outcome{Rcpts: make([]Reply, len(rcpts)), Final: make([]Reply, len(rcpts))}
	if c.broken != nil {
		return out, c.broken
	}
	for _, a := range append([]string{from}, rcpts...) {
		if strings.ContainsAny(a, "\r\n<>") {
			return out, fmt.Errorf("address %q cannot be sent: CR, LF or angle brackets", a)
		}
	}
	mail := "MAIL FROM:<" + from + ">"
	if c.size && size > 0 {
		mail += " SIZE=" + strconv.FormatInt(size, 10)
	}
	if body := c.chunkable(size, rcpts, msg); body != nil {
		return c.sendChunk(out, mail, rcpts[0], body)
	}
	c.w.WriteString(mail + "\r\n")
	var err error
	if c.pipelining {
		for _, r := range rcpts {
			c.w.WriteString("RCPT TO:<" + r + ">\r\n")
		}
		c.w.WriteString("DATA\r\n")
		if err = c.flush(); err != nil {
			return out, err
		}
		if out.Mail, err = c.reply(); err != nil {
			return out, err
		}
		for i := range rcpts {
			if out.Rcpts[i], err = c.reply(); err != nil {
				return out, err
			}
		}
		if out.Data, err = c.reply(); err != nil {
			return out, err
		}
	} else {
		if out.Mail, err = c.command(""); err != nil || !out.Mail.OK() {
			return out, err
		}
		any := false
		for i, r := range rcpts {
			if out.Rcpts[i], err = c.command("RCPT TO:<" + r + ">"); err != nil {
				return out, err
			}
			any = any || out.Rcpts[i].OK()
		}
		if !any {
			return out, nil
		}
		if out.Data, err = c.command("DATA"); err != nil {
			return out, err
		}
	}
	if out.Data.Code != 354 {
		return out, nil
	}
	var accepted []int
	for i, r := range out.Rcpts {
		if r.OK() {
			accepted = append(accepted, i)
		}
	}
	if len(accepted) == 0 {
		// A pipelining server that refused everyone still said 354: end
		// an empty message; its reply concerns no recipient.
		c.w.WriteString(".\r\n")
		if err := c.flush(); err != nil {
			return out, err
		}
		_, err := c.reply()
		return out, err
	}
	dw := textproto.NewWriter(c.w).DotWriter()
	if _, err := io.Copy(dw, msg); err != nil {
		c.broken = fmt.Errorf("sending the message: %w", err)
		return out, c.broken
	}
	if err := dw.Close(); err != nil {
		c.broken = fmt.Errorf("sending the message: %w", err)
		return out, c.broken
	}
	if err := c.flush(); err != nil {
		return out, err
	}
	out.Sent = true
	for _, i := range accepted {
		if out.Final[i], err = c.reply(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// maxChunk bounds the messages sent with BDAT: they are read into memory
// whole, to check them and to know their length; larger ones use DATA.
const maxChunk = 64 << 10

// chunkable returns the message's bytes when it can go as one BDAT LAST:
// one recipient, a server with PIPELINING and CHUNKING, a message that
// can be read again from its start (io.ReaderAt) and is at most maxChunk
// bytes. BDAT carries bytes as they are, so the message must also be what
// DATA would have sent after unstuffing: lines ended by CRLF, the last one
// too, and no CR or LF alone (DATA's writer turns a lone LF into CRLF).
func (c *Client) chunkable(size int64, rcpts []string, msg io.Reader) []byte {
	ra, ok := msg.(io.ReaderAt)
	if !ok || !c.pipelining || !c.chunking || len(rcpts) != 1 || size <= 0 || size > maxChunk {
		return nil
	}
	b := make([]byte, size)
	if n, err := ra.ReadAt(b, 0); int64(n) != size || err != nil && err != io.EOF {
		return nil // DATA reads it again and reports what fails
	}
	if !canonical(b) {
		return nil
	}
	return b
}

// canonical reports whether every line of b ends with CRLF and no CR or
// LF stands alone.
func canonical(b []byte) bool {
	if len(b) < 2 || b[len(b)-2] != '\r' || b[len(b)-1] != '\n' {
		return false
	}
	for off := 0; off < len(b); {
		i := bytes.IndexAny(b[off:], "\r\n")
		if i < 0 {
			return true
		}
		at := off + i
		if b[at] == '\n' || at+1 >= len(b) || b[at+1] != '\n' {
			return false
		}
		off = at + 2
	}
	return true
}

// sendChunk runs a one-recipient transaction with BDAT: MAIL, RCPT and
// BDAT with the message in one write, then three replies.
func (c *Client) sendChunk(out *Outcome, mail, rcpt string, body []byte) (*Outcome, error) {
	c.w.WriteString(mail + "\r\n")
	c.w.WriteString("RCPT TO:<" + rcpt + ">\r\n")
	c.w.WriteString("BDAT " + strconv.Itoa(len(body)) + " LAST\r\n")
	c.w.Write(body)
	if err := c.flush(); err != nil {
		return out, err
	}
	out.Sent = true
	var err error
	if out.Mail, err = c.reply(); err != nil {
		return out, err
	}
	if out.Rcpts[0], err = c.reply(); err != nil {
		return out, err
	}
	last, err := c.reply()
	if err != nil {
		return out, err
	}
	if out.Rcpts[0].OK() {
		out.Final[0] = last
	}
	// Else last refuses BDAT itself (no recipient): the transaction is
	// over either way, as after DATA with every recipient refused.
	return out, nil
}

// Reset sends RSET: the session is ready for another transaction.
func (c *Client) Reset() error {
	r, err := c.command("RSET")
	if err != nil {
		return err
	}
	if r.Code != 250 {
		c.broken = fmt.Errorf("RSET refused: %s", r)
		return c.broken
	}
	return nil
}

// Close says QUIT without waiting for the answer and closes the
// connection.
func (c *Client) Close() error {
	if c.broken == nil {
		c.w.WriteString("QUIT\r\n")
		c.w.Flush()
	}
	return c.conn.Close()
}

// command sends one command (cmd "" sends what is buffered) and reads its
// reply.
func (c *Client) command(cmd string) (Reply, error) {
	if c.broken != nil {
		return Reply{}, c.broken
	}
	if cmd != "" {
		c.w.WriteString(cmd + "\r\n")
	}
	if err := c.flush(); err != nil {
		return Reply{}, err
	}
	return c.reply()
}

func (c *Client) flush() error {
	if err := c.w.Flush(); err != nil {
		c.broken = fmt.Errorf("writing to the server: %w", err)
		return c.broken
	}
	return nil
}

// reply reads one reply. A 421 (the server is closing the session) is
// returned with an error: no further reply will come, and the client is
// unusable.
func (c *Client) reply() (Reply, error) {
	r, _, err := c.read()
	if err != nil {
		c.broken = err
		return Reply{}, err
	}
	if r.Code == 421 {
		c.broken = fmt.Errorf("server closing the session: %s", r)
		return r, c.broken
	}
	return r, nil
}

// read reads one reply and its raw text lines.
func (c *Client) read() (Reply, []string, error) {
	var lines []string
	code := 0
	for {
		line, err := readLine(c.r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Reply{}, nil, err
		}
		n, more, text, err := parseLine(line)
		if err != nil {
			return Reply{}, nil, err
		}
		if code != 0 && n != code {
			return Reply{}, nil, fmt.Errorf("reply line %q: code %d inside a reply with code %d", line, n, code)
		}
		code = n
		lines = append(lines, text)
		if !more {
			break
		}
		if len(lines) >= maxReplyLines {
			return Reply{}, nil, fmt.Errorf("reply longer than %d lines", maxReplyLines)
		}
	}
	return assemble(code, lines), lines, nil
}

// readLine reads one CRLF- (or LF-) terminated line of at most
// maxLineBytes.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > maxLineBytes {
			return "", fmt.Errorf("reply line longer than %d bytes", maxLineBytes)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// parseLine splits "250-text" / "250 text" / "250".
func parseLine(line string) (code int, more bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", fmt.Errorf("reply line %q: no three-digit code", line)
	}
	for i := 0; i < 3; i++ {
		if line[i] < '0' || line[i] > '9' {
			return 0, false, "", fmt.Errorf("reply line %q: no three-digit code", line)
		}
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < ' ' && c != '\t' || c == 0x7f {
			return 0, false, "", fmt.Errorf("reply line %q: control character", line)
		}
	}
	code, _ = strconv.Atoi(line[:3])
	if code < 200 || code > 599 {
		return 0, false, "", fmt.Errorf("reply line %q: code out of range", line)
	}
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case '-':
		more = true
	case ' ':
	default:
		return 0, false, "", fmt.Errorf("reply line %q: no space or hyphen after the code", line)
	}
	return code, more, line[4:], nil
}

// assemble builds a Reply: the enhanced code of the first line (when its
// class matches the code's) is taken out of every line that repeats it.
func assemble(code int, lines []string) Reply {
	r := Reply{Code: code}
	if enh, _, _ := strings.Cut(lines[0], " "); isEnhanced(enh) && int(enh[0]-'0') == code/100 {
		r.Enhanced = enh
	}
	texts := make([]string, 0, len(lines))
	for _, l := range lines {
		if r.Enhanced != "" {
			if l == r.Enhanced {
				l = ""
			} else {
				l = strings.TrimPrefix(l, r.Enhanced+" ")
			}
		}
		if l != "" {
			texts = append(texts, l)
		}
	}
	r.Text = strings.Join(texts, " ")
	return r
}

// isEnhanced matches class.subject.detail (RFC 3463): a digit 2, 4 or 5,
// then one to three digits, twice.
func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}
