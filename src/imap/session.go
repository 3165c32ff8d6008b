package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"correo/src/imapwire"
	"correo/src/logging"
	"correo/src/mailbox"
	"correo/src/mailstore"
	"correo/src/proxyproto"
	"correo/src/pwclient"
	"correo/src/pwproto"
	"correo/src/ticket"
)

type state int

const (
	stateNotAuth state = iota
	stateAuth
	stateSelected
	stateLogout
)

// preauthLiteral bounds a literal before login: a LOGIN password, never
// a message.
const preauthLiteral = 8 << 10

type session struct {
	s      *Server
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	r      *imapwire.Reader
	w      *imapwire.Writer
	client netip.AddrPort // the real client (from PROXY when proxied)
	via    netip.AddrPort // the proxy, when proxied
	ticket *ticket.Ticket
	tls    bool
	trace  string
	start  time.Time
	state  state
	bad    int

	user  pwproto.User
	root  string // the user's Maildir
	store *mailstore.Store
	mb    *mailstore.Mailbox // the selected folder
	// saved is SEARCH RETURN (SAVE)'s result, "$" (RFC 5182).
	saved imapwire.SeqSet
	// searchFiles are the message files one SEARCH step opened.
	searchFiles []*os.File
	// utf8: the client enabled UTF8=ACCEPT or IMAP4rev2 (mailbox names in
	// UTF-8, not modified UTF-7).
	utf8    bool
	enabled map[string]bool

	result   string
	commands int

	// moving is set by the marker watch (stopMoving) when the mailbox is
	// frozen for a move: the session ends with a BYE.
	moving     atomic.Bool
	stopMoving func()
}

// Replies used in several places.
const (
	textAuthFailed = "Authentication failed."
	textTemp       = "Authentication service unavailable, try again later."
)

func (s *Server) handle(c net.Conn) {
	ss := &session{s: s, conn: c, start: time.Now(), result: "disconnected", enabled: map[string]bool{}}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	ss.client = addrPort(c.RemoteAddr())
	ss.setStream(c)
	defer ss.finish()
	if n := s.active.Add(1); n > int64(s.cfg.Limits.MaxConnections) {
		defer s.active.Add(-1)
		ss.result = "too many connections"
		ss.w.Tagged("*", "BYE", "UNAVAILABLE", "Too many connections, try again later.")
		ss.w.Flush()
		return
	}
	defer s.active.Add(-1)
	if ss.client.IsValid() && !s.network.Contains(ss.client.Addr()) {
		ss.result = "outside the cluster network"
		ss.w.Tagged("*", "BYE", "", "This server only serves the cluster's proxies; connect to the IMAP proxy.")
		ss.w.Flush()
		return
	}
	ss.conn.SetDeadline(ss.start.Add(s.cfg.Limits.LoginTimeout))
	ss.w.Tagged("*", "OK", "CAPABILITY "+ss.capabilities(), "correo IMAP server ready.")
	ss.w.Flush()
	if err := ss.prelude(); err != nil {
		return
	}
	if ss.trace == "" {
		ss.trace = logging.NewTraceID()
	}
	ss.loop()
}

// prelude reads a PROXY v2 header, if the connection starts with one: its
// signature starts with CR LF, which no command does, and is peeked byte
// by byte, so a direct client's first command is not waited for. Only the
// profile's proxy hosts may send one.
func (ss *session) prelude() error {
	s := ss.s
	ok, err := proxyproto.HasSignature(ss.br)
	if err != nil || !ok {
		return err
	}
	if !s.ProxyAllowed(ss.client.Addr()) {
		ss.result = "PROXY header from a non-proxy address"
		s.log.Warn("refused a PROXY header from an address that is not a proxy host of the profile", "client", ss.client.String())
		ss.w.Tagged("*", "BYE", "", "PROXY protocol header not accepted from this address.")
		ss.w.Flush()
		return errors.New("PROXY header from a non-proxy")
	}
	h, err := proxyproto.Read(ss.br)
	if err != nil {
		ss.result = "bad PROXY header"
		s.log.Warn("bad PROXY header from a proxy host", "proxy", ss.client.String(), "err", err)
		ss.w.Tagged("*", "BYE", "", "Malformed PROXY protocol header.")
		ss.w.Flush()
		return err
	}
	if !h.Local {
		ss.via, ss.client = ss.client, h.Source
		ss.tls = h.TLS
		ss.trace = h.UniqueID
		if len(h.Ticket) > 0 && s.cfg.Tickets != nil {
			// A ticket that does not open only costs the full password
			// check at login.
			if tk, err := s.cfg.Tickets.Open(h.Ticket, time.Now()); err == nil && tk.Client == ss.client {
				ss.ticket = &tk
			} else if err != nil {
				s.log.Warn("login ticket refused", "proxy", ss.via.String(), "err", err)
			}
		}
	}
	return nil
}

// setStream (re)builds the buffered reader and writer over c: at the
// start and after STARTTLS.
func (ss *session) setStream(c net.Conn) {
	ss.conn = c
	ss.br = bufio.NewReaderSize(c, 8<<10)
	ss.bw = bufio.NewWriterSize(c, 32<<10)
	ss.w = imapwire.NewWriter(ss.bw)
	ss.r = imapwire.NewReader(ss.br, ss.s.cfg.Limits.Wire, ss.literal)
	ss.r.SetUTF8(ss.utf8)
}

// literal answers a client's literal before its octets are read: a
// synchronising literal gets "+" (the client waits for it), a refused one
// a tagged NO without reading anything.
func (ss *session) literal(l imapwire.LiteralInfo) error {
	if ss.state == stateNotAuth && l.Size > preauthLiteral {
		return fmt.Errorf("a literal of %d octets before login", l.Size)
	}
	if l.NonSync {
		return nil
	}
	if err := ss.w.Continue("Ready for literal data"); err != nil {
		return err
	}
	return ss.w.Flush()
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func (ss *session) finish() {
	ss.stopWatch()
	attrs := []any{"trace", ss.trace, "client", ss.client.String(), "user", ss.user.Name, "result", ss.result,
		"duration_ms", float64(time.Since(ss.start).Microseconds()) / 1000, "tls", ss.tls, "commands", ss.commands}
	if ss.via.IsValid() {
		attrs = append(attrs, "proxy", ss.via.String())
	}
	ss.s.log.Info("imap session", attrs...)
}

// plainAllowed: passwords in the clear only over TLS, from a proxy (which
// enforced the policy at the edge), or on a network the profile trusts.
func (ss *session) plainAllowed() bool {
	return ss.tls || ss.via.IsValid() || ss.s.trusted
}

// capabilities lists what the session offers now (RFC 9051 section
// 7.2.2): before login only what a client needs to log in.
func (ss *session) capabilities() string {
	caps := []string{"IMAP4rev2", "IMAP4rev1", "LITERAL+", "ID", "ENABLE", "SASL-IR", "BINARY"}
	if ss.state == stateNotAuth {
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
	caps = append(caps, "NAMESPACE", "UTF8=ACCEPT", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE", "CREATE-SPECIAL-USE",
		"ESEARCH", "SEARCHRES", "LIST-STATUS", "UNSELECT", "CONDSTORE", "QRESYNC", "STATUS=SIZE",
		"QUOTA", "QUOTA=RES-STORAGE")
	return strings.Join(caps, " ")
}

func (ss *session) deadline() time.Time {
	if ss.state == stateNotAuth {
		return ss.start.Add(ss.s.cfg.Limits.LoginTimeout)
	}
	return time.Now().Add(ss.s.cfg.Limits.IdleTimeout)
}

func (ss *session) loop() {
	for ss.state != stateLogout {
		if ss.moving.Load() {
			ss.byeMoved()
			break
		}
		ss.setReadDeadline(ss.deadline())
		cmd, err := ss.r.ReadCommand()
		if ss.moving.Load() {
			// Pipelined commands too: not one more is run.
			ss.byeMoved()
			break
		}
		if err != nil {
			var we *imapwire.Error
			if !errors.As(err, &we) {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					ss.result = "timeout"
					ss.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
					ss.w.Tagged("*", "BYE", "", "Autologout: idle for too long.")
					ss.w.Flush()
				}
				return
			}
			tag, status := we.Tag, "BAD"
			if tag == "" {
				tag = "*"
			}
			if we.Err != nil {
				status = "NO"
			}
			ss.w.Tagged(tag, status, we.Code, we.Text)
			if we.Fatal || ss.tooBad() {
				ss.result = "bad commands"
				ss.w.Tagged("*", "BYE", "", "Too many bad commands.")
				ss.w.Flush()
				return
			}
			if ss.br.Buffered() == 0 {
				ss.w.Flush()
			}
			continue
		}
		ss.commands++
		ss.conn.SetWriteDeadline(time.Now().Add(ss.s.cfg.Limits.IdleTimeout))
		if done := ss.dispatch(cmd); done {
			ss.w.Flush()
			return
		}
		// Pipelined commands are answered in one write.
		if ss.br.Buffered() == 0 {
			if err := ss.w.Flush(); err != nil {
				return
			}
		}
	}
	ss.w.Flush()
}

func (ss *session) tooBad() bool {
	ss.bad++
	return ss.bad > ss.s.cfg.Limits.MaxBadCommands
}

// bad answers a bad command; past the limit the session ends.
func (ss *session) bad1(cmd *imapwire.Command, text string) bool {
	ss.w.Tagged(cmd.Tag, "BAD", "", text)
	if ss.tooBad() {
		ss.result = "bad commands"
		ss.w.Tagged("*", "BYE", "", "Too many bad commands.")
		return true
	}
	return false
}

// dispatch runs one command; true ends the session.
func (ss *session) dispatch(cmd *imapwire.Command) bool {
	if cmd.UID && !uidCommands[cmd.Name] {
		return ss.bad1(cmd, "UID "+cmd.Name+" is not a command.")
	}
	switch cmd.Name {
	case "CAPABILITY":
		if len(cmd.Args) != 0 {
			return ss.bad1(cmd, "CAPABILITY takes no arguments.")
		}
		ss.w.Untagged("CAPABILITY " + ss.capabilities())
		ss.w.Tagged(cmd.Tag, "OK", "", "CAPABILITY completed.")
		return false
	case "NOOP":
		if len(cmd.Args) != 0 {
			return ss.bad1(cmd, "NOOP takes no arguments.")
		}
		return ss.refreshAndTag(cmd, true)
	case "LOGOUT":
		ss.w.Tagged("*", "BYE", "", "correo IMAP server logging out.")
		ss.w.Tagged(cmd.Tag, "OK", "", "LOGOUT completed.")
		if ss.result == "disconnected" || ss.result == "" {
			ss.result = "logout"
		}
		ss.state = stateLogout
		return true
	case "ID":
		return ss.id(cmd)
	}
	if ss.state == stateNotAuth {
		switch cmd.Name {
		case "STARTTLS":
			return ss.startTLS(cmd)
		case "LOGIN":
			return ss.loginCmd(cmd)
		case "AUTHENTICATE":
			return ss.authenticate(cmd)
		}
		if authenticatedCommands[cmd.Name] {
			ss.w.Tagged(cmd.Tag, "BAD", "", cmd.Name+" needs a login first.")
			return ss.tooBadEnd()
		}
		return ss.bad1(cmd, "Unknown command "+cmd.Name+".")
	}
	switch cmd.Name {
	case "STARTTLS", "LOGIN", "AUTHENTICATE":
		return ss.bad1(cmd, "Already logged in.")
	case "ENABLE":
		return ss.enable(cmd)
	case "NAMESPACE":
		if len(cmd.Args) != 0 {
			return ss.bad1(cmd, "NAMESPACE takes no arguments.")
		}
		ss.w.Untagged(`NAMESPACE (("" "/")) NIL NIL`)
		ss.w.Tagged(cmd.Tag, "OK", "", "NAMESPACE completed.")
		return false
	}
	if done, ok := ss.authCommand(cmd); ok {
		return done
	}
	return ss.bad1(cmd, "Unknown command "+cmd.Name+".")
}

func (ss *session) tooBadEnd() bool {
	if ss.tooBad() {
		ss.result = "bad commands"
		ss.w.Tagged("*", "BYE", "", "Too many bad commands.")
		return true
	}
	return false
}

// uidCommands may carry the UID prefix.
var uidCommands = map[string]bool{"FETCH": true, "STORE": true, "COPY": true, "MOVE": true, "SEARCH": true, "EXPUNGE": true}

// authenticatedCommands exist, but not before login: a clearer answer
// than "unknown".
var authenticatedCommands = map[string]bool{"SELECT": true, "EXAMINE": true, "CREATE": true, "DELETE": true,
	"RENAME": true, "SUBSCRIBE": true, "UNSUBSCRIBE": true, "LIST": true, "LSUB": true, "STATUS": true,
	"APPEND": true, "IDLE": true, "ENABLE": true, "NAMESPACE": true, "CLOSE": true, "UNSELECT": true,
	"EXPUNGE": true, "SEARCH": true, "FETCH": true, "STORE": true, "COPY": true, "MOVE": true,
	"GETQUOTA": true, "GETQUOTAROOT": true}

// id answers RFC 2971's ID with correo's name, whatever the client says
// about itself (logged, bounded by the wire limits).
func (ss *session) id(cmd *imapwire.Command) bool {
	if len(cmd.Args) != 1 || (!cmd.Args[0].IsNIL() && cmd.Args[0].Kind != imapwire.KindList) {
		return ss.bad1(cmd, "ID takes NIL or a list of field-value pairs.")
	}
	ss.w.Untagged(`ID ("name" "correo" "vendor" "correo")`)
	ss.w.Tagged(cmd.Tag, "OK", "", "ID completed.")
	return false
}

// enable turns on the extensions correo has (RFC 5161); others are
// ignored, as the RFC asks.
func (ss *session) enable(cmd *imapwire.Command) bool {
	if len(cmd.Args) == 0 {
		return ss.bad1(cmd, "ENABLE needs at least one capability.")
	}
	var on []string
	for _, a := range cmd.Args {
		if a.Kind != imapwire.KindAtom {
			return ss.bad1(cmd, "ENABLE takes capability names.")
		}
		c := strings.ToUpper(a.Str)
		switch c {
		case "IMAP4REV2", "UTF8=ACCEPT":
			if !ss.enabled[c] {
				ss.enabled[c] = true
				on = append(on, c)
			}
			ss.utf8 = true
			ss.r.SetUTF8(true)
		case "CONDSTORE", "QRESYNC":
			if !ss.enabled[c] {
				ss.enabled[c] = true
				on = append(on, c)
			}
			// QRESYNC implies CONDSTORE (RFC 7162 3.2.3).
			ss.enabled["CONDSTORE"] = true
		}
	}
	ss.w.Untagged(strings.TrimSpace("ENABLED " + strings.Join(on, " ")))
	ss.w.Tagged(cmd.Tag, "OK", "", "ENABLE completed.")
	return false
}

func (ss *session) startTLS(cmd *imapwire.Command) bool {
	if len(cmd.Args) != 0 {
		return ss.bad1(cmd, "STARTTLS takes no arguments.")
	}
	if ss.s.cfg.TLS == nil || ss.tls {
		return ss.bad1(cmd, "STARTTLS is not available.")
	}
	// Anything pipelined after STARTTLS would be plaintext read as if
	// protected (CVE-2011-0411 and its IMAP cousins): refuse it.
	if ss.br.Buffered() > 0 {
		ss.result = "data after STARTTLS"
		ss.w.Tagged(cmd.Tag, "BAD", "", "Commands pipelined after STARTTLS are refused.")
		ss.w.Tagged("*", "BYE", "", "Closing.")
		return true
	}
	ss.w.Tagged(cmd.Tag, "OK", "", "Begin TLS negotiation now.")
	if err := ss.w.Flush(); err != nil {
		return true
	}
	tc := tls.Server(ss.conn, ss.s.cfg.TLS)
	tc.SetDeadline(ss.deadline())
	if err := tc.Handshake(); err != nil {
		ss.result = "TLS handshake failed"
		return true
	}
	ss.tls = true
	ss.setStream(tc)
	return false
}

func (ss *session) loginCmd(cmd *imapwire.Command) bool {
	if len(cmd.Args) != 2 {
		return ss.bad1(cmd, "LOGIN takes a user name and a password.")
	}
	user, ok1 := cmd.Args[0].AString()
	pass, ok2 := cmd.Args[1].AString()
	if !ok1 || !ok2 {
		return ss.bad1(cmd, "LOGIN takes a user name and a password.")
	}
	if !ss.plainAllowed() {
		ss.w.Tagged(cmd.Tag, "NO", "PRIVACYREQUIRED", "Use STARTTLS before sending a password.")
		return ss.tooBadEnd()
	}
	return ss.login(cmd, user, pass)
}

// authenticate is AUTHENTICATE PLAIN (RFC 4616), with SASL-IR (RFC 4959).
func (ss *session) authenticate(cmd *imapwire.Command) bool {
	if len(cmd.Args) < 1 || len(cmd.Args) > 2 || cmd.Args[0].Kind != imapwire.KindAtom {
		return ss.bad1(cmd, "AUTHENTICATE takes a mechanism and an optional initial response.")
	}
	if !strings.EqualFold(cmd.Args[0].Str, "PLAIN") {
		ss.w.Tagged(cmd.Tag, "NO", "", "Unsupported authentication mechanism: use PLAIN.")
		return ss.tooBadEnd()
	}
	if !ss.plainAllowed() {
		ss.w.Tagged(cmd.Tag, "NO", "PRIVACYREQUIRED", "Use STARTTLS before sending a password.")
		return ss.tooBadEnd()
	}
	var resp string
	if len(cmd.Args) == 2 {
		if cmd.Args[1].Kind != imapwire.KindAtom {
			return ss.bad1(cmd, "The initial response must be base64 or \"=\".")
		}
		resp = cmd.Args[1].Str
		if resp == "=" {
			resp = ""
		}
	} else {
		ss.w.Continue("")
		if err := ss.w.Flush(); err != nil {
			return true
		}
		ss.conn.SetReadDeadline(ss.deadline())
		line, err := ss.r.ReadLine()
		if err != nil {
			return true
		}
		if line == "*" {
			ss.w.Tagged(cmd.Tag, "BAD", "", "Authentication cancelled.")
			return ss.tooBadEnd()
		}
		resp = line
	}
	raw, err := base64.StdEncoding.DecodeString(resp)
	if err != nil {
		return ss.bad1(cmd, "The response is not base64.")
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || (parts[0] != "" && parts[0] != parts[1]) {
		ss.w.Tagged(cmd.Tag, "NO", "AUTHENTICATIONFAILED", textAuthFailed)
		return ss.tooBadEnd()
	}
	return ss.login(cmd, parts[1], parts[2])
}

// login checks the password (or the proxy's ticket), the user's state and
// storage host, and enters the authenticated state.
func (ss *session) login(cmd *imapwire.Command, user, pw string) bool {
	ticket := ss.ticket != nil
	done := ss.doLogin(cmd, user, pw)
	// A ticket is spent (set to nil) when it spared the password check.
	ss.s.cfg.Metrics.login(ss.result, ticket && ss.ticket == nil)
	return done
}

func (ss *session) doLogin(cmd *imapwire.Command, user, pw string) bool {
	name, err := mailbox.NormalizeName(user)
	if err != nil {
		ss.result = "bad user name"
		ss.w.Tagged(cmd.Tag, "NO", "AUTHENTICATIONFAILED", textAuthFailed)
		return ss.tooBadEnd()
	}
	ctx, cancel := context.WithTimeout(logging.WithTrace(context.Background(), ss.trace), ss.s.cfg.AuthTimeout)
	var u pwproto.User
	if ss.ticket != nil && ss.ticket.User == name {
		// The proxy checked this password a moment ago (its ticket says
		// so, sealed with the cluster key): only the record is needed.
		u, err = ss.s.cfg.Users.LookupName(ctx, name)
		if errors.Is(err, pwclient.ErrNotFound) {
			err = pwclient.ErrDenied
		}
		ss.ticket = nil
	} else {
		u, err = ss.s.cfg.Users.Authenticate(ctx, name, pw, ss.client.Addr().String())
	}
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, pwclient.ErrDenied), errors.Is(err, pwclient.ErrLockedOut):
		ss.result = "authentication failed"
		if errors.Is(err, pwclient.ErrLockedOut) {
			ss.result = "locked out"
		}
		ss.s.log.Info("login failed", "trace", ss.trace, "client", ss.client.String(), "user", name, "reason", ss.result)
		ss.w.Tagged(cmd.Tag, "NO", "AUTHENTICATIONFAILED", textAuthFailed)
		return ss.tooBadEnd()
	default:
		ss.result = "password service unavailable"
		ss.s.log.Warn("password check failed", "trace", ss.trace, "user", name, "err", err)
		ss.w.Tagged(cmd.Tag, "NO", "UNAVAILABLE", textTemp)
		return false
	}
	switch {
	case u.State == pwproto.StateDisabled:
		ss.result = "disabled"
		ss.w.Tagged(cmd.Tag, "NO", "AUTHENTICATIONFAILED", textAuthFailed)
		return ss.tooBadEnd()
	case u.State == pwproto.StateMoving:
		ss.result = "mailbox being moved"
		ss.w.Tagged(cmd.Tag, "NO", "UNAVAILABLE", "Your mailbox is being moved; try again in a few minutes.")
		return false
	case u.Storage != ss.s.cfg.Host.Name:
		ss.result = "stored on another host"
		ss.s.log.Warn("login for a user stored on another host", "trace", ss.trace, "user", u.Name,
			"storage", u.Storage, "client", ss.client.String())
		ss.w.Tagged(cmd.Tag, "NO", "UNAVAILABLE", "Your mailbox is on "+u.Storage+", not on this server; connect through the IMAP proxy.")
		return false
	}
	root, err := ss.s.scheme.MaildirPath(ss.s.dataDir, u.Name)
	if err != nil {
		ss.result = "bad user name"
		ss.w.Tagged(cmd.Tag, "NO", "AUTHENTICATIONFAILED", textAuthFailed)
		return ss.tooBadEnd()
	}
	// The directory says the user is here, but the Maildir is being
	// copied away: the move ends with the directory pointing elsewhere.
	if mailbox.Moving(root) {
		ss.result = "mailbox being moved"
		ss.w.Tagged(cmd.Tag, "NO", "INUSE", textMovingLogin)
		return false
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		ss.result = "mailbox unusable"
		ss.s.log.Error("creating the user's Maildir", "trace", ss.trace, "user", u.Name, "err", err)
		ss.w.Tagged(cmd.Tag, "NO", "SERVERBUG", "Your mailbox cannot be opened now; try again later.")
		return false
	}
	ss.user, ss.root = u, root
	err = ss.openStore()
	if err == nil && !ss.watchMoving() {
		err = mailstore.ErrMoving
	}
	if errors.Is(err, mailstore.ErrMoving) {
		// The marker came after the check above.
		ss.store = nil
		ss.result = "mailbox being moved"
		ss.w.Tagged(cmd.Tag, "NO", "INUSE", textMovingLogin)
		return false
	}
	if err != nil {
		ss.result = "mailbox unusable"
		ss.s.log.Error("opening the user's mailbox", "trace", ss.trace, "user", u.Name, "err", err)
		ss.w.Tagged(cmd.Tag, "NO", "SERVERBUG", "Your mailbox cannot be opened now; try again later.")
		return false
	}
	ss.state = stateAuth
	ss.result = "logged in"
	ss.w.Tagged(cmd.Tag, "OK", "CAPABILITY "+ss.capabilities(), "Logged in.")
	return false
}
