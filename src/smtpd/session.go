package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"correo/src/delivery"
	"correo/src/logging"
	"correo/src/mailauth"
	"correo/src/netserve"
	"correo/src/pwclient"
	"correo/src/pwproto"
	"correo/src/queue"
)

type session struct {
	s    *Server
	c    *smtp.Conn
	l    *Listener
	info Session
	base *conn

	from  string
	rcpts []queue.Recipient
	bad   int
	// discarded: the last DATA's 250 hid a filter's discard.
	discarded bool
}

func (s *Server) newSession(c *smtp.Conn, l *Listener) (smtp.Session, error) {
	if s.draining.Load() {
		s.cfg.Metrics.session(l.Name, "refused_shutdown")
		return nil, reply(421, "4.3.2", "%s shutting down, try again later", s.name)
	}
	s.cfg.Metrics.session(l.Name, "accepted")
	_, isTLS := c.TLSConnectionState()
	base := baseConn(c.Conn())
	ss := &session{s: s, c: c, l: l, base: base,
		info: Session{Listener: l.Name, Helo: delivery.CleanHelo(c.Hostname()), TLS: isTLS}}
	if base != nil {
		ss.info.Client = base.ip
	}
	return ss, nil
}

func reply(code int, enh string, format string, a ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enhanced(enh), Message: fmt.Sprintf(format, a...)}
}

func enhanced(s string) smtp.EnhancedCode {
	var e smtp.EnhancedCode
	if _, err := fmt.Sscanf(s, "%d.%d.%d", &e[0], &e[1], &e[2]); err != nil {
		return smtp.EnhancedCodeNotSet
	}
	return e
}

// refuse counts a refused command and, past the limit, ends the session
// after this reply.
func (ss *session) refuse(r *smtp.SMTPError) error {
	ss.bad++
	if ss.bad >= ss.s.cfg.Limits.MaxBadCommands && ss.base != nil {
		ss.base.hangup.Store(true)
		ss.s.log.Warn("too many refused commands: closing", "client", ss.info.Client.String(), "refused", ss.bad)
		return reply(421, "4.7.0", "%s too many refused commands, closing connection (last: %d %s)", ss.s.name, r.Code, r.Message)
	}
	return r
}

func (ss *session) Reset() {
	ss.from, ss.rcpts = "", nil
}

func (ss *session) Logout() error { return nil }

// AuthMechanisms and Auth implement smtp.AuthSession through the
// listener's Policy (relay role); the mx role offers none.
func (ss *session) AuthMechanisms() []string {
	if ss.l.Policy.AuthMechanisms == nil {
		return nil
	}
	return ss.l.Policy.AuthMechanisms(&ss.info)
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.l.Policy.Auth == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	return ss.l.Policy.Auth(&ss.info, mech)
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.s.draining.Load() {
		return reply(421, "4.3.2", "%s shutting down, try again later", ss.s.name)
	}
	if ss.l.Policy.RequireAuth && ss.info.User == "" {
		return ss.refuse(reply(530, "5.7.0", "authentication required"))
	}
	for i := 0; i < len(from); i++ {
		if from[i] >= 0x80 {
			return ss.refuse(reply(553, "5.6.7", "non-ASCII addresses are not supported here"))
		}
	}
	if err := delivery.CheckPath(from, true); err != nil {
		return ss.refuse(reply(501, "5.1.7", "bad sender address syntax"))
	}
	if ss.l.Policy.CheckSender != nil {
		if err := ss.l.Policy.CheckSender(&ss.info, from); err != nil {
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				return ss.refuse(se)
			}
			return ss.refuse(reply(553, "5.7.1", "%v", err))
		}
	}
	ss.from, ss.rcpts = from, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s := ss.s
	for i := 0; i < len(to); i++ {
		if to[i] >= 0x80 {
			return ss.reject(to, "", reply(553, "5.6.7", "non-ASCII addresses are not supported here"))
		}
	}
	dest, r := Classify(s.cfg.Profile, to)
	switch dest {
	case Refused:
		return ss.reject(to, r.Reason, reply(r.Code, r.Enhanced, "%s", r.Text))
	case Remote:
		if ss.l.Policy.MayRelay == nil || !ss.l.Policy.MayRelay(&ss.info) {
			return ss.reject(to, "not a domain of this cluster", reply(554, "5.7.1", "relay access denied"))
		}
		ss.rcpts = append(ss.rcpts, queue.Recipient{Addr: to, Route: queue.RouteRemote})
		return nil
	}
	loc, err := delivery.ParseLocal(s.cfg.Profile, to)
	if err != nil {
		ae := err.(*delivery.AddrError)
		return ss.reject(to, ae.Reason, reply(ae.Code, ae.Enhanced, "%s", ae.Text))
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Limits.LookupTimeout)
	u, err := s.cfg.Users.LookupAddr(ctx, loc.Key())
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, pwclient.ErrNotFound):
		return ss.reject(to, "", reply(550, "5.1.1", "no such user here"))
	case errors.Is(err, pwclient.ErrNoServer), errors.Is(err, pwclient.ErrTempFail), errors.Is(err, context.DeadlineExceeded):
		// Not counted as a bad command: the client did nothing wrong.
		s.log.Warn("recipient deferred: passwd unavailable", "rcpt", quote(to), "client", ss.info.Client.String(), "err", err)
		return reply(451, "4.4.3", "user directory unavailable, try again later")
	default:
		s.log.Warn("recipient deferred: lookup failed", "rcpt", quote(to), "client", ss.info.Client.String(), "err", err)
		return reply(451, "4.3.0", "user lookup failed, try again later")
	}
	storage := ""
	switch u.State {
	case pwproto.StateDisabled:
		return ss.reject(to, "user "+u.Name+" is disabled", reply(550, "5.2.1", "mailbox disabled"))
	case pwproto.StateActive:
		storage = u.Storage // the first delivery attempt need not ask again
	case pwproto.StateMoving:
		// Accepted and queued; delivery looks up again and defers until
		// the move ends (the queue retries).
	default:
		return reply(451, "4.3.0", "user in unknown state, try again later")
	}
	ss.rcpts = append(ss.rcpts, queue.Recipient{Addr: to, Route: queue.RouteLocal, Storage: storage})
	return nil
}

// reject logs a refused recipient and counts it.
func (ss *session) reject(to, reason string, r *smtp.SMTPError) error {
	attrs := []any{"rcpt", quote(to), "from", quote(ss.from), "client", ss.info.Client.String(),
		"listener", ss.l.Name, "code", r.Code, "reply", r.Message}
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	ss.s.log.Info("recipient refused", attrs...)
	return ss.refuse(r)
}

// Data receives a message; the reply it returns is what is counted.
func (ss *session) Data(r io.Reader) error {
	cr := &countingReader{r: r}
	err := ss.data(cr)
	ss.s.cfg.Metrics.message(ss.l.Name, err, cr.n, ss.discarded)
	ss.discarded = false
	return err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (ss *session) data(r io.Reader) error {
	s := ss.s
	defer s.inData.Begin()()
	if len(ss.rcpts) == 0 {
		io.Copy(io.Discard, r)
		return reply(554, "5.5.1", "no valid recipients")
	}
	lim := s.cfg.Limits
	w, err := s.cfg.Queue.NewMessage()
	if err != nil {
		s.log.Error("cannot queue a message", "err", err)
		return reply(451, "4.3.0", "cannot queue the message now, try again later")
	}
	trace := logging.NewTraceID()
	now := time.Now()
	body := netserve.DeadlineReader(r, ss.c.Conn(), lim.CommandTimeout, now.Add(lim.DataTimeout))
	if len(ss.l.Policy.Filters) == 0 {
		io.WriteString(w, s.received(ss, w.ID(), trace, "", now))
		if _, err = io.Copy(w, body); err != nil {
			w.Abort()
			return ss.dataError(err, trace)
		}
	} else if err := ss.filtered(w, body, trace, now); err != nil {
		w.Abort()
		if errors.Is(err, errDiscarded) {
			ss.discarded = true
			return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: fmt.Sprintf("accepted (trace %s)", trace)}
		}
		return err
	}
	env := &queue.Envelope{From: ss.from, Trace: trace, Client: ss.info.Client.String(), Helo: ss.info.Helo,
		User: ss.info.User, Rcpts: ss.rcpts}
	if err := w.Commit(env); err != nil {
		s.log.Error("cannot queue a message", logging.TraceKey, trace, "err", err)
		return reply(451, "4.3.0", "cannot queue the message now, try again later")
	}
	if ss.l.Policy.Queued != nil {
		ss.l.Policy.Queued(&ss.info)
	}
	attrs := []any{logging.TraceKey, trace, "queue_id", env.ID, "from", ss.from, "rcpts", len(env.Rcpts),
		"size", env.Size, "client", ss.info.Client.String(), "helo", ss.info.Helo, "listener", ss.l.Name}
	if ss.info.User != "" {
		attrs = append(attrs, "user", ss.info.User)
	}
	s.log.Info("queued", attrs...)
	// go-smtp sends an error's code as is: this is the success reply,
	// with the id the sender's logs should show.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0},
		Message: fmt.Sprintf("queued as %s (trace %s)", env.ID, trace)}
}

// filtered receives a message into a spool, runs the listener's filters
// on it, and writes it to the queue file w with their verdict applied;
// an error is the DATA's reply.
func (ss *session) filtered(w *queue.Writer, body io.Reader, trace string, now time.Time) error {
	s := ss.s
	sp := &spool{dir: s.cfg.SpoolDir}
	defer sp.close()
	if _, err := io.Copy(sp, body); err != nil {
		if errors.Is(err, errSpool) {
			s.log.Error("cannot spool a message", logging.TraceKey, trace, "err", err)
			return reply(451, "4.3.0", "cannot take the message now, try again later")
		}
		return ss.dataError(err, trace)
	}
	rcpts := make([]string, len(ss.rcpts))
	for i, rc := range ss.rcpts {
		rcpts[i] = rc.Addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Limits.DataTimeout)
	defer cancel()
	v, err := ss.runFilters(ctx, &FilterInput{Session: &ss.info, From: ss.from, Rcpts: rcpts, Trace: trace, QueueID: w.ID(), Open: sp.open})
	if err != nil {
		s.log.Error("a filter failed", logging.TraceKey, trace, "err", err)
		return reply(451, "4.3.0", "cannot check the message now, try again later")
	}
	if v.Reject != nil {
		s.log.Info("message refused by a filter", logging.TraceKey, trace, "client", ss.info.Client.String(), "from", quote(ss.from),
			"code", v.Reject.Code, "reply", v.Reject.Message)
		return v.Reject
	}
	if v.Discard {
		return errDiscarded
	}
	if v.Quarantine {
		s.log.Info("message quarantined: filed in Junk", logging.TraceKey, trace, "from", quote(ss.from))
	}
	io.WriteString(w, s.received(ss, w.ID(), trace, folderLine(v), now))
	if err := writeFiltered(w, sp.open(), v, maxFilterHeader); err != nil {
		if errors.Is(err, queue.ErrStorage) {
			return ss.dataError(err, trace)
		}
		s.log.Error("cannot queue a filtered message", logging.TraceKey, trace, "err", err)
		return reply(451, "4.3.0", "cannot queue the message now, try again later")
	}
	return nil
}

// errDiscarded: a filter dropped the message; the client still gets 250.
var errDiscarded = errors.New("discarded by a filter")

// maxFilterHeader bounds the header block a filter rewrites; the mail
// authentication filter refuses larger ones first (552 5.3.4).
const maxFilterHeader = mailauth.DefaultMaxHeaderBytes

// dataError is the reply for a message that could not be received.
func (ss *session) dataError(err error, trace string) error {
	var se *smtp.SMTPError
	var ne net.Error
	attrs := []any{logging.TraceKey, trace, "client", ss.info.Client.String(), "from", quote(ss.from), "err", err}
	switch {
	case errors.As(err, &se):
		ss.s.log.Info("message refused", attrs...)
		return se // go-smtp's own: 552 5.3.4 message too big
	case errors.Is(err, smtp.ErrTooLongLine):
		ss.s.log.Info("message refused: line too long", attrs...)
		if ss.base != nil {
			ss.base.hangup.Store(true) // the rest of the stream is unreadable
		}
		return reply(500, "5.5.2", "line longer than %d bytes in the message", ss.s.cfg.Limits.MaxLineLength)
	case errors.As(err, &ne) && ne.Timeout():
		ss.s.log.Info("message abandoned: timeout", attrs...)
		return reply(451, "4.4.2", "timeout reading the message")
	case errors.Is(err, queue.ErrStorage):
		ss.s.log.Error("cannot queue a message", attrs...)
		return reply(451, "4.3.0", "cannot queue the message now, try again later")
	}
	ss.s.log.Info("message abandoned", attrs...)
	return reply(451, "4.4.2", "error reading the message")
}

// received is the trace header smtpd prepends: the Received line with the
// queue id and trace id, and X-Correo-Trace, which pdeliveryd reuses so
// the whole path logs one id. It comes first, so a forged X-Correo-Trace
// further down is never the one read.
func (s *Server) received(ss *session, id, trace, folder string, now time.Time) string {
	proto := "ESMTP"
	if ss.info.TLS {
		proto = "ESMTPS"
	}
	if ss.info.User != "" {
		proto += "A"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (correo smtpd) with %s id %s\r\n\t(trace %s)",
		ss.info.Helo, ss.info.Client, s.name, proto, id, trace)
	if ss.info.User != "" && s.cfg.Host.SMTPD != nil && s.cfg.Host.SMTPD.ExposeAuthUser {
		fmt.Fprintf(&b, "\r\n\t(authenticated as %s)", ss.info.User)
	}
	if len(ss.rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", ss.rcpts[0].Addr)
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	b.WriteString(folder)
	fmt.Fprintf(&b, "X-Correo-Trace: %s\r\n", trace)
	return b.String()
}
