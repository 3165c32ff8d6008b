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

	"correo/src/lmtpclient"
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
// stops answering is dropped after one IOTimeout. Deadlines set by anyone
// else are ignored so there is one policy.
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
	c      *lmtpclient.Client
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
	c, err := lmtpclient.New(conn, d.cfg.HelloName)
	if err != nil {
		conn.Close()
		var re *lmtpclient.ReplyError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("storage host %s (%s) refused the session: %s", p.host, raw.RemoteAddr(), re.Reply)
		}
		return nil, fmt.Errorf("storage host %s (%s): %w", p.host, raw.RemoteAddr(), err)
	}
	return &pconn{c: c, conn: conn}, nil
}

// lmtpReply is a recipient's result from the server's reply.
func lmtpReply(rcpt, host string, lr lmtpclient.Reply) Result {
	r := reply(rcpt, host, lr.Code, lr.Text)
	if lr.Enhanced != "" {
		r.Enhanced = lr.Enhanced
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

// transaction runs MAIL, RCPT..., DATA on pc (pipelined when the server
// allows) and fills out. It returns true when the connection failed
// before the server answered anything, so the caller may retry on a fresh
// connection.
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
	// resetOK ends a transaction that sent no message: the connection is
	// kept when the session is intact and RSET is accepted.
	resetOK := func(err error) bool { return err == nil && pc.c.Reset() == nil }
	o, err := pc.c.Send(env.From, msg.Size(), uniq, io.NewSectionReader(msg, 0, msg.Size()))
	if o.Mail.Code == 0 {
		// Nothing answered: a pooled connection the server has closed
		// meanwhile fails here, before anything was accepted.
		if pc.reused && ctx.Err() == nil {
			return true
		}
		lost(uniq, "at MAIL", err)
		return false
	}
	if !o.Mail.OK() {
		for _, r := range uniq {
			out[r] = lmtpReply(r, host, o.Mail)
		}
		healthy = resetOK(err)
		return false
	}
	var accepted []int
	for i, r := range uniq {
		switch rr := o.Rcpts[i]; {
		case rr.Code == 0:
			lost(uniq[i:i+1], "at RCPT", err)
		case rr.OK():
			accepted = append(accepted, i)
		default:
			out[r] = lmtpReply(r, host, rr)
		}
	}
	if len(accepted) == 0 {
		healthy = resetOK(err)
		return false
	}
	if !o.Sent && o.Data.Code != 354 {
		for _, i := range accepted {
			if o.Data.Code == 0 {
				lost(uniq[i:i+1], "at DATA", err)
			} else {
				out[uniq[i]] = lmtpReply(uniq[i], host, o.Data)
			}
		}
		healthy = resetOK(err)
		return false
	}
	for _, i := range accepted {
		if f := o.Final[i]; f.Code != 0 {
			out[uniq[i]] = lmtpReply(uniq[i], host, f)
		}
	}
	if err != nil {
		// The outcome of whoever got no reply is unknown: temporary, and a
		// retry may duplicate (never lose).
		var rest []string
		for _, i := range accepted {
			rest = append(rest, uniq[i])
		}
		lost(rest, "after the message was sent (outcome unknown)", err)
		return false
	}
	healthy = true
	return false
}
