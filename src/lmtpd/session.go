package lmtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"correo/src/dedup"
	"correo/src/delivery"
	"correo/src/logging"
	"correo/src/mailbox"
	"correo/src/netserve"
	"correo/src/pwclient"
	"correo/src/pwproto"
)

// NewSession implements smtp.Backend. TCP peers were already filtered by
// filterListener; the check is repeated here so a listener passed to
// ServeUnix by mistake, or a future code path, cannot bypass it.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	client := "local"
	if ip := remoteIP(c.Conn()); ip.IsValid() {
		if !s.network.Contains(ip) {
			s.cfg.Metrics.session("refused")
			return nil, &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
				Message: "access denied: " + ip.String() + " is outside the cluster network"}
		}
		client = ip.String()
	}
	s.cfg.Metrics.session("accepted")
	return &session{s: s, conn: c, client: client, helo: delivery.CleanHelo(c.Hostname())}, nil
}

// rcpt is one accepted recipient.
type rcpt struct {
	to      string // as given in RCPT TO
	user    pwproto.User
	domain  string
	maildir string
}

// outcome is a recipient's result waiting for its log line, which needs
// the trace id only known once the message has arrived.
type outcome struct {
	to, user string
	from     string
	code     int
	enhanced smtp.EnhancedCode
	text     string
	err      error // the underlying failure, for the log only
	repeat   bool  // answered from the delivery key record, not stored again
}

type session struct {
	s      *Server
	conn   *smtp.Conn
	client string
	helo   string

	from     string
	sizeHint int64
	rcpts    []rcpt

	// logMu guards logs: go-smtp may call Logout from Server.Close on
	// another goroutine while the session's own goroutine is logging.
	logMu sync.Mutex
	logs  []outcome
}

func (ss *session) addLog(o outcome) {
	ss.s.cfg.Metrics.delivery(&o)
	ss.logMu.Lock()
	ss.logs = append(ss.logs, o)
	ss.logMu.Unlock()
}

func (ss *session) Reset() {
	ss.flushLog("")
	ss.from, ss.sizeHint, ss.rcpts = "", 0, nil
}

func (ss *session) Logout() error {
	ss.flushLog("")
	return nil
}

// flushLog writes one line per recipient outcome of the transaction; a
// transaction that never reached DATA gets a fresh trace id.
func (ss *session) flushLog(trace string) {
	ss.logMu.Lock()
	defer ss.logMu.Unlock()
	if len(ss.logs) == 0 {
		return
	}
	if trace == "" {
		trace = logging.NewTraceID()
	}
	ctx := logging.WithTrace(context.Background(), trace)
	for _, o := range ss.logs {
		level := slog.LevelInfo
		msg := "delivered"
		switch {
		case o.code >= 500:
			msg = "rejected"
		case o.code >= 400:
			msg, level = "deferred", slog.LevelWarn
		}
		// The trace is also an explicit attribute so that any slog
		// handler shows it; correo's handler logs it once.
		attrs := []any{logging.TraceKey, trace, "rcpt", o.to, "from", o.from, "client", ss.client, "code", o.code,
			"enhanced", fmt.Sprintf("%d.%d.%d", o.enhanced[0], o.enhanced[1], o.enhanced[2])}
		if o.user != "" {
			attrs = append(attrs, "user", o.user)
		}
		if o.code != 250 {
			attrs = append(attrs, "reply", o.text)
		}
		if o.err != nil {
			attrs = append(attrs, "err", o.err.Error())
		}
		if o.repeat {
			attrs = append(attrs, "repeat", true)
		}
		ss.s.log.Log(ctx, level, msg, attrs...)
	}
	ss.logs = ss.logs[:0]
}

func reply(code int, enh smtp.EnhancedCode, format string, a ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, a...)}
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.s.draining.Load() {
		return reply(421, smtp.EnhancedCode{4, 3, 2}, "%s shutting down, try again later", ss.s.name)
	}
	if err := delivery.CheckPath(from, true); err != nil {
		return reply(501, smtp.EnhancedCode{5, 1, 7}, "bad sender address syntax")
	}
	ss.flushLog("")
	ss.from, ss.rcpts = from, nil
	ss.sizeHint = 0
	if opts != nil {
		ss.sizeHint = opts.Size
	}
	return nil
}

// reject records a refused recipient and returns the reply.
func (ss *session) reject(to, user string, err error, code int, enh smtp.EnhancedCode, format string, a ...any) error {
	r := reply(code, enh, format, a...)
	ss.addLog(outcome{to: to, user: user, from: ss.from, code: code, enhanced: enh, text: r.Message, err: err})
	return r
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s := ss.s
	loc, err := delivery.ParseLocal(s.cfg.Profile, to)
	if err != nil {
		ae := err.(*delivery.AddrError)
		return ss.reject(to, "", errors.New(ae.Reason), ae.Code, enh(ae.Enhanced), "%s", ae.Text)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LookupTimeout)
	u, err := s.cfg.Users.LookupAddr(ctx, loc.Key())
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, pwclient.ErrNotFound):
		return ss.reject(to, "", nil, 550, smtp.EnhancedCode{5, 1, 1}, "no such user here")
	case errors.Is(err, pwclient.ErrNoServer), errors.Is(err, pwclient.ErrTempFail), errors.Is(err, context.DeadlineExceeded):
		return ss.reject(to, "", err, 451, smtp.EnhancedCode{4, 4, 3}, "user directory unavailable, try again later")
	default:
		return ss.reject(to, "", err, 451, smtp.EnhancedCode{4, 3, 0}, "user lookup failed, try again later")
	}
	// The directory's answer becomes a path: check it as if a client had
	// typed it.
	if name, nerr := mailbox.NormalizeName(u.Name); nerr != nil || name != u.Name {
		return ss.reject(to, "", fmt.Errorf("passwd answered an invalid user name: %v", nerr), 451, smtp.EnhancedCode{4, 3, 0}, "user record unusable, try again later")
	}
	switch u.State {
	case pwproto.StateActive:
	case pwproto.StateDisabled:
		return ss.reject(to, u.Name, nil, 550, smtp.EnhancedCode{5, 2, 1}, "mailbox disabled")
	case pwproto.StateMoving:
		return ss.reject(to, u.Name, nil, 451, smtp.EnhancedCode{4, 2, 0}, "mailbox being moved, try again later")
	default:
		return ss.reject(to, u.Name, nil, 451, smtp.EnhancedCode{4, 3, 0}, "user in unknown state %d, try again later", u.State)
	}
	if u.Storage != s.cfg.Host.Name {
		return ss.reject(to, u.Name, nil, 451, smtp.EnhancedCode{4, 3, 0}, "%s", delivery.StoredElsewhere(u.Name, u.Storage))
	}
	box, err := s.scheme.MaildirPath(s.dataDir, u.Name)
	if err != nil {
		return ss.reject(to, u.Name, err, 451, smtp.EnhancedCode{4, 3, 0}, "cannot place this mailbox, try again later")
	}
	if u.Quota > 0 {
		used, err := s.usage.get(u.Name, box, time.Now())
		if err != nil {
			// The write will tell whether the mailbox is usable; a
			// failed scan must not bounce mail.
			s.log.Warn("computing mailbox usage failed; quota not checked", "user", u.Name, "err", err)
		} else if used >= u.Quota || (ss.sizeHint > 0 && used+ss.sizeHint > u.Quota) {
			return ss.reject(to, u.Name, nil, 552, smtp.EnhancedCode{5, 2, 2}, "mailbox full (quota %d bytes, %d used)", u.Quota, used)
		}
	}
	ss.rcpts = append(ss.rcpts, rcpt{to: to, user: u, domain: loc.Domain, maildir: box})
	return nil
}

func enh(s string) smtp.EnhancedCode {
	var e smtp.EnhancedCode
	if _, err := fmt.Sscanf(s, "%d.%d.%d", &e[0], &e[1], &e[2]); err != nil {
		return smtp.EnhancedCodeNotSet
	}
	return e
}

// Data is never called: go-smtp uses LMTPData in LMTP mode.
func (ss *session) Data(r io.Reader) error {
	return reply(503, smtp.EnhancedCode{5, 5, 1}, "use LMTP")
}

// LMTPData receives the message, then writes it to every accepted
// recipient's Maildir and sets one status per RCPT.
func (ss *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	s := ss.s
	defer s.inData.Begin()()
	lim := s.cfg.Limits
	start := time.Now()
	sp := newSpool(s.cfg.SpoolDir)
	defer sp.Close()
	_, err := io.Copy(sp, netserve.DeadlineReader(r, ss.conn.Conn(), lim.IdleTimeout, start.Add(lim.DataTimeout)))
	if err == nil {
		err = sp.finish()
	}
	if err != nil {
		re := receiveError(err, lim)
		for _, rc := range ss.rcpts {
			status.SetStatus(rc.to, re)
			ss.addLog(outcome{to: rc.to, user: rc.user.Name, from: ss.from, code: re.Code, enhanced: re.EnhancedCode, text: re.Message, err: err})
		}
		ss.flushLog("")
		return nil
	}
	key, skip := s.deliveryKey(sp.ReaderAt(), sp.Size())
	size := sp.Size() - skip
	body := io.NewSectionReader(sp.ReaderAt(), skip, size)
	trace, junk := findTrace(body, size)
	if trace == "" {
		trace = logging.NewTraceID()
	}
	now := time.Now()

	results := make([]*smtp.SMTPError, len(ss.rcpts))
	repeat := make([]bool, len(ss.rcpts))
	// A recipient whose key is recorded got this message already (the
	// client did not see, or did not record, our 250): answer as then.
	// The others hold their key's claim until answered, so a retry racing
	// this attempt waits for its outcome instead of storing a second copy.
	rkeys := make([]dedup.Key, len(ss.rcpts))
	claimed := make([]bool, len(ss.rcpts))
	var record []dedup.Key
	if key != "" && s.cfg.Keys != nil {
		mine := map[dedup.Key]bool{}
		for i, rc := range ss.rcpts {
			k := dedup.RecipientKey(key, rc.to)
			if mine[k] {
				continue // the same recipient twice: as without a key
			}
			mine[k] = true
			st, since, release := s.cfg.Keys.Claim(k)
			if st == dedup.Delivered {
				results[i] = reply(250, smtp.EnhancedCode{2, 0, 0}, "delivered to %s (%s)", rc.user.Name, trace)
				repeat[i] = true
				continue
			}
			defer release()
			rkeys[i], claimed[i] = k, true
			// An attempt cut short by a crash: its message may be in
			// new/ without its delivered record.
			if st == dedup.Unsure && storedAlready(boxPath(rc.maildir, junk), trace, since) {
				results[i] = reply(250, smtp.EnhancedCode{2, 0, 0}, "delivered to %s (%s)", rc.user.Name, trace)
				repeat[i] = true
				record = append(record, k)
			}
		}
	}

	// Recheck quotas with the real size; the rest is written.
	var write []int
	for i, rc := range ss.rcpts {
		if results[i] != nil {
			continue
		}
		if q := rc.user.Quota; q > 0 {
			if used, err := s.usage.get(rc.user.Name, rc.maildir, now); err == nil && used+size > q {
				results[i] = reply(552, smtp.EnhancedCode{5, 2, 2}, "mailbox full (quota %d bytes, %d used, message %d)", q, used, size)
				continue
			}
		}
		write = append(write, i)
	}
	// A mailbox frozen for a move takes nothing: the mover waits (Gate)
	// for the writes that entered before its marker, and copies them.
	kept := write[:0]
	for _, i := range write {
		leave := s.cfg.Gate.Enter(ss.rcpts[i].user.Name)
		defer leave()
		if mailbox.Moving(ss.rcpts[i].maildir) {
			results[i] = reply(451, smtp.EnhancedCode{4, 2, 0}, "mailbox being moved, try again later")
			continue
		}
		kept = append(kept, i)
	}
	write = kept
	var errs []error
	if len(write) > 0 {
		boxes := make([]*mailbox.Maildir, len(write))
		var intents []dedup.Key
		for j, i := range write {
			boxes[j] = mailbox.New(boxPath(ss.rcpts[i].maildir, junk))
			if claimed[i] {
				intents = append(intents, rkeys[i])
			}
		}
		// The intent reaches the file before the message reaches new/:
		// a crash in between makes the next attempt look in the mailbox.
		if err := s.cfg.Keys.Intend(intents); err != nil {
			s.log.Error("noting delivery keys failed: a retry after a crash may store this message again", logging.TraceKey, trace, "err", err)
		}
		var hdr string
		if len(write) == 1 {
			rc := ss.rcpts[write[0]]
			hdr = s.headers(ss, trace, rc.user.Name+"@"+rc.domain, rc.to, now)
		} else {
			hdr = s.headers(ss, trace, "", "", now)
		}
		_, err := mailbox.DeliverMany(boxes, io.MultiReader(strings.NewReader(hdr), io.NewSectionReader(body, 0, size)))
		errs = mailbox.BoxErrors(err, len(boxes))
		stored := int64(len(hdr)) + size
		for j, i := range write {
			if errs[j] == nil && claimed[i] {
				record = append(record, rkeys[i])
			}
		}
		for j, i := range write {
			rc := ss.rcpts[i]
			if errs[j] != nil {
				results[i] = reply(452, smtp.EnhancedCode{4, 3, 1}, "cannot store the message (%s), try again later", shortReason(errs[j]))
				continue
			}
			s.usage.add(rc.user.Name, stored)
			results[i] = reply(250, smtp.EnhancedCode{2, 0, 0}, "delivered to %s (%s)", rc.user.Name, trace)
		}
	}
	// Durable before the 250, like the message.
	if len(record) > 0 {
		if err := s.cfg.Keys.Record(record); err != nil {
			s.log.Error("recording delivery keys failed: the message is stored and acknowledged, but a retry of it may be stored again", logging.TraceKey, trace, "err", err)
		}
	}
	errAt := map[int]error{}
	for j, i := range write {
		if errs[j] != nil {
			errAt[i] = errs[j]
		}
	}
	for i, rc := range ss.rcpts {
		re := results[i]
		status.SetStatus(rc.to, re)
		ss.addLog(outcome{to: rc.to, user: rc.user.Name, from: ss.from, code: re.Code, enhanced: re.EnhancedCode, text: re.Message, err: errAt[i], repeat: repeat[i]})
	}
	ss.flushLog(trace)
	return nil
}

// receiveError is the reply for a message that could not be received.
func receiveError(err error, lim Limits) *smtp.SMTPError {
	var se *smtp.SMTPError
	var sp *errSpool
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return se // go-smtp's own, e.g. 552 5.3.4 message too big
	case errors.Is(err, smtp.ErrTooLongLine):
		return reply(500, smtp.EnhancedCode{5, 5, 2}, "line longer than %d bytes in the message", lim.MaxLineLength)
	case errors.As(err, &sp):
		return reply(452, smtp.EnhancedCode{4, 3, 1}, "cannot spool the message (%s), try again later", shortReason(err))
	case errors.As(err, &ne) && ne.Timeout():
		return reply(451, smtp.EnhancedCode{4, 4, 2}, "timeout reading the message")
	}
	return reply(451, smtp.EnhancedCode{4, 4, 2}, "error reading the message")
}

// shortReason names a write failure for the client without the paths the
// log line carries: the system's errno text when there is one.
func shortReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return "write error"
}

// headers builds the trace headers prepended to the stored message. With
// one mailbox, deliveredTo and forRcpt name the recipient; with several
// (one shared file) they are empty. LF line ends, like the stored message.
func (s *Server) headers(ss *session, trace, deliveredTo, forRcpt string, now time.Time) string {
	var b strings.Builder
	b.Grow(256)
	b.WriteString("Return-Path: <")
	b.WriteString(ss.from)
	b.WriteString(">\n")
	if deliveredTo != "" {
		b.WriteString("Delivered-To: ")
		b.WriteString(deliveredTo)
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Received: from %s (%s)\n\tby %s (correo pdeliveryd) with LMTP id %s", ss.helo, ss.client, s.name, trace)
	if forRcpt != "" {
		b.WriteString("\n\tfor <")
		b.WriteString(forRcpt)
		b.WriteString(">")
	}
	b.WriteString(";\n\t")
	b.WriteString(now.Format(time.RFC1123Z))
	b.WriteString("\n")
	return b.String()
}

// maxKeyLine bounds the first line read for the delivery key header.
const maxKeyLine = 512

// deliveryKey returns the delivery key of a message whose first line is a
// valid key header (see package dedup), and that line's length, which is
// not stored. Any other first line, including a key header whose MAC is
// wrong (not written by a correo host), leaves the message as it came.
func (s *Server) deliveryKey(msg io.ReaderAt, size int64) (key string, skip int64) {
	if s.cfg.Ring == nil {
		return "", 0
	}
	head := make([]byte, min(size, maxKeyLine))
	n, _ := msg.ReadAt(head, 0)
	line, _, ok := strings.Cut(string(head[:n]), "\n")
	if !ok {
		return "", 0
	}
	key, valid, isHeader := dedup.ParseLine(s.cfg.Ring, line)
	if !valid {
		if isHeader {
			if ok, suppressed := s.forged.Allow("", time.Now()); ok {
				s.log.Warn("ignored a delivery key header without a valid MAC: not from a correo host of this cluster, or sealed with a key no longer in the key file",
					"field", dedup.Header, "suppressed", suppressed)
			}
		}
		return "", 0
	}
	return key, int64(len(line)) + 1
}

// boxPath is the Maildir a message goes to: the user's, or its Junk
// folder when the mx quarantined it.
func boxPath(maildir string, junk bool) string {
	if junk {
		return filepath.Join(maildir, JunkFolder)
	}
	return maildir
}

// unsureWindow bounds which messages storedAlready reads: those whose
// Maildir name says they arrived from a little before the interrupted
// attempt began to well after (the write follows the intent at once; the
// slack covers a clock step).
const unsureWindow = 10 * time.Minute

// storedAlready reports whether box holds the message with this trace id
// that an interrupted attempt began to store at since (unix seconds): its
// Received line names the trace, and the trace is the queued message's
// own. Only files named within unsureWindow of since are read, so this
// costs a directory listing and a few reads, once per key after a crash.
func storedAlready(box, trace string, since int64) bool {
	msgs, err := mailbox.New(box).List()
	if err != nil {
		return false // no mailbox, or unreadable: deliver, at worst twice
	}
	lo, hi := (since-int64(unsureWindow/time.Second))*1e6, (since+int64(unsureWindow/time.Second))*1e6
	mark := []byte("(correo pdeliveryd) with LMTP id " + trace)
	head := make([]byte, 4096)
	for _, m := range msgs {
		if t := mailbox.KeyTime(m.Key); t < lo || t > hi {
			continue
		}
		f, err := os.Open(filepath.Join(box, m.Dir, m.Name))
		if err != nil {
			continue // moved to cur/ or deleted meanwhile
		}
		n, _ := f.ReadAt(head, 0)
		f.Close()
		if i := bytes.Index(head[:n], mark); i >= 0 {
			if rest := head[i+len(mark) : n]; len(rest) > 0 && (rest[0] == '\n' || rest[0] == ';') {
				return true
			}
		}
	}
	return false
}
