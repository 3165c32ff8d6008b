package mailproxy

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"correo/src/imapwire"
	"correo/src/logging"
	"correo/src/proxyproto"
	"correo/src/pwclient"
	"correo/src/pwproto"
)

// The IMAP side of the proxy: the same route as POP3 (the password
// checked here, the user's storage host from passwdd, a PROXY v2 header
// with a login ticket, then bytes spliced both ways), with IMAP's own
// NOT AUTHENTICATED state. Before login the proxy answers CAPABILITY,
// NOOP, ID, LOGOUT, STARTTLS, LOGIN and AUTHENTICATE PLAIN itself; the
// backend's tagged login reply is handed to the client under the
// client's tag, and from then on the session is the backend's.

// imapLimits bound a command before login: a user name and a password.
var imapLimits = imapwire.Limits{MaxLine: 8 << 10, MaxLiteral: 8 << 10, MaxNonSync: 4 << 10, MaxDepth: 4, MaxArgs: 16, MaxSkip: 64 << 10}

func (s *Server) refuseIMAP(c net.Conn, implicitTLS bool, why string) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if implicitTLS {
		tc := tls.Server(c, s.cfg.TLS)
		if tc.Handshake() != nil {
			return
		}
		c = tc
	}
	fmt.Fprintf(c, "* BYE [UNAVAILABLE] %s, try again later.\r\n", capitalize(why))
}

type imapSession struct {
	*session
	r *imapwire.Reader
	w *imapwire.Writer
}

func (s *Server) handleIMAP(c net.Conn, client netip.AddrPort, implicitTLS bool) {
	base := &session{s: s, raw: c, conn: c, client: client, local: addrPort(c.LocalAddr()),
		start: time.Now(), trace: logging.NewTraceID(), result: "disconnected"}
	ss := &imapSession{session: base}
	ss.loginBy = ss.start.Add(s.cfg.Limits.LoginTimeout)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	defer ss.logEndIMAP()
	if implicitTLS {
		tc := tls.Server(c, s.cfg.TLS)
		tc.SetDeadline(time.Now().Add(s.cfg.Limits.IdleTimeout))
		if err := tc.Handshake(); err != nil {
			ss.result = "TLS handshake failed"
			return
		}
		ss.conn, ss.tls = tc, true
	}
	ss.setStream()
	ss.w.Tagged("*", "OK", "CAPABILITY "+ss.capabilities(), "correo IMAP proxy ready.")
	backend := ss.authorizeIMAP()
	if backend == nil {
		ss.w.Flush()
		return
	}
	ss.splice(backend)
}

func (ss *imapSession) setStream() {
	ss.br = bufio.NewReaderSize(ss.conn, 4096)
	ss.bw = bufio.NewWriterSize(ss.conn, 4096)
	ss.w = imapwire.NewWriter(ss.bw)
	ss.r = imapwire.NewReader(ss.br, imapLimits, func(l imapwire.LiteralInfo) error {
		if l.NonSync {
			return nil
		}
		ss.w.Continue("Ready")
		return ss.w.Flush()
	})
}

func (ss *imapSession) logEndIMAP() {
	ss.s.log.Info("imap proxy session", "trace", ss.trace, "user", ss.name, "client", ss.client.String(),
		"backend", ss.backend, "tls", ss.tls, "bytes_in", ss.in, "bytes_out", ss.out,
		"duration_ms", float64(time.Since(ss.start).Microseconds())/1000, "result", ss.result)
}

func (ss *imapSession) capabilities() string {
	caps := []string{"IMAP4rev2", "IMAP4rev1", "LITERAL+", "SASL-IR", "ID"}
	if ss.s.cfg.TLS != nil && !ss.tls {
		caps = append(caps, "STARTTLS")
	}
	if ss.plainAllowed() {
		caps = append(caps, "AUTH=PLAIN")
	} else {
		caps = append(caps, "LOGINDISABLED")
	}
	return strings.Join(caps, " ")
}

// authorizeIMAP runs NOT AUTHENTICATED until a backend session is open
// and logged in (returned) or the session is over (nil).
func (ss *imapSession) authorizeIMAP() *net.TCPConn {
	for {
		if ss.br.Buffered() == 0 {
			if ss.w.Flush() != nil {
				return nil
			}
		}
		if ss.cmds >= ss.s.cfg.Limits.MaxCommands {
			ss.result = "too many commands before login"
			ss.w.Tagged("*", "BYE", "", "Too many commands without logging in.")
			return nil
		}
		ss.conn.SetReadDeadline(minTime(time.Now().Add(ss.s.cfg.Limits.IdleTimeout), ss.loginBy))
		cmd, err := ss.r.ReadCommand()
		if err != nil {
			var we *imapwire.Error
			if !errors.As(err, &we) {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					ss.result = "timeout"
					ss.w.Tagged("*", "BYE", "", "Autologout: log in sooner.")
				}
				return nil
			}
			ss.cmds++
			tag, status := we.Tag, "BAD"
			if tag == "" {
				tag = "*"
			}
			if we.Err != nil {
				status = "NO"
			}
			ss.w.Tagged(tag, status, we.Code, we.Text)
			if we.Fatal {
				ss.result = "bad command"
				ss.w.Tagged("*", "BYE", "", "Closing.")
				return nil
			}
			continue
		}
		ss.cmds++
		switch cmd.Name {
		case "CAPABILITY":
			ss.w.Untagged("CAPABILITY " + ss.capabilities())
			ss.w.Tagged(cmd.Tag, "OK", "", "CAPABILITY completed.")
		case "NOOP":
			ss.w.Tagged(cmd.Tag, "OK", "", "NOOP completed.")
		case "ID":
			ss.w.Untagged(`ID ("name" "correo")`)
			ss.w.Tagged(cmd.Tag, "OK", "", "ID completed.")
		case "LOGOUT":
			ss.result = "logout"
			ss.w.Tagged("*", "BYE", "", "correo IMAP proxy logging out.")
			ss.w.Tagged(cmd.Tag, "OK", "", "LOGOUT completed.")
			return nil
		case "STARTTLS":
			if ss.s.cfg.TLS == nil || ss.tls || len(cmd.Args) != 0 {
				ss.w.Tagged(cmd.Tag, "BAD", "", "STARTTLS is not available.")
				continue
			}
			// Plaintext pipelined after STARTTLS would be taken as if it
			// came over TLS: refuse it.
			if ss.br.Buffered() > 0 {
				ss.result = "data after STARTTLS"
				ss.w.Tagged(cmd.Tag, "BAD", "", "Commands pipelined after STARTTLS are refused.")
				return nil
			}
			ss.w.Tagged(cmd.Tag, "OK", "", "Begin TLS negotiation now.")
			if ss.w.Flush() != nil {
				return nil
			}
			tc := tls.Server(ss.conn, ss.s.cfg.TLS)
			tc.SetDeadline(time.Now().Add(ss.s.cfg.Limits.IdleTimeout))
			if err := tc.Handshake(); err != nil {
				ss.result = "TLS handshake failed"
				return nil
			}
			ss.conn, ss.tls = tc, true
			ss.setStream()
		case "LOGIN", "AUTHENTICATE":
			user, pw, ok := ss.credentials(cmd)
			if !ok {
				continue
			}
			bc, done := ss.loginIMAP(cmd.Tag, user, pw)
			if bc != nil || done {
				return bc
			}
		default:
			ss.w.Tagged(cmd.Tag, "BAD", "", "Log in first: "+cmd.Name+" is not available before LOGIN.")
		}
	}
}

// credentials takes the user and password from LOGIN or AUTHENTICATE
// PLAIN (with SASL-IR, or after a continuation); false: answered already.
func (ss *imapSession) credentials(cmd *imapwire.Command) (user, pw string, ok bool) {
	if !ss.plainAllowed() {
		ss.w.Tagged(cmd.Tag, "NO", "PRIVACYREQUIRED", "Use STARTTLS before sending a password.")
		return "", "", false
	}
	if cmd.Name == "LOGIN" {
		if len(cmd.Args) == 2 {
			u, ok1 := cmd.Args[0].AString()
			p, ok2 := cmd.Args[1].AString()
			if ok1 && ok2 {
				return u, p, true
			}
		}
		ss.w.Tagged(cmd.Tag, "BAD", "", "LOGIN takes a user name and a password.")
		return "", "", false
	}
	if len(cmd.Args) < 1 || len(cmd.Args) > 2 || !strings.EqualFold(cmd.Args[0].Str, "PLAIN") {
		ss.w.Tagged(cmd.Tag, "NO", "", "Unsupported authentication mechanism: use PLAIN.")
		return "", "", false
	}
	var resp string
	if len(cmd.Args) == 2 {
		resp = cmd.Args[1].Str
		if resp == "=" {
			resp = ""
		}
	} else {
		ss.w.Continue("")
		if ss.w.Flush() != nil {
			return "", "", false
		}
		ss.conn.SetReadDeadline(minTime(time.Now().Add(ss.s.cfg.Limits.IdleTimeout), ss.loginBy))
		line, err := ss.r.ReadLine()
		if err != nil || line == "*" {
			ss.w.Tagged(cmd.Tag, "BAD", "", "Authentication cancelled.")
			return "", "", false
		}
		resp = line
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	parts := strings.Split(string(raw), "\x00")
	if err != nil || len(parts) != 3 || (parts[0] != "" && parts[0] != parts[1]) {
		ss.w.Tagged(cmd.Tag, "BAD", "", "Malformed PLAIN response.")
		return "", "", false
	}
	return parts[1], parts[2], true
}

// loginIMAP checks the password, finds the user's imapd and logs in
// there; done: the session is over.
func (ss *imapSession) loginIMAP(tag, user, pw string) (backend *net.TCPConn, done bool) {
	u, name, err := ss.checkPassword(user, pw)
	switch {
	case err == nil:
	case errors.Is(err, pwclient.ErrDenied), errors.Is(err, pwclient.ErrLockedOut):
		// One answer for every failure, after one growing delay, as POP3.
		ss.failures++
		if errors.Is(err, pwclient.ErrLockedOut) {
			ss.s.cfg.Metrics.login("imap", "locked_out")
		} else {
			ss.s.cfg.Metrics.login("imap", "failed")
		}
		delay := ss.s.fails.fail(ss.client.Addr(), ss.s.cfg.Limits)
		ss.s.log.Info("login failed", "trace", ss.trace, "client", ss.client.String(), "user", name, "protocol", "imap",
			"delay_ms", delay.Milliseconds())
		if ss.w.Flush() != nil {
			return nil, true
		}
		time.Sleep(delay)
		ss.w.Tagged(tag, "NO", "AUTHENTICATIONFAILED", "Authentication failed.")
		if ss.failures >= ss.s.cfg.Limits.MaxAuthFailures {
			ss.result = "too many failed logins"
			ss.w.Tagged("*", "BYE", "", "Too many failed logins; closing.")
			return nil, true
		}
		return nil, false
	default:
		ss.s.cfg.Metrics.login("imap", "tempfail")
		ss.result = "password service unavailable"
		ss.s.log.Warn("password check failed", "trace", ss.trace, "user", name, "err", err)
		ss.w.Tagged(tag, "NO", "UNAVAILABLE", "Authentication service unavailable, try again later.")
		return nil, false
	}
	ss.name = u.Name
	if u.State == pwproto.StateMoving {
		ss.s.cfg.Metrics.login("imap", "moving")
		ss.result = "mailbox being moved"
		ss.w.Tagged(tag, "NO", "UNAVAILABLE", "Your mailbox is being moved; try again in a few minutes.")
		return nil, false
	}
	addr, ok := ss.s.imapds[u.Storage]
	ss.backend = u.Storage
	if !ok {
		ss.s.cfg.Metrics.login("imap", "tempfail")
		ss.s.cfg.Metrics.backendError("imap", "no_backend")
		ss.result = "no backend for storage host"
		ss.s.log.Error("user's storage host provides no imap_backend in the profile", "trace", ss.trace, "user", u.Name, "storage", u.Storage)
		ss.w.Tagged(tag, "NO", "UNAVAILABLE", "Your mailbox server is not available, try again later.")
		return nil, false
	}
	ss.backend = u.Storage + " " + addr.String()
	bc, reply, err := ss.connectIMAP(addr, u.Name, pw)
	if err != nil {
		ss.s.cfg.Metrics.login("imap", "tempfail")
		ss.s.cfg.Metrics.backendError("imap", "connect")
		ss.result = "backend unavailable"
		ss.s.log.Warn("backend unavailable", "trace", ss.trace, "user", u.Name, "backend", addr.String(), "err", err)
		ss.w.Tagged(tag, "NO", "UNAVAILABLE", "Your mailbox server is not available, try again later.")
		return nil, false
	}
	// The backend's answer, under the client's tag.
	status, rest, _ := strings.Cut(reply, " ")
	ss.bw.WriteString(tag + " " + status + " " + rest + "\r\n")
	if status != "OK" {
		bc.Close()
		ss.s.cfg.Metrics.login("imap", "in_use")
		ss.s.cfg.Metrics.backendError("imap", "refused")
		ss.result = "refused by backend"
		ss.s.log.Info("backend refused the login", "trace", ss.trace, "user", u.Name, "reply", reply)
		return nil, false
	}
	ss.s.cfg.Metrics.login("imap", "ok")
	ss.result = "logged in"
	return bc, false
}

// backendTag tags the proxy's own login command on the backend.
const backendTag = "p1"

// connectIMAP opens the backend session: PROXY header (with the ticket)
// and AUTHENTICATE PLAIN with SASL-IR in one write after the greeting,
// then the tagged answer, returned without the tag.
func (ss *imapSession) connectIMAP(addr netip.AddrPort, user, pw string) (*net.TCPConn, string, error) {
	c, err := ss.s.dialer.Dial("tcp", addr.String())
	if err != nil {
		return nil, "", err
	}
	bc := c.(*net.TCPConn)
	bc.SetNoDelay(true)
	bc.SetDeadline(time.Now().Add(ss.s.cfg.AuthTimeout + ss.s.cfg.Limits.DialTimeout))
	h := proxyproto.Header{Source: ss.client, Dest: ss.local, TLS: ss.tls, UniqueID: ss.trace}
	if ss.s.cfg.Tickets != nil {
		if tk, err := ss.s.cfg.Tickets.Seal(user, ss.client, time.Now()); err == nil {
			h.Ticket = tk
		}
	}
	hdr, err := h.Encode()
	if err != nil {
		bc.Close()
		return nil, "", err
	}
	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
	msg := append(hdr, backendTag+" AUTHENTICATE PLAIN "+plain+"\r\n"...)
	if _, err := bc.Write(msg); err != nil {
		bc.Close()
		return nil, "", err
	}
	br := bufio.NewReaderSize(bc, 1024)
	greet, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(greet, "* OK") {
		bc.Close()
		return nil, "", fmt.Errorf("backend greeting %q: %v", strings.TrimSpace(greet), err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			bc.Close()
			return nil, "", fmt.Errorf("reading the login reply: %w", err)
		}
		if rest, ok := strings.CutPrefix(line, backendTag+" "); ok {
			if br.Buffered() > 0 {
				bc.Close()
				return nil, "", errors.New("backend sent more than the login reply")
			}
			bc.SetDeadline(time.Time{})
			return bc, strings.TrimRight(rest, "\r\n"), nil
		}
		// Untagged lines before the answer (none today) are dropped: the
		// client never asked for them.
	}
}
