package pop3

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"correo/src/logging"
	"correo/src/mailbox"
	"correo/src/proxyproto"
	"correo/src/pwclient"
	"correo/src/pwproto"
	"correo/src/ticket"
)

type state int

const (
	stateAuth state = iota
	stateTrans
)

// message is one entry of the session's fixed list.
type message struct {
	m       mailbox.Message
	size    int64 // octets as sent (W=), see the package comment
	deleted bool
}

type session struct {
	s      *Server
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	client netip.AddrPort // the real client (from PROXY when proxied)
	via    netip.AddrPort // the proxy, when proxied
	// ticket is the proxy's word that it checked this user's password.
	ticket  *ticket.Ticket
	tls     bool
	trace   string
	start   time.Time
	state   state
	loginBy time.Time

	user    string // from USER, waiting for PASS
	name    string // logged-in user
	md      *mailbox.Maildir
	msgs    []message
	release func()
	bad     int
	// moving is set by the marker watch (stopWatch) when the mailbox is
	// frozen for a move: the session ends without applying anything.
	moving    atomic.Bool
	stopWatch func()

	// for the session's log line
	result        string
	retr, deleted int
	bytesOut      int64
}

// Replies used in several places.
const (
	replyAuthFailed = "-ERR [AUTH] Authentication failed."
	replyTemp       = "-ERR [SYS/TEMP] Authentication service unavailable, try again later."
	replyNoPlain    = "-ERR [AUTH] Plaintext authentication is not allowed without TLS: use STLS first."
)

func (s *Server) handle(c net.Conn) {
	ss := &session{s: s, conn: c, start: time.Now(), result: "disconnected"}
	if tc, ok := c.(*net.TCPConn); ok {
		// Replies are written whole and flushed once per batch of
		// pipelined commands; Nagle would only add delay.
		tc.SetNoDelay(true)
	}
	ss.client = addrPort(c.RemoteAddr())
	ss.br = bufio.NewReaderSize(c, 4096)
	ss.bw = bufio.NewWriterSize(c, 32<<10)
	ss.loginBy = ss.start.Add(s.cfg.Limits.LoginTimeout)
	defer ss.finish()
	if n := s.active.Add(1); n > int64(s.cfg.Limits.MaxConnections) {
		defer s.active.Add(-1)
		ss.result = "too many connections"
		ss.reply("-ERR [SYS/TEMP] Too many connections, try again later.")
		ss.bw.Flush()
		return
	}
	defer s.active.Add(-1)
	if ss.client.IsValid() && !s.network.Contains(ss.client.Addr()) {
		ss.result = "outside the cluster network"
		ss.reply("-ERR [SYS/PERM] This server only serves the cluster's POP proxies; connect to the POP proxy.")
		ss.bw.Flush()
		return
	}
	ss.reply("+OK correo POP3 server ready.")
	ss.bw.Flush()
	ss.conn.SetDeadline(ss.loginBy)
	// A PROXY v2 header, if any, comes first; its signature starts with
	// CR LF, which no command does.
	if ok, err := proxyproto.HasSignature(ss.br); err != nil {
		return
	} else if ok {
		if !s.ProxyAllowed(ss.client.Addr()) {
			ss.result = "PROXY header from a non-proxy address"
			s.log.Warn("refused a PROXY header from an address that is not a mailproxy host of the profile",
				"client", ss.client.String())
			ss.reply("-ERR [SYS/PERM] PROXY protocol header not accepted from this address.")
			ss.bw.Flush()
			return
		}
		h, err := proxyproto.Read(ss.br)
		if err != nil {
			ss.result = "bad PROXY header"
			s.log.Warn("bad PROXY header from a mailproxy host", "proxy", ss.client.String(), "err", err)
			ss.reply("-ERR [SYS/PERM] Malformed PROXY protocol header.")
			ss.bw.Flush()
			return
		}
		if !h.Local {
			ss.via, ss.client = ss.client, h.Source
			ss.tls = h.TLS
			ss.trace = h.UniqueID
			if len(h.Ticket) > 0 && s.cfg.Tickets != nil {
				// A ticket that does not open only costs the full
				// password check below.
				if tk, err := s.cfg.Tickets.Open(h.Ticket, time.Now()); err == nil && tk.Client == ss.client {
					ss.ticket = &tk
				} else if err != nil {
					s.log.Warn("login ticket refused", "proxy", ss.via.String(), "err", err)
				}
			}
		}
	}
	if ss.trace == "" {
		ss.trace = logging.NewTraceID()
	}
	ss.loop()
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func (ss *session) finish() {
	ss.unlock()
	attrs := []any{"trace", ss.trace, "client", ss.client.String(), "user", ss.name, "result", ss.result,
		"duration_ms", float64(time.Since(ss.start).Microseconds()) / 1000, "tls", ss.tls}
	if ss.via.IsValid() {
		attrs = append(attrs, "proxy", ss.via.String())
	}
	if ss.name != "" {
		attrs = append(attrs, "messages", len(ss.msgs), "retrieved", ss.retr, "bytes_out", ss.bytesOut, "deleted", ss.deleted)
	}
	ss.s.log.Info("pop3 session", attrs...)
}

func (ss *session) reply(line string) {
	ss.bw.WriteString(line)
	ss.bw.WriteString("\r\n")
}

func (ss *session) replyf(format string, a ...any) {
	fmt.Fprintf(ss.bw, format, a...)
	ss.bw.WriteString("\r\n")
}

// plainAllowed: passwords in the clear only over TLS, from a proxy (which
// enforced the policy at the edge), or on a network the profile trusts.
func (ss *session) plainAllowed() bool {
	return ss.tls || ss.via.IsValid() || ss.s.trusted
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line of at most MaxLineLength bytes.
func (ss *session) readLine() ([]byte, error) {
	var deadline time.Time
	if ss.state == stateAuth {
		deadline = ss.loginBy
	} else {
		deadline = time.Now().Add(ss.s.cfg.Limits.IdleTimeout)
	}
	ss.conn.SetReadDeadline(deadline)
	if ss.moving.Load() {
		// The watch may have put the deadline in the past just before
		// the line above moved it on.
		ss.conn.SetReadDeadline(time.Now())
	}
	line, err := ss.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > ss.s.cfg.Limits.MaxLineLength {
		return nil, errLineTooLong
	}
	return line, err
}

func (ss *session) loop() {
	for {
		if ss.moving.Load() {
			ss.endMoved()
			return
		}
		// Flush only when the client has sent nothing more: a pipelined
		// batch of commands gets its replies in one write.
		if ss.br.Buffered() == 0 {
			if err := ss.bw.Flush(); err != nil {
				return
			}
		}
		line, err := ss.readLine()
		if ss.moving.Load() {
			// Pipelined commands too: not one more is run.
			ss.endMoved()
			return
		}
		if err != nil {
			switch {
			case errors.Is(err, errLineTooLong):
				ss.result = "line too long"
				ss.reply("-ERR Line too long; closing.")
				ss.bw.Flush()
			case errors.Is(err, os.ErrDeadlineExceeded):
				ss.result = "timeout"
				if ss.state == stateAuth {
					ss.reply("-ERR [SYS/PERM] Login timeout; closing.")
				} else {
					ss.reply("-ERR Autologout; idle for too long.")
				}
				ss.bw.Flush()
			}
			return
		}
		ss.conn.SetWriteDeadline(time.Now().Add(ss.s.cfg.Limits.IdleTimeout))
		cmd, err := ParseCommand(line)
		if err != nil {
			if !ss.bad1("-ERR " + err.Error() + ".") {
				return
			}
			continue
		}
		if !ss.dispatch(cmd) {
			ss.bw.Flush()
			return
		}
	}
}

// bad1 answers a bad command and counts it; false means the session is
// over.
func (ss *session) bad1(reply string) bool {
	ss.bad++
	ss.reply(reply)
	if ss.bad >= ss.s.cfg.Limits.MaxBadCommands {
		ss.result = "too many bad commands"
		ss.reply("-ERR Too many bad commands; closing.")
		ss.bw.Flush()
		return false
	}
	return true
}

// dispatch runs one command; false ends the session.
func (ss *session) dispatch(cmd Command) bool {
	switch cmd.Name {
	case "CAPA":
		ss.capa()
		return true
	case "QUIT":
		return ss.quit()
	}
	if ss.state == stateAuth {
		switch cmd.Name {
		case "USER":
			if len(cmd.Args) != 1 {
				return ss.bad1("-ERR Usage: USER name")
			}
			if !ss.plainAllowed() {
				return ss.bad1(replyNoPlain)
			}
			ss.user = cmd.Args[0]
			ss.reply("+OK Send the password.")
			return true
		case "PASS":
			if ss.user == "" {
				return ss.bad1("-ERR Send USER first.")
			}
			if len(cmd.Args) != 1 {
				return ss.bad1("-ERR Usage: PASS password")
			}
			user := ss.user
			ss.user = ""
			return ss.login(user, cmd.Args[0])
		case "AUTH":
			return ss.auth(cmd)
		case "STLS":
			return ss.stls(cmd)
		case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL":
			return ss.bad1("-ERR Log in first (USER and PASS, or AUTH PLAIN).")
		}
		return ss.bad1("-ERR Unknown command.")
	}
	switch cmd.Name {
	case "STAT":
		n, size := 0, int64(0)
		for _, m := range ss.msgs {
			if !m.deleted {
				n++
				size += m.size
			}
		}
		ss.replyf("+OK %d %d", n, size)
	case "LIST":
		return ss.list(cmd, false)
	case "UIDL":
		return ss.list(cmd, true)
	case "RETR":
		if len(cmd.Args) != 1 {
			return ss.bad1("-ERR Usage: RETR msg")
		}
		return ss.retrieve(cmd.Args[0], -1)
	case "TOP":
		if len(cmd.Args) != 2 {
			return ss.bad1("-ERR Usage: TOP msg lines")
		}
		n, err := strconv.Atoi(cmd.Args[1])
		if err != nil || n < 0 || cmd.Args[1][0] == '+' {
			return ss.bad1("-ERR Invalid number of lines.")
		}
		return ss.retrieve(cmd.Args[0], n)
	case "DELE":
		if len(cmd.Args) != 1 {
			return ss.bad1("-ERR Usage: DELE msg")
		}
		i, alive := ss.pick(cmd.Args[0])
		if i < 0 {
			return alive
		}
		ss.msgs[i].deleted = true
		ss.reply("+OK Marked to be deleted.")
	case "RSET":
		for i := range ss.msgs {
			ss.msgs[i].deleted = false
		}
		ss.replyf("+OK %d messages.", len(ss.msgs))
	case "NOOP":
		ss.reply("+OK")
	case "USER", "PASS", "AUTH", "STLS":
		return ss.bad1("-ERR Already logged in.")
	default:
		return ss.bad1("-ERR Unknown command.")
	}
	return true
}

func (ss *session) capa() {
	ss.reply("+OK Capability list follows")
	ss.reply("TOP")
	ss.reply("UIDL")
	ss.reply("RESP-CODES")
	ss.reply("AUTH-RESP-CODE")
	ss.reply("PIPELINING")
	if ss.state == stateAuth {
		if ss.plainAllowed() {
			ss.reply("USER")
			ss.reply("SASL PLAIN")
		}
		if ss.s.cfg.TLS != nil && !ss.tls {
			ss.reply("STLS")
		}
	}
	ss.reply("IMPLEMENTATION correo")
	ss.reply(".")
}

func (ss *session) quit() bool {
	if ss.state != stateTrans {
		ss.result = "quit before login"
		ss.reply("+OK Bye.")
		return false
	}
	// The watch may not have looked yet: a move that began since must
	// find every message that was here (RFC 1939 lets QUIT answer -ERR
	// when the removal fails).
	if ss.moving.Load() || mailbox.Moving(ss.md.Path) {
		ss.unlock()
		ss.result = "quit while the mailbox is being moved"
		ss.reply(replyMovingQuit)
		return false
	}
	// The UPDATE state: only now are marked messages removed.
	var failed int
	for _, m := range ss.msgs {
		if !m.deleted {
			continue
		}
		if err := ss.md.Delete(m.m); err != nil {
			failed++
			ss.s.log.Error("deleting a message failed", "trace", ss.trace, "user", ss.name, "err", err)
			continue
		}
		ss.deleted++
	}
	if err := ss.md.Sync(); err != nil {
		ss.s.log.Error("fsync of the Maildir after deletions failed", "trace", ss.trace, "user", ss.name, "err", err)
	}
	// The mailbox is free before the client hears so: a client that logs
	// in again right after QUIT's answer must not find it [IN-USE].
	ss.unlock()
	if failed > 0 {
		ss.result = "quit, some deletions failed"
		ss.replyf("-ERR [SYS/TEMP] %d messages could not be deleted; they will be there next time.", failed)
		return false
	}
	ss.result = "quit"
	ss.replyf("+OK Bye; %d messages deleted.", ss.deleted)
	return false
}

// pick finds a message by its number argument: its index, or -1 after
// answering the error (alive then says whether the session goes on).
// Deleted messages are not found.
func (ss *session) pick(arg string) (idx int, alive bool) {
	n, err := ParseMsgNumber(arg)
	if err != nil {
		return -1, ss.bad1("-ERR Invalid message number.")
	}
	if n > len(ss.msgs) {
		return -1, ss.bad1(fmt.Sprintf("-ERR No such message; there are %d.", len(ss.msgs)))
	}
	if ss.msgs[n-1].deleted {
		return -1, ss.bad1("-ERR Message is deleted.")
	}
	return n - 1, true
}

// uidl is a hash of the Maildir key: printable, 32 characters, the same
// for the message in new/ and in cur/, in every session.
func uidl(m mailbox.Message) string {
	sum := sha256.Sum256([]byte(m.Key))
	return hex.EncodeToString(sum[:16])
}

func (ss *session) list(cmd Command, uid bool) bool {
	entry := func(i int) string {
		if uid {
			return strconv.Itoa(i+1) + " " + uidl(ss.msgs[i].m)
		}
		return strconv.Itoa(i+1) + " " + strconv.FormatInt(ss.msgs[i].size, 10)
	}
	switch len(cmd.Args) {
	case 0:
		n, size := 0, int64(0)
		for _, m := range ss.msgs {
			if !m.deleted {
				n++
				size += m.size
			}
		}
		if uid {
			ss.reply("+OK Unique-ID listing follows")
		} else {
			ss.replyf("+OK %d messages (%d octets)", n, size)
		}
		for i := range ss.msgs {
			if !ss.msgs[i].deleted {
				ss.bw.WriteString(entry(i))
				ss.bw.WriteString("\r\n")
			}
		}
		ss.reply(".")
		return true
	case 1:
		i, alive := ss.pick(cmd.Args[0])
		if i < 0 {
			return alive
		}
		ss.reply("+OK " + entry(i))
		return true
	}
	return ss.bad1("-ERR Too many arguments.")
}

func (ss *session) retrieve(arg string, lines int) bool {
	i, alive := ss.pick(arg)
	if i < 0 {
		return alive
	}
	m := &ss.msgs[i]
	f, err := ss.md.Open(m.m)
	if err != nil {
		// Removed behind our back (another program, a restore): the
		// list is fixed, so the message stays listed but cannot be read.
		ss.s.log.Warn("opening a listed message failed", "trace", ss.trace, "user", ss.name, "err", err)
		ss.reply("-ERR [SYS/TEMP] Message cannot be read now.")
		return true
	}
	defer f.Close()
	if lines < 0 {
		ss.replyf("+OK %d octets", m.size)
	} else {
		ss.reply("+OK Top of message follows")
	}
	n, err := writeMessage(ss.bw, bufio.NewReaderSize(f, 32<<10), lines)
	if err != nil {
		// The status line is out: the only honest thing left is to drop
		// the connection, which deletes nothing.
		ss.result = "error while sending a message"
		ss.s.log.Warn("sending a message failed", "trace", ss.trace, "user", ss.name, "err", err)
		return false
	}
	ss.reply(".")
	if lines < 0 {
		ss.retr++
		ss.bytesOut += n
	}
	return true
}

func (ss *session) auth(cmd Command) bool {
	if len(cmd.Args) == 0 {
		// Not in RFC 5034, but what clients probing mechanisms expect.
		ss.reply("+OK Mechanisms follow")
		if ss.plainAllowed() {
			ss.reply("PLAIN")
		}
		ss.reply(".")
		return true
	}
	if !strings.EqualFold(cmd.Args[0], "PLAIN") {
		return ss.bad1("-ERR Unsupported authentication mechanism; only PLAIN.")
	}
	if !ss.plainAllowed() {
		return ss.bad1(replyNoPlain)
	}
	resp := ""
	if len(cmd.Args) == 2 {
		resp = cmd.Args[1]
	} else {
		ss.reply("+ ")
		ss.bw.Flush()
		line, err := ss.readLine()
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				ss.result = "line too long"
				ss.reply("-ERR Line too long; closing.")
			}
			return false
		}
		resp = strings.TrimRight(string(line), "\r\n")
		if resp == "*" {
			return ss.bad1("-ERR Authentication cancelled.")
		}
	}
	if resp == "=" { // RFC 5034: an empty initial response
		resp = ""
	}
	user, pw, err := DecodePlain(resp)
	if err != nil {
		return ss.bad1("-ERR " + err.Error() + ".")
	}
	return ss.login(user, pw)
}

func (ss *session) stls(cmd Command) bool {
	if ss.s.cfg.TLS == nil {
		return ss.bad1("-ERR STLS is not available here.")
	}
	if ss.tls {
		return ss.bad1("-ERR Already using TLS.")
	}
	ss.reply("+OK Begin TLS negotiation.")
	if err := ss.bw.Flush(); err != nil {
		return false
	}
	// Anything the client pipelined after STLS was sent in the clear and
	// could have been injected by a man in the middle (CVE-2011-0411):
	// it is dropped with the old reader.
	tc := tls.Server(ss.conn, ss.s.cfg.TLS)
	tc.SetDeadline(ss.loginBy)
	if err := tc.Handshake(); err != nil {
		ss.result = "TLS handshake failed"
		return false
	}
	ss.conn = tc
	ss.tls = true
	ss.br = bufio.NewReaderSize(tc, 4096)
	ss.bw = bufio.NewWriterSize(tc, 32<<10)
	ss.user = ""
	return true
}

// login checks the password with passwdd and opens the mailbox. Unknown
// user, wrong password, invalid name, disabled account and a lockout all
// get the same answer.
func (ss *session) login(user, pw string) bool {
	ticket := ss.ticket != nil
	ok := ss.doLogin(user, pw)
	// A ticket is spent (set to nil) when it spared the password check.
	ss.s.cfg.Metrics.login(ss.result, ticket && ss.ticket == nil)
	return ok
}

func (ss *session) doLogin(user, pw string) bool {
	name, err := mailbox.NormalizeName(user)
	if err != nil {
		ss.result = "bad user name"
		return ss.bad1(replyAuthFailed)
	}
	ctx, cancel := context.WithTimeout(logging.WithTrace(context.Background(), ss.trace), ss.s.cfg.AuthTimeout)
	var u pwproto.User
	if ss.ticket != nil && ss.ticket.User == name {
		// mailproxy checked this password a moment ago (its ticket says so,
		// sealed with the cluster key): only the record is needed.
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
		return ss.bad1(replyAuthFailed)
	default:
		ss.result = "password service unavailable"
		ss.s.log.Warn("password check failed", "trace", ss.trace, "user", name, "err", err)
		ss.reply(replyTemp)
		return true
	}
	if u.State == pwproto.StateDisabled {
		ss.result = "disabled"
		return ss.bad1(replyAuthFailed)
	}
	if u.State == pwproto.StateMoving {
		ss.result = "mailbox being moved"
		ss.reply("-ERR [SYS/TEMP] Your mailbox is being moved; try again in a few minutes.")
		return true
	}
	if u.Storage != ss.s.cfg.Host.Name {
		ss.result = "stored on another host"
		ss.s.log.Warn("login for a user stored on another host", "trace", ss.trace, "user", u.Name,
			"storage", u.Storage, "client", ss.client.String())
		ss.replyf("-ERR [SYS/PERM] Your mailbox is on %s, not on this server; connect through the POP proxy.", u.Storage)
		return true
	}
	path, err := ss.s.scheme.MaildirPath(ss.s.dataDir, u.Name)
	if err != nil {
		ss.result = "bad user name"
		return ss.bad1(replyAuthFailed)
	}
	release, err := ss.s.locks.acquire(u.Name, path)
	if errors.Is(err, errInUse) {
		ss.result = "in use"
		ss.reply("-ERR [IN-USE] Mailbox is in use by another POP3 session.")
		return true
	}
	if err != nil {
		ss.result = "lock failed"
		ss.s.log.Error("locking a mailbox failed", "trace", ss.trace, "user", u.Name, "err", err)
		ss.reply("-ERR [SYS/TEMP] Mailbox cannot be opened now.")
		return true
	}
	// Checked with the lock held: the mover writes the marker, then waits
	// for this lock, so either it waits for this session or the session
	// sees the marker here, before moving new/ to cur/.
	if mailbox.Moving(path) {
		release()
		ss.result = "mailbox being moved"
		ss.reply(replyMovingLogin)
		return true
	}
	md := mailbox.New(path)
	msgs, err := loadMessages(md)
	if err != nil {
		release()
		ss.result = "mailbox unreadable"
		ss.s.log.Error("reading a mailbox failed", "trace", ss.trace, "user", u.Name, "err", err)
		ss.reply("-ERR [SYS/TEMP] Mailbox cannot be opened now.")
		return true
	}
	ss.release, ss.md, ss.msgs, ss.name = release, md, msgs, u.Name
	ss.stopWatch = watchMoving(path, ss.s.movingPoll, ss.conn, &ss.moving)
	ss.state = stateTrans
	ss.result = "logged in"
	ss.bad = 0
	ss.replyf("+OK Logged in; %d messages.", len(msgs))
	return true
}

// loadMessages fixes the session's list: new/ is moved to cur/ and every
// message gets its wire size.
func loadMessages(md *mailbox.Maildir) ([]message, error) {
	list, err := md.List()
	if err != nil {
		return nil, err
	}
	out := make([]message, 0, len(list))
	moved := false
	for _, m := range list {
		if m.Dir == "new" {
			cm, err := md.MoveToCur(m)
			if err != nil {
				continue // gone meanwhile (another reader deleted it)
			}
			m, moved = cm, true
		}
		size := m.WireSize
		if size < 0 {
			f, err := md.Open(m)
			if err != nil {
				continue
			}
			size, err = wireSize(f)
			f.Close()
			if err != nil {
				continue
			}
		}
		out = append(out, message{m: m, size: size})
	}
	if moved {
		// Not fsynced per message: a crash merely puts them back in new/.
		_ = md.Sync()
	}
	return out, nil
}
