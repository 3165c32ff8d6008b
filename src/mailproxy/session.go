package mailproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"correo/src/logging"
	"correo/src/mailbox"
	"correo/src/metrics"
	"correo/src/pop3"
	"correo/src/proxyproto"
	"correo/src/pwclient"
	"correo/src/pwproto"
)

const (
	replyAuthFailed = "-ERR [AUTH] Authentication failed."
	replyNoPlain    = "-ERR [AUTH] Plaintext authentication is not allowed without TLS: use STLS first."
)

type session struct {
	s       *Server
	raw     net.Conn // the TCP connection
	conn    net.Conn // raw, or TLS over it
	br      *bufio.Reader
	bw      *bufio.Writer
	client  netip.AddrPort
	local   netip.AddrPort
	tls     bool
	trace   string
	start   time.Time
	loginBy time.Time

	user     string // from USER, waiting for PASS
	name     string
	backend  string
	result   string
	cmds     int
	failures int
	in, out  int64 // bytes client → backend, backend → client after login
}

func (s *Server) handle(c net.Conn, client netip.AddrPort, implicitTLS bool) {
	ss := &session{s: s, raw: c, conn: c, client: client, local: addrPort(c.LocalAddr()),
		start: time.Now(), trace: logging.NewTraceID(), result: "disconnected"}
	ss.loginBy = ss.start.Add(s.cfg.Limits.LoginTimeout)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	defer ss.logEnd()
	if implicitTLS {
		tc := tls.Server(c, s.cfg.TLS)
		tc.SetDeadline(time.Now().Add(s.cfg.Limits.IdleTimeout))
		if err := tc.Handshake(); err != nil {
			ss.result = "TLS handshake failed"
			return
		}
		ss.conn, ss.tls = tc, true
	}
	ss.br = bufio.NewReaderSize(ss.conn, 4096)
	ss.bw = bufio.NewWriterSize(ss.conn, 4096)
	ss.reply("+OK correo POP3 proxy ready.")
	backend := ss.authorize()
	if backend == nil {
		ss.bw.Flush()
		return
	}
	ss.splice(backend)
}

func (ss *session) logEnd() {
	ss.s.log.Info("pop3 proxy session", "trace", ss.trace, "user", ss.name, "client", ss.client.String(),
		"backend", ss.backend, "tls", ss.tls, "bytes_in", ss.in, "bytes_out", ss.out,
		"duration_ms", float64(time.Since(ss.start).Microseconds())/1000, "result", ss.result)
}

func (ss *session) reply(line string) {
	ss.bw.WriteString(line)
	ss.bw.WriteString("\r\n")
}

func (ss *session) plainAllowed() bool { return ss.tls || ss.s.trusted }

var errLineTooLong = errors.New("line too long")

func (ss *session) readLine() (string, error) {
	ss.conn.SetReadDeadline(minTime(time.Now().Add(ss.s.cfg.Limits.IdleTimeout), ss.loginBy))
	line, err := ss.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > ss.s.cfg.Limits.MaxLineLength {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	return string(line), nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// authorize runs the AUTHORIZATION state until a backend session is open
// (returned, logged in) or the session is over (nil).
func (ss *session) authorize() *net.TCPConn {
	for {
		if ss.br.Buffered() == 0 {
			if ss.bw.Flush() != nil {
				return nil
			}
		}
		line, err := ss.readLine()
		if err != nil {
			switch {
			case errors.Is(err, errLineTooLong):
				ss.result = "line too long"
				ss.reply("-ERR Line too long; closing.")
			case errors.Is(err, os.ErrDeadlineExceeded):
				ss.result = "timeout before login"
				ss.reply("-ERR [SYS/PERM] Login timeout; closing.")
			}
			return nil
		}
		ss.conn.SetWriteDeadline(time.Now().Add(ss.s.cfg.Limits.IdleTimeout))
		ss.cmds++
		if ss.cmds > ss.s.cfg.Limits.MaxCommands {
			ss.result = "too many commands before login"
			ss.reply("-ERR Too many commands without logging in; closing.")
			return nil
		}
		cmd, err := pop3.ParseCommand([]byte(line))
		if err != nil {
			ss.reply("-ERR " + err.Error() + ".")
			continue
		}
		var user, pw string
		switch cmd.Name {
		case "CAPA":
			ss.capa()
			continue
		case "QUIT":
			ss.result = "quit before login"
			ss.reply("+OK Bye.")
			return nil
		case "STLS":
			if !ss.stls() {
				return nil
			}
			continue
		case "USER":
			if len(cmd.Args) != 1 {
				ss.reply("-ERR Usage: USER name")
				continue
			}
			if !ss.plainAllowed() {
				ss.reply(replyNoPlain)
				continue
			}
			ss.user = cmd.Args[0]
			ss.reply("+OK Send the password.")
			continue
		case "PASS":
			if ss.user == "" || len(cmd.Args) != 1 {
				ss.reply("-ERR Send USER first, then PASS password.")
				continue
			}
			user, pw = ss.user, cmd.Args[0]
			ss.user = ""
		case "AUTH":
			var ok bool
			user, pw, ok = ss.saslPlain(cmd)
			if !ok {
				if ss.result != "" && ss.result != "disconnected" {
					return nil
				}
				continue
			}
		case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL":
			ss.reply("-ERR Log in first (USER and PASS, or AUTH PLAIN).")
			continue
		default:
			ss.reply("-ERR Unknown command.")
			continue
		}
		backend, done := ss.login(user, pw)
		if backend != nil || done {
			return backend
		}
	}
}

func (ss *session) capa() {
	ss.reply("+OK Capability list follows")
	for _, c := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"} {
		ss.reply(c)
	}
	if ss.plainAllowed() {
		ss.reply("USER")
		ss.reply("SASL PLAIN")
	}
	if ss.s.cfg.TLS != nil && !ss.tls {
		ss.reply("STLS")
	}
	ss.reply("IMPLEMENTATION correo")
	ss.reply(".")
}

func (ss *session) stls() bool {
	if ss.s.cfg.TLS == nil {
		ss.reply("-ERR STLS is not available here.")
		return true
	}
	if ss.tls {
		ss.reply("-ERR Already using TLS.")
		return true
	}
	ss.reply("+OK Begin TLS negotiation.")
	if ss.bw.Flush() != nil {
		return false
	}
	// Bytes pipelined after STLS were sent in the clear (CVE-2011-0411):
	// dropped with the old reader.
	tc := tls.Server(ss.raw, ss.s.cfg.TLS)
	tc.SetDeadline(minTime(time.Now().Add(ss.s.cfg.Limits.IdleTimeout), ss.loginBy))
	if err := tc.Handshake(); err != nil {
		ss.result = "TLS handshake failed"
		return false
	}
	ss.conn, ss.tls = tc, true
	ss.br = bufio.NewReaderSize(tc, 4096)
	ss.bw = bufio.NewWriterSize(tc, 4096)
	ss.user = ""
	return true
}

// saslPlain reads AUTH PLAIN's response; ok false means answered (or the
// session is over when result was set).
func (ss *session) saslPlain(cmd pop3.Command) (user, pw string, ok bool) {
	if len(cmd.Args) == 0 {
		ss.reply("+OK Mechanisms follow")
		if ss.plainAllowed() {
			ss.reply("PLAIN")
		}
		ss.reply(".")
		return "", "", false
	}
	if !strings.EqualFold(cmd.Args[0], "PLAIN") {
		ss.reply("-ERR Unsupported authentication mechanism; only PLAIN.")
		return "", "", false
	}
	if !ss.plainAllowed() {
		ss.reply(replyNoPlain)
		return "", "", false
	}
	resp := ""
	if len(cmd.Args) == 2 {
		resp = cmd.Args[1]
	} else {
		ss.reply("+ ")
		if ss.bw.Flush() != nil {
			ss.result = "write failed"
			return "", "", false
		}
		line, err := ss.readLine()
		if err != nil {
			ss.result = "disconnected during AUTH"
			if errors.Is(err, errLineTooLong) {
				ss.result = "line too long"
				ss.reply("-ERR Line too long; closing.")
			}
			return "", "", false
		}
		resp = strings.TrimRight(line, "\r\n")
		if resp == "*" {
			ss.reply("-ERR Authentication cancelled.")
			return "", "", false
		}
	}
	if resp == "=" {
		resp = ""
	}
	user, pw, err := pop3.DecodePlain(resp)
	if err != nil {
		ss.reply("-ERR " + err.Error() + ".")
		return "", "", false
	}
	return user, pw, true
}

// checkPassword asks passwdd, for either protocol: a bad user name and a
// disabled user fail as a wrong password does (one answer for every
// failure). name is the normalised name, "" when it was not valid.
func (ss *session) checkPassword(user, pw string) (pwproto.User, string, error) {
	name, err := mailbox.NormalizeName(user)
	if err != nil {
		return pwproto.User{}, "", fmt.Errorf("%w: %v", pwclient.ErrDenied, err)
	}
	ctx, cancel := context.WithTimeout(logging.WithTrace(context.Background(), ss.trace), ss.s.cfg.AuthTimeout)
	defer cancel()
	u, err := ss.s.cfg.Users.Authenticate(ctx, name, pw, ss.client.Addr().String())
	if err == nil && u.State == pwproto.StateDisabled {
		err = pwclient.ErrDenied
	}
	return u, name, err
}

// login authenticates with passwdd and opens the backend session. It
// returns the logged-in backend connection, or nil with done telling
// whether the client session is over.
func (ss *session) login(user, pw string) (backend *net.TCPConn, done bool) {
	u, name, err := ss.checkPassword(user, pw)
	switch {
	case err == nil:
	case errors.Is(err, pwclient.ErrDenied), errors.Is(err, pwclient.ErrLockedOut):
		// Unknown user, wrong password, bad name, disabled, locked out:
		// one answer, after one growing delay.
		ss.failures++
		delay := ss.s.fails.fail(ss.client.Addr(), ss.s.cfg.Limits)
		reason := "authentication failed"
		if errors.Is(err, pwclient.ErrLockedOut) {
			reason = "locked out"
		}
		ss.s.cfg.Metrics.login("pop3", metrics.LoginResult(reason))
		ss.s.log.Info("login failed", "trace", ss.trace, "client", ss.client.String(), "user", name, "reason", reason,
			"delay_ms", delay.Milliseconds())
		if ss.bw.Flush() != nil {
			return nil, true
		}
		time.Sleep(delay)
		ss.reply(replyAuthFailed)
		if ss.failures >= ss.s.cfg.Limits.MaxAuthFailures {
			ss.result = "too many failed logins"
			ss.reply("-ERR Too many failed logins; closing.")
			return nil, true
		}
		ss.result = "disconnected"
		return nil, false
	default:
		ss.s.cfg.Metrics.login("pop3", "tempfail")
		ss.result = "password service unavailable"
		ss.s.log.Warn("password check failed", "trace", ss.trace, "user", name, "err", err)
		ss.reply("-ERR [SYS/TEMP] Authentication service unavailable, try again later.")
		return nil, true
	}
	ss.name = u.Name
	if u.State == pwproto.StateMoving {
		ss.s.cfg.Metrics.login("pop3", "moving")
		ss.result = "mailbox being moved"
		ss.reply("-ERR [SYS/TEMP] Your mailbox is being moved; try again in a few minutes.")
		return nil, true
	}
	addr, ok := ss.s.backends[u.Storage]
	ss.backend = u.Storage
	if !ok {
		ss.s.cfg.Metrics.login("pop3", "tempfail")
		ss.s.cfg.Metrics.backendError("pop3", "no_backend")
		ss.result = "no backend for storage host"
		ss.s.log.Error("user's storage host provides no pop3_backend in the profile", "trace", ss.trace,
			"user", u.Name, "storage", u.Storage)
		ss.reply("-ERR [SYS/TEMP] Your mailbox server is not available, try again later.")
		return nil, true
	}
	ss.backend = u.Storage + " " + addr.String()
	bc, reply, err := ss.connect(addr, u.Name, pw)
	if err != nil {
		ss.s.cfg.Metrics.login("pop3", "tempfail")
		ss.s.cfg.Metrics.backendError("pop3", "connect")
		ss.result = "backend unavailable"
		ss.s.log.Warn("backend unavailable", "trace", ss.trace, "user", u.Name, "backend", addr.String(), "err", err)
		ss.reply("-ERR [SYS/TEMP] Your mailbox server is not available, try again later.")
		return nil, true
	}
	if !strings.HasPrefix(reply, "+OK") {
		// [IN-USE], a race with a password change, a mailbox moving:
		// the backend's words are the client's answer; it may try again.
		bc.Close()
		ss.s.cfg.Metrics.login("pop3", "in_use")
		ss.s.cfg.Metrics.backendError("pop3", "refused")
		ss.result = "refused by backend"
		ss.s.log.Info("backend refused the login", "trace", ss.trace, "user", u.Name, "reply", reply)
		ss.reply(reply)
		return nil, false
	}
	ss.s.cfg.Metrics.login("pop3", "ok")
	ss.result = "logged in"
	ss.reply(reply)
	return bc, false
}

// connect opens the backend session: PROXY header and AUTH PLAIN in one
// write (pop3d greets first and then reads; nothing waits on a round trip
// but the replies), then the greeting and the login reply.
func (ss *session) connect(addr netip.AddrPort, user, pw string) (*net.TCPConn, string, error) {
	c, err := ss.s.dialer.Dial("tcp", addr.String())
	if err != nil {
		return nil, "", err
	}
	bc := c.(*net.TCPConn)
	bc.SetNoDelay(true)
	bc.SetDeadline(time.Now().Add(ss.s.cfg.AuthTimeout + ss.s.cfg.Limits.DialTimeout))
	h := proxyproto.Header{Source: ss.client, Dest: ss.local, TLS: ss.tls, UniqueID: ss.trace}
	if ss.s.cfg.Tickets != nil {
		// The password was checked a moment ago: a sealed ticket spares
		// pop3d a second, equally slow, check.
		if tk, err := ss.s.cfg.Tickets.Seal(user, ss.client, time.Now()); err == nil {
			h.Ticket = tk
		}
	}
	hdr, err := h.Encode()
	if err != nil {
		bc.Close()
		return nil, "", err
	}
	msg := append(hdr, "AUTH PLAIN "+pop3.EncodePlain(user, pw)+"\r\n"...)
	if _, err := bc.Write(msg); err != nil {
		bc.Close()
		return nil, "", err
	}
	br := bufio.NewReaderSize(bc, 512)
	greet, err := br.ReadString('\n')
	if err != nil {
		bc.Close()
		return nil, "", fmt.Errorf("reading the greeting: %w", err)
	}
	if !strings.HasPrefix(greet, "+OK") {
		bc.Close()
		return nil, "", fmt.Errorf("backend greeted with %q", strings.TrimSpace(greet))
	}
	reply, err := br.ReadString('\n')
	if err != nil {
		bc.Close()
		return nil, "", fmt.Errorf("reading the login reply: %w", err)
	}
	if br.Buffered() > 0 {
		// pop3d says nothing unasked; more bytes mean a confused backend.
		bc.Close()
		return nil, "", errors.New("backend sent more than the login reply")
	}
	bc.SetDeadline(time.Time{})
	return bc, strings.TrimRight(reply, "\r\n"), nil
}

// splice copies bytes both ways until the backend closes (QUIT, crash,
// its autologout) or the client goes away.
func (ss *session) splice(bc *net.TCPConn) {
	defer bc.Close()
	ss.conn.SetDeadline(time.Time{})
	// Commands the client pipelined after its login go first.
	if n := ss.br.Buffered(); n > 0 {
		b, _ := ss.br.Peek(n)
		if _, err := bc.Write(b); err != nil {
			ss.result = "backend write failed"
			ss.bw.Flush()
			return
		}
		ss.in += int64(n)
		ss.br.Discard(n)
	}
	if err := ss.bw.Flush(); err != nil {
		ss.result = "client gone"
		return
	}
	up := make(chan int64, 1)
	go func() {
		// TCP to TCP, io.Copy uses splice(2): the bytes never enter
		// user space.
		n, _ := io.Copy(bc, ss.conn)
		bc.CloseWrite()
		up <- n
	}()
	// Over TLS the bytes pass through this process anyway, so the proxy
	// can note each message's trace id as it goes by: one id then follows
	// a message from the MX through the mailbox to the user. A plain
	// connection keeps the zero-copy splice and logs no message ids.
	var dst io.Writer = ss.conn
	if ss.tls {
		dst = &traceScanner{w: ss.conn, found: func(id string) {
			ss.s.log.Info("message relayed", "trace", id, "session", ss.trace, "user", ss.name, "backend", ss.backend)
		}}
	}
	n, err := io.Copy(dst, bc)
	ss.out = n
	// The backend is done (or gone): the client gets a clean close, and
	// the copy from the client ends with it. Over TLS, Close sends
	// close_notify first.
	ss.conn.Close()
	ss.in += <-up
	switch {
	case err != nil:
		ss.result = "ended: " + err.Error()
	default:
		ss.result = "ended"
	}
}
