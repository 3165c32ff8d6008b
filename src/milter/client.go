package milter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

// failure is why a milter could not judge a message: it is down, slow,
// or broke the protocol. The chain applies the milter's OnFailure.
type failure struct {
	stage string // "connecting", "negotiate", "connect", "helo", ... "end of message"
	err   error
}

func (f *failure) Error() string { return f.stage + ": " + f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// msgError is a failure to read the message itself: not the milter's.
type msgError struct{ err error }

func (e *msgError) Error() string { return "reading the message: " + e.err.Error() }
func (e *msgError) Unwrap() error { return e.err }

// outcome is one milter's answer for one message.
type outcome struct {
	final      byte // respAccept, respReject, respTempfail, respReplyCode, respDiscard, respConnFail
	reply      reply
	stage      string // where the final answer came
	changes    []HeaderChange
	quarantine bool
	reason     string
	ignored    []string // modifications received and not applied
}

// conversation is one connection to one milter, for one message.
type conversation struct {
	m        *milter
	ctx      context.Context
	conn     net.Conn
	r        *bufio.Reader
	wbuf     []byte
	rbuf     []byte
	version  uint32
	actions  uint32
	protocol uint32
	stage    string
	out      outcome
}

// run takes one message through one milter. A *failure is the milter's
// fault; a *msgError or the context's error is not.
func (m *milter) run(ctx context.Context, trace string, env *Envelope, h *header, msg io.ReadSeeker) (outcome, error) {
	c := &conversation{m: m, ctx: ctx, stage: "connecting"}
	dial := m.dial
	if dial == nil {
		d := net.Dialer{Timeout: m.cfg.ConnectTimeout}
		dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, m.network, m.address) }
	}
	conn, err := dial(ctx)
	if err != nil {
		return c.out, c.fail(err)
	}
	c.conn = conn
	c.r = bufio.NewReaderSize(conn, 4096)
	// The caller's context ends every exchange at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		conn.Close()
	}()
	done, err := c.converse(trace, env, h, msg)
	if err != nil {
		return c.out, err
	}
	// Best effort and brief: the verdict is already known.
	if !done {
		c.wbuf = appendPacket(c.wbuf[:0], cmdAbort)
	} else {
		c.wbuf = c.wbuf[:0]
	}
	c.wbuf = appendPacket(c.wbuf, cmdQuit)
	conn.SetWriteDeadline(time.Now().Add(min(m.cfg.Timeout, time.Second)))
	conn.Write(c.wbuf)
	return c.out, nil
}

// converse runs the events; done tells whether the end of message was
// reached (else the milter answered early).
func (c *conversation) converse(trace string, env *Envelope, h *header, msg io.ReadSeeker) (done bool, err error) {
	if err := c.negotiate(); err != nil {
		return false, err
	}
	queueID := env.QueueID
	if queueID == "" {
		queueID = trace
	}
	// CONNECT
	if c.protocol&protoNoConnect == 0 {
		c.stage = "connect"
		name := env.ClientName
		if name == "" {
			name = "unknown" // Postfix's word, which rspamd understands
		}
		mac := []string{"j", env.Hostname, "{daemon_name}", env.Hostname, "{client_name}", name}
		data := cstr(nil, name)
		if a := env.Client.Addr().Unmap(); a.IsValid() {
			family := byte('4')
			if a.Is6() {
				family = '6'
			}
			data = append(data, family)
			data = binary.BigEndian.AppendUint16(data, env.Client.Port())
			data = cstr(data, a.String())
			mac = append(mac, "{client_addr}", a.String(), "{client_port}", strconv.Itoa(int(env.Client.Port())))
		} else {
			data = append(data, 'U')
		}
		if fin, err := c.event(cmdConnect, mac, data, c.protocol&protoNRConn == 0); fin || err != nil {
			return false, err
		}
	}
	// HELO
	if c.protocol&protoNoHelo == 0 {
		c.stage = "helo"
		var mac []string
		if env.TLSVersion != "" {
			mac = append(mac, "{tls_version}", env.TLSVersion, "{cipher}", env.TLSCipher)
		}
		if fin, err := c.event(cmdHelo, mac, cstr(nil, env.Helo), c.protocol&protoNRHelo == 0); fin || err != nil {
			return false, err
		}
	}
	// MAIL FROM
	if c.protocol&protoNoMail == 0 {
		c.stage = "mail"
		mac := []string{"i", queueID, "{mail_addr}", env.From}
		if env.AuthUser != "" {
			mac = append(mac, "{auth_authen}", env.AuthUser)
		}
		data := cstr(nil, "<"+env.From+">")
		for _, a := range env.FromArgs {
			data = cstr(data, a)
		}
		if fin, err := c.event(cmdMail, mac, data, c.protocol&protoNRMail == 0); fin || err != nil {
			return false, err
		}
	}
	// RCPT TO, each
	if c.protocol&protoNoRcpt == 0 {
		c.stage = "rcpt"
		for _, r := range env.Rcpts {
			mac := []string{"{rcpt_addr}", r}
			if fin, err := c.event(cmdRcpt, mac, cstr(nil, "<"+r+">"), c.protocol&protoNRRcpt == 0); fin || err != nil {
				return false, err
			}
		}
	}
	// DATA (protocol 6)
	if c.version >= 6 && c.protocol&protoNoData == 0 {
		c.stage = "data"
		if fin, err := c.event(cmdData, nil, nil, c.protocol&protoNRData == 0); fin || err != nil {
			return false, err
		}
	}
	// Header fields
	if c.protocol&protoNoHeaders == 0 {
		c.stage = "header"
		for _, f := range h.fields {
			v := f.value()
			// A field longer than a chunk is cut: libmilter refuses
			// longer packets.
			if n := maxChunk - 3 - len(f.name); len(v) > n {
				v = v[:n]
			}
			if fin, err := c.event(cmdHeader, nil, cstr(cstr(nil, f.name), v), c.protocol&protoNRHeader == 0); fin || err != nil {
				return false, err
			}
		}
	}
	if c.protocol&protoNoEOH == 0 {
		c.stage = "end of header"
		if fin, err := c.event(cmdEOH, nil, nil, c.protocol&protoNREOH == 0); fin || err != nil {
			return false, err
		}
	}
	// Body, in chunks, with CRLF line endings.
	if c.protocol&protoNoBody == 0 {
		c.stage = "body"
		if _, err := msg.Seek(h.bodyOff, io.SeekStart); err != nil {
			return false, &msgError{err}
		}
		fin := false
		err := crlfChunks(msg, func(chunk []byte) (bool, error) {
			var err error
			var skip bool
			fin, skip, err = c.bodyEvent(chunk)
			return fin || skip, err
		})
		if fin || err != nil {
			return false, err
		}
	}
	// End of message: modifications, then the verdict.
	c.stage = "end of message"
	if err := c.endOfMessage(queueID); err != nil {
		return false, err
	}
	return true, nil
}

// negotiate exchanges SMFIC_OPTNEG.
func (c *conversation) negotiate() error {
	c.stage = "negotiate"
	var data [12]byte
	binary.BigEndian.PutUint32(data[0:], protoVersion)
	binary.BigEndian.PutUint32(data[4:], offeredActions)
	binary.BigEndian.PutUint32(data[8:], offeredProtocol)
	c.wbuf = appendPacket(c.wbuf[:0], cmdOptneg, data[:])
	if err := c.send(); err != nil {
		return err
	}
	p, err := c.read()
	if err != nil {
		return err
	}
	o, err := parseOptneg(p)
	if err != nil {
		return c.fail(err)
	}
	c.version = o.version
	c.actions = o.actions
	// Steps and replies it wants to skip but were not offered are not
	// skipped (the protocol lets an MTA refuse the milter instead; rspamd,
	// for one, asks for what it likes). Actions beyond the offer are let
	// through: each such modification is ignored when it comes.
	c.protocol = o.protocol & offeredProtocol
	return nil
}

// event sends one command, preceded by its macros, and when a reply is
// expected reads it: final is true when the milter has decided.
func (c *conversation) event(cmd byte, macros []string, data []byte, wantReply bool) (final bool, err error) {
	c.wbuf = c.wbuf[:0]
	if len(macros) > 0 {
		md := []byte{cmd}
		for _, s := range macros {
			md = cstr(md, s)
		}
		c.wbuf = appendPacket(c.wbuf, cmdMacro, md)
	}
	c.wbuf = appendPacket(c.wbuf, cmd, data)
	if err := c.send(); err != nil {
		return false, err
	}
	if !wantReply {
		return false, nil
	}
	r, err := c.reply(false)
	if err != nil {
		return false, err
	}
	return c.decide(r), nil
}

// bodyEvent sends one body chunk; skip is the milter's SMFIR_SKIP.
func (c *conversation) bodyEvent(chunk []byte) (final, skip bool, err error) {
	c.wbuf = appendPacket(c.wbuf[:0], cmdBody, chunk)
	if err := c.send(); err != nil {
		return false, false, err
	}
	if c.protocol&protoNRBody != 0 {
		return false, false, nil
	}
	r, err := c.reply(c.protocol&protoSkip != 0)
	if err != nil {
		return false, false, err
	}
	if r.code == respSkip {
		return false, true, nil
	}
	return c.decide(r), false, nil
}

// decide records a final answer; continue is not one.
func (c *conversation) decide(r response) bool {
	if r.code == respContinue {
		return false
	}
	c.out.final = r.code
	c.out.reply = r.reply
	c.out.stage = c.stage
	return true
}

// reply reads the answer to one command: progress packets are skipped,
// modifications are refused (they belong to the end of message).
func (c *conversation) reply(skipOK bool) (response, error) {
	for {
		r, err := c.response()
		if err != nil {
			return r, err
		}
		switch r.code {
		case respProgress:
			continue
		case respContinue, respAccept, respReject, respTempfail, respReplyCode, respDiscard, respConnFail:
			return r, nil
		case respSkip:
			if skipOK {
				return r, nil
			}
			return r, c.fail(protoErr("skip outside the body"))
		default:
			return r, c.fail(protoErr("answer %s before the end of the message", codeName(r.code)))
		}
	}
}

// endOfMessage sends SMFIC_BODYEOB and collects the modifications up to
// the final answer.
func (c *conversation) endOfMessage(queueID string) error {
	if _, err := c.event(cmdEOB, []string{"i", queueID}, nil, false); err != nil {
		return err
	}
	for {
		r, err := c.response()
		if err != nil {
			return err
		}
		switch r.code {
		case respProgress:
		case respAddHeader, respInsHeader, respChgHeader:
			c.out.changes = append(c.out.changes, r.change)
		case respQuarantine:
			c.out.quarantine = true
			c.out.reason = r.reason
		case respReplBody:
			c.ignore("body replacement")
		case respAddRcpt, respAddRcptPar:
			c.ignore("recipient addition")
		case respDelRcpt:
			c.ignore("recipient removal")
		case respChgFrom:
			c.ignore("sender change")
		case respContinue, respAccept, respReject, respTempfail, respReplyCode, respDiscard, respConnFail:
			if r.code == respContinue {
				r.code = respAccept
			}
			c.decide(r)
			return nil
		default:
			return c.fail(protoErr("answer %s at the end of the message", codeName(r.code)))
		}
	}
}

func (c *conversation) ignore(what string) {
	for _, s := range c.out.ignored {
		if s == what {
			return
		}
	}
	c.out.ignored = append(c.out.ignored, what)
}

// response reads and parses one packet.
func (c *conversation) response() (response, error) {
	p, err := c.read()
	if err != nil {
		return response{}, err
	}
	r, err := parseResponse(p)
	if err != nil {
		return r, c.fail(err)
	}
	if r.code == respShutdown {
		return r, c.fail(errors.New("the milter is shutting down"))
	}
	return r, nil
}

// send writes wbuf under the exchange's deadline, which also covers the
// reply read after it.
func (c *conversation) send() error {
	if err := c.deadline(); err != nil {
		return err
	}
	if _, err := c.conn.Write(c.wbuf); err != nil {
		return c.fail(err)
	}
	return nil
}

func (c *conversation) read() (packet, error) {
	p, buf, err := readPacket(c.r, c.rbuf)
	c.rbuf = buf
	if err != nil {
		return p, c.fail(err)
	}
	return p, nil
}

// deadline starts an exchange: Timeout from now, or the caller's
// deadline if sooner.
func (c *conversation) deadline() error {
	d := time.Now().Add(c.m.cfg.Timeout)
	if cd, ok := c.ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	c.conn.SetDeadline(d)
	// After setting it: a cancellation between the two would otherwise
	// be overwritten.
	if err := c.ctx.Err(); err != nil {
		return err
	}
	return nil
}

// fail turns an error into the milter's failure at this stage, in words
// an operator reads in the log. The caller's own cancellation stays
// what it is.
func (c *conversation) fail(err error) error {
	if cerr := ctxErr(c.ctx); cerr != nil {
		return cerr
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		err = errors.New("connection closed by the milter")
	case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		if c.conn == nil {
			err = fmt.Errorf("no connection within %v", c.m.cfg.ConnectTimeout)
		} else {
			err = fmt.Errorf("no answer within %v", c.m.cfg.Timeout)
		}
	}
	return &failure{stage: c.stage, err: err}
}

// ctxErr is ctx.Err(), also once ctx's deadline has passed but its timer
// has not fired yet: the connection's deadline is the context's, and on a
// busy machine the I/O timeout is noticed first.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// cstr appends s and a NUL.
func cstr(b []byte, s string) []byte {
	b = append(b, s...)
	return append(b, 0)
}

// crlfChunks reads r to its end and hands emit chunks of at most
// maxChunk bytes, with bare LF line endings made CRLF (milters expect
// the body as SMTP carries it). emit returning stop ends it early.
func crlfChunks(r io.Reader, emit func([]byte) (stop bool, err error)) error {
	in := make([]byte, 32<<10)
	out := make([]byte, 0, maxChunk)
	prevCR := false
	flush := func() (bool, error) {
		if len(out) == 0 {
			return false, nil
		}
		stop, err := emit(out)
		out = out[:0]
		return stop, err
	}
	for {
		n, rerr := r.Read(in)
		data := in[:n]
		for len(data) > 0 {
			seg := data
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				seg = data[:i]
			}
			data = data[len(seg):]
			for len(seg) > 0 {
				k := min(maxChunk-len(out), len(seg))
				out = append(out, seg[:k]...)
				seg = seg[k:]
				prevCR = out[len(out)-1] == '\r'
				if len(out) == maxChunk {
					if stop, err := flush(); stop || err != nil {
						return err
					}
				}
			}
			if len(data) > 0 { // at a '\n'
				if !prevCR {
					if len(out)+2 > maxChunk {
						if stop, err := flush(); stop || err != nil {
							return err
						}
					}
					out = append(out, '\r')
				}
				out = append(out, '\n')
				prevCR = false
				data = data[1:]
				if len(out) == maxChunk {
					if stop, err := flush(); stop || err != nil {
						return err
					}
				}
			}
		}
		if rerr == io.EOF {
			_, err := flush()
			return err
		}
		if rerr != nil {
			return &msgError{rerr}
		}
	}
}
