package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

type statsCounters struct {
	dials, reuses, transactions atomic.Uint64
}

func (s *statsCounters) snapshot() Stats {
	return Stats{Dials: s.dials.Load(), Reuses: s.reuses.Load(), Transactions: s.transactions.Load()}
}

// errAborted is returned by reads and writes after the transaction's
// context was cancelled.
var errAborted = errors.New("delivery abandoned (context cancelled)")

// ioConn gives every read and write its own deadline, so a transfer
// that makes progress may take as long as it needs while a peer that
// stops answering is dropped after one IOTimeout. go-smtp's client sets
// deadlines itself only around commands, not while the message body is
// written; its calls are ignored here so there is one policy.
type ioConn struct {
	net.Conn
	timeout time.Duration

	mu      sync.Mutex
	aborted bool
}

func (c *ioConn) arm(set func(time.Time) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		return errAborted
	}
	return set(time.Now().Add(c.timeout))
}

func (c *ioConn) Read(b []byte) (int, error) {
	if err := c.arm(c.Conn.SetReadDeadline); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *ioConn) Write(b []byte) (int, error) {
	if err := c.arm(c.Conn.SetWriteDeadline); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *ioConn) SetDeadline(time.Time) error      { return nil }
func (c *ioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *ioConn) SetWriteDeadline(time.Time) error { return nil }

// abort makes any blocked or later read or write fail at once.
func (c *ioConn) abort() {
	c.mu.Lock()
	c.aborted = true
	c.Conn.SetDeadline(time.Unix(1, 0))
	c.mu.Unlock()
}

// pconn is one LMTP connection to a storage host.
type pconn struct {
	c      *smtp.Client
	conn   *ioConn
	used   time.Time
	reused bool
}

func (pc *pconn) close() { pc.c.Close() }

// pool keeps idle connections to one host, most recently used last.
type pool struct {
	d      *Deliverer
	host   string
	mu     sync.Mutex
	idle   []*pconn
	closed bool
}

func (d *Deliverer) pool(host string) *pool {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.pools[host]
	if p == nil {
		p = &pool{d: d, host: host}
		if !d.closed {
			d.pools[host] = p
		}
	}
	return p
}

// get returns a pooled connection younger than IdleTimeout, or a new one.
func (p *pool) get(ctx context.Context) (*pconn, error) {
	now := time.Now()
	p.mu.Lock()
	for len(p.idle) > 0 {
		pc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(pc.used) < p.d.cfg.IdleTimeout {
			p.mu.Unlock()
			pc.reused = true
			p.d.stats.reuses.Add(1)
			return pc, nil
		}
		pc.close()
	}
	p.mu.Unlock()
	return p.dial(ctx)
}

// put returns a healthy connection to the pool.
func (p *pool) put(pc *pconn) {
	pc.used = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.d.cfg.MaxIdle {
		p.mu.Unlock()
		pc.close()
		return
	}
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

func (p *pool) prune(now time.Time) {
	p.mu.Lock()
	keep := p.idle[:0]
	var drop []*pconn
	for _, pc := range p.idle {
		if now.Sub(pc.used) < p.d.cfg.IdleTimeout {
			keep = append(keep, pc)
		} else {
			drop = append(drop, pc)
		}
	}
	p.idle = keep
	p.mu.Unlock()
	for _, pc := range drop {
		pc.close()
	}
}

func (p *pool) closeAll() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, pc := range idle {
		pc.close()
	}
}

// dial connects to the host (by its Unix socket when it is this host) and
// runs the greeting and LHLO.
func (p *pool) dial(ctx context.Context) (*pconn, error) {
	d := p.d
	dialer := net.Dialer{Timeout: d.cfg.DialTimeout}
	var raw net.Conn
	var err error
	if p.host == d.cfg.Local && d.cfg.Socket != "" {
		raw, err = dialer.DialContext(ctx, "unix", d.cfg.Socket)
		if err != nil {
			// Not permitted (a user's MDA outside the socket's group) or
			// pdeliveryd restarting: TCP reaches the same server.
			d.log.Debug("local LMTP socket unusable, using TCP", "socket", d.cfg.Socket, "err", err)
		}
	}
	addr := d.hosts[p.host]
	if raw == nil {
		raw, err = dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("cannot connect to storage host %s (%s): %w", p.host, addr, err)
		}
	}
	d.stats.dials.Add(1)
	conn := &ioConn{Conn: raw, timeout: d.cfg.IOTimeout}
	// The greeting and LHLO are bounded by the timeouts like the rest,
	// and by ctx.
	stop := context.AfterFunc(ctx, conn.abort)
	defer stop()
	c := smtp.NewClientLMTP(conn)
	if err := c.Hello(d.cfg.HelloName); err != nil {
		c.Close()
		return nil, fmt.Errorf("storage host %s (%s) refused the session: %s", p.host, raw.RemoteAddr(), errText(err))
	}
	return &pconn{c: c, conn: conn}, nil
}

// errText renders an SMTP error as "code enhanced text", anything else
// as its message.
func errText(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %s %s", se.Code, enhString(se.EnhancedCode), se.Message)
	}
	return err.Error()
}

func enhString(e smtp.EnhancedCode) string {
	if e == smtp.EnhancedCodeNotSet || e == smtp.NoEnhancedCode {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}

func smtpReply(rcpt, host string, se *smtp.SMTPError) Result {
	r := reply(rcpt, host, se.Code, se.Message)
	if e := enhString(se.EnhancedCode); e != "" {
		r.Enhanced = e
	}
	return r
}

// sendHost delivers to the recipients idxs, all routed to host, in one
// LMTP transaction and fills their results.
func (d *Deliverer) sendHost(ctx context.Context, env Envelope, msg Message, host string, idxs []int, results []Result) {
	// One RCPT per distinct address: LMTP answers per address, and a
	// duplicate would be delivered twice.
	var uniq []string
	seen := map[string]bool{}
	for _, i := range idxs {
		if r := results[i].Rcpt; !seen[r] {
			seen[r] = true
			uniq = append(uniq, r)
		}
	}
	out := map[string]Result{}
	p := d.pool(host)
	for attempt := 0; ; attempt++ {
		pc, err := p.get(ctx)
		if err != nil {
			for _, r := range uniq {
				out[r] = temp(r, host, "4.4.1", err.Error())
			}
			break
		}
		retry := d.transaction(ctx, env, msg, host, p, pc, uniq, out)
		// A pooled connection the server has closed meanwhile fails on
		// MAIL, before anything was accepted: try once more on a new one.
		if retry && pc.reused && attempt == 0 {
			continue
		}
		break
	}
	for _, i := range idxs {
		r := out[results[i].Rcpt]
		results[i] = r
	}
	for _, r := range uniq {
		res := out[r]
		d.log.DebugContext(ctx, "lmtp result", "trace", env.Trace, "rcpt", r, "host", host, "status", res.Status.String(),
			"code", res.Code, "enhanced", res.Enhanced, "text", res.Text)
	}
}

// transaction runs MAIL, RCPT..., DATA on pc and fills out. It returns
// true when the connection failed before the server accepted anything, so
// the caller may retry on a fresh connection.
func (d *Deliverer) transaction(ctx context.Context, env Envelope, msg Message, host string, p *pool, pc *pconn, uniq []string, out map[string]Result) (retry bool) {
	d.stats.transactions.Add(1)
	stop := context.AfterFunc(ctx, pc.conn.abort)
	healthy := false
	defer func() {
		if stop() && healthy {
			p.put(pc)
		} else {
			pc.close()
		}
	}()
	lost := func(rcpts []string, what string, err error) {
		for _, r := range rcpts {
			if _, done := out[r]; done {
				continue
			}
			if ctx.Err() != nil {
				out[r] = temp(r, host, "4.4.7", "delivery abandoned: "+ctx.Err().Error())
			} else {
				out[r] = temp(r, host, "4.4.2", fmt.Sprintf("connection to storage host %s lost %s: %v", host, what, err))
			}
		}
	}
	c := pc.c
	var se *smtp.SMTPError
	if err := c.Mail(env.From, &smtp.MailOptions{Size: msg.Size()}); err != nil {
		if !errors.As(err, &se) {
			if pc.reused && ctx.Err() == nil {
				return true
			}
			lost(uniq, "at MAIL", err)
			return false
		}
		for _, r := range uniq {
			out[r] = smtpReply(r, host, se)
		}
		healthy = se.Code != 421 && c.Reset() == nil
		return false
	}
	var accepted []string
	for i, r := range uniq {
		err := c.Rcpt(r, nil)
		if err == nil {
			accepted = append(accepted, r)
			continue
		}
		if !errors.As(err, &se) {
			lost(uniq, "at RCPT", err)
			return false
		}
		out[r] = smtpReply(r, host, se)
		if se.Code == 421 { // the server is closing the connection
			lost(uniq[i+1:], "(421 at RCPT)", err)
			lost(accepted, "(421 at RCPT)", err)
			return false
		}
	}
	if len(accepted) == 0 {
		healthy = c.Reset() == nil
		return false
	}
	w, err := c.Data()
	if err != nil {
		if errors.As(err, &se) {
			for _, r := range accepted {
				out[r] = smtpReply(r, host, se)
			}
			healthy = se.Code != 421 && c.Reset() == nil
			return false
		}
		lost(accepted, "at DATA", err)
		return false
	}
	if _, err := io.Copy(w, io.NewSectionReader(msg, 0, msg.Size())); err != nil {
		lost(accepted, "while sending the message", err)
		return false
	}
	resp, err := w.CloseWithLMTPResponse()
	var lmtpErr smtp.LMTPDataError
	errors.As(err, &lmtpErr)
	for _, r := range accepted {
		switch {
		case resp[r] != nil:
			out[r] = reply(r, host, 250, resp[r].StatusText)
		case lmtpErr[r] != nil:
			out[r] = smtpReply(r, host, lmtpErr[r])
		}
	}
	if err != nil && !isOnlyLMTPErr(err) {
		// The outcome of whoever got no reply is unknown: temporary, and a
		// retry may duplicate (never lose).
		lost(accepted, "after the message was sent (outcome unknown)", err)
		return false
	}
	healthy = true
	return false
}

func isOnlyLMTPErr(err error) bool {
	_, ok := err.(smtp.LMTPDataError)
	return ok
}
