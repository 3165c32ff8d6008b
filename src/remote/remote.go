// Package remote delivers the relay role's outgoing mail to the Internet:
// it implements queue.Deliverer for the queue's RouteRemote recipients.
//
// For each recipient domain it looks up the MX records with the
// configured name servers (RFC 5321 §5.1: by preference, equal ones
// shuffled; the domain's own A/AAAA records when there is no MX; a null
// MX, RFC 7505, fails at once), then tries the hosts in order on port 25
// until one takes the transaction. STARTTLS is used whenever a server
// offers it (opportunistic: certificates are not verified, since MX
// certificates rarely match and refusing would only push the mail to
// plaintext anyway; a failed handshake falls back to plaintext on a new
// connection). Connections are kept for a while and reused for the next
// message to the same host; at most MaxPerDestination transactions run at
// once per domain, so one slow site cannot take every queue worker.
//
// Results, per recipient, carry the server's own code and text: 2xx
// delivered, 5xx permanent (the queue bounces), everything else — 4xx,
// timeouts, refused or unreachable hosts, DNS failures — temporary (the
// queue retries with its back-off until the message's lifetime ends).
package remote

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"correo/src/delivery"
	"correo/src/logging"
)

// Config configures a Deliverer. Zero fields take the defaults noted.
type Config struct {
	// Resolvers are name servers as host:port; nil reads /etc/resolv.conf.
	Resolvers []string
	// Port is the SMTP port of every MX (25; other values for tests).
	Port int
	// HelloName is sent in EHLO: the host's FQDN.
	HelloName string
	// DialTimeout bounds connecting (30 s); CommandTimeout each command's
	// reply, including the greeting (5 min, RFC 5321 §4.5.3.2 asks for
	// that much); DataTimeout the reply after the final dot (10 min).
	DialTimeout    time.Duration
	CommandTimeout time.Duration
	DataTimeout    time.Duration
	// DNSTimeout bounds one DNS query (5 s).
	DNSTimeout time.Duration
	// MaxPerDestination bounds concurrent transactions per domain (5).
	MaxPerDestination int
	// IdleTimeout is how long an unused connection is kept (30 s).
	IdleTimeout time.Duration
	// TLS is the client configuration for STARTTLS; nil is an
	// opportunistic one that does not verify the certificate.
	TLS *tls.Config
	Log *slog.Logger
}

// Deliverer sends messages to other domains' MX hosts.
type Deliverer struct {
	cfg Config
	res resolver
	log *slog.Logger

	mu     sync.Mutex
	sems   map[string]*destSem    // per destination domain, while in use
	idle   map[string][]*idleConn // per MX address:port
	noTLS  map[string]time.Time   // MX address:port → plaintext until
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

type idleConn struct {
	c     *smtp.Client
	since time.Time
	tls   bool
}

// New checks cfg and reads the resolvers.
func New(cfg Config) (*Deliverer, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	if cfg.HelloName == "" {
		return nil, errors.New("remote: HelloName is required (the host's FQDN, sent in EHLO)")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DialTimeout, 30*time.Second)
	def(&cfg.CommandTimeout, 5*time.Minute)
	def(&cfg.DataTimeout, 10*time.Minute)
	def(&cfg.DNSTimeout, 5*time.Second)
	def(&cfg.IdleTimeout, 30*time.Second)
	if cfg.MaxPerDestination <= 0 {
		cfg.MaxPerDestination = 5
	}
	if cfg.TLS == nil {
		cfg.TLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	}
	if len(cfg.Resolvers) == 0 {
		s, err := serversFromResolvConf("/etc/resolv.conf")
		if err != nil {
			return nil, err
		}
		cfg.Resolvers = s
	}
	d := &Deliverer{cfg: cfg, log: cfg.Log, res: resolver{servers: cfg.Resolvers, timeout: cfg.DNSTimeout},
		sems: map[string]*destSem{}, idle: map[string][]*idleConn{}, noTLS: map[string]time.Time{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go d.janitor()
	return d, nil
}

// Close ends the kept connections.
func (d *Deliverer) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	all := d.idle
	d.idle = map[string][]*idleConn{}
	d.mu.Unlock()
	close(d.stop)
	<-d.done
	for _, l := range all {
		for _, ic := range l {
			ic.c.Close()
		}
	}
	return nil
}

// janitor politely closes connections idle past IdleTimeout.
func (d *Deliverer) janitor() {
	defer close(d.done)
	t := time.NewTicker(d.cfg.IdleTimeout / 2)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case now := <-t.C:
			var old []*idleConn
			d.mu.Lock()
			for k, until := range d.noTLS {
				if now.After(until) {
					delete(d.noTLS, k)
				}
			}
			for k, l := range d.idle {
				keep := l[:0]
				for _, ic := range l {
					if now.Sub(ic.since) > d.cfg.IdleTimeout {
						old = append(old, ic)
					} else {
						keep = append(keep, ic)
					}
				}
				if len(keep) == 0 {
					delete(d.idle, k)
				} else {
					d.idle[k] = keep
				}
			}
			d.mu.Unlock()
			for _, ic := range old {
				ic.c.Quit()
				ic.c.Close()
			}
		}
	}
}

// Deliver implements queue.Deliverer: one result per env.To, in order.
func (d *Deliverer) Deliver(ctx context.Context, env delivery.Envelope, msg delivery.Message) []delivery.Result {
	results := make([]delivery.Result, len(env.To))
	byDomain := map[string][]int{}
	var order []string
	for i, rcpt := range env.To {
		at := strings.LastIndexByte(rcpt, '@')
		if at < 0 {
			results[i] = delivery.Result{Rcpt: rcpt, Status: delivery.Permanent, Code: 550, Enhanced: "5.1.3",
				Text: "recipient address has no domain"}
			continue
		}
		dom := strings.ToLower(rcpt[at+1:])
		if _, ok := byDomain[dom]; !ok {
			order = append(order, dom)
		}
		byDomain[dom] = append(byDomain[dom], i)
	}
	var wg sync.WaitGroup
	for _, dom := range order {
		wg.Add(1)
		go func(dom string, idx []int) {
			defer wg.Done()
			d.deliverDomain(ctx, dom, env, idx, msg, results)
		}(dom, byDomain[dom])
	}
	wg.Wait()
	return results
}

// deliverDomain delivers env.To[idx] (all at dom) and fills results.
func (d *Deliverer) deliverDomain(ctx context.Context, dom string, env delivery.Envelope, idx []int, msg delivery.Message, results []delivery.Result) {
	fail := func(status delivery.Status, code int, enh, text, host string) {
		for _, i := range idx {
			results[i] = delivery.Result{Rcpt: env.To[i], Status: status, Code: code, Enhanced: enh, Text: text, Host: host}
		}
	}
	hosts, err := d.res.lookup(ctx, dom)
	if err != nil {
		var le *lookupError
		if errors.As(err, &le) {
			st := delivery.Temporary
			if le.permanent {
				st = delivery.Permanent
			}
			fail(st, le.code, le.enhanced, le.text, "")
		} else {
			fail(delivery.Temporary, 451, "4.4.3", "lookup for "+dom+" failed: "+err.Error(), "")
		}
		return
	}
	sem := d.acquireSem(dom)
	defer d.releaseSem(dom, sem)
	select {
	case sem.ch <- struct{}{}:
	case <-ctx.Done():
		fail(delivery.Temporary, 451, "4.4.7", "gave up waiting for a connection slot to "+dom, "")
		return
	}
	defer func() { <-sem.ch }()

	lastText, lastHost := "no MX host could be tried", ""
	for _, h := range hosts {
		for _, ip := range h.Addrs {
			if ctx.Err() != nil {
				fail(delivery.Temporary, 451, "4.4.7", "delivery attempt timed out", h.Name)
				return
			}
			addr := netip.AddrPortFrom(ip, uint16(d.cfg.Port)).String()
			done, why := d.transact(ctx, h.Name, addr, env, idx, msg, results)
			if done {
				return
			}
			lastText, lastHost = why, h.Name
			d.log.InfoContext(ctx, "MX host failed, trying the next", logging.TraceKey, env.Trace, "domain", dom,
				"mx", h.Name, "addr", addr, "err", why)
		}
	}
	fail(delivery.Temporary, 451, "4.4.1", lastText, lastHost)
}

// destSem limits transactions to one domain; it is dropped when no
// delivery uses it, so the map does not grow with every domain ever seen.
type destSem struct {
	ch    chan struct{}
	users int
}

func (d *Deliverer) acquireSem(dom string) *destSem {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.sems[dom]
	if !ok {
		s = &destSem{ch: make(chan struct{}, d.cfg.MaxPerDestination)}
		d.sems[dom] = s
	}
	s.users++
	return s
}

func (d *Deliverer) releaseSem(dom string, s *destSem) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.users--; s.users == 0 {
		delete(d.sems, dom)
	}
}

// transact runs one SMTP transaction with the host at addr. done is false
// when the host could not take it at all (connection failure, greeting or
// MAIL refused temporarily): the caller tries the next host.
func (d *Deliverer) transact(ctx context.Context, host, addr string, env delivery.Envelope, idx []int, msg delivery.Message, results []delivery.Result) (done bool, why string) {
	c, isTLS, err := d.get(ctx, addr)
	if err != nil {
		return false, err.Error()
	}
	keep := false
	defer func() {
		if keep {
			d.put(addr, c, isTLS)
		} else {
			c.Close()
		}
	}()
	set := func(i int, code int, text string, host string) {
		results[i] = fromReply(env.To[i], host, code, text)
	}
	if err := c.Mail(env.From, nil); err != nil {
		code, text := errReply(err)
		if code >= 500 && code < 600 {
			for _, i := range idx {
				set(i, code, text, host)
			}
			return true, ""
		}
		return false, fmt.Sprintf("MAIL FROM refused: %d %s", code, text)
	}
	var accepted []int
	for _, i := range idx {
		if err := c.Rcpt(env.To[i], nil); err != nil {
			code, text := errReply(err)
			set(i, code, text, host)
			if code == 421 || code == 0 {
				// The server is going away: the rest of this domain's
				// recipients, and the ones already accepted, are deferred.
				for _, j := range idx {
					if results[j].Rcpt == "" || results[j].Status == delivery.Delivered {
						set(j, code, text, host)
					}
				}
				return true, ""
			}
			continue
		}
		accepted = append(accepted, i)
		results[i] = delivery.Result{Rcpt: env.To[i], Status: delivery.Delivered, Code: 250, Host: host} // provisional
	}
	if len(accepted) == 0 {
		c.Reset()
		keep = true
		return true, ""
	}
	w, err := c.Data()
	if err == nil {
		c.SubmissionTimeout = d.cfg.DataTimeout
		_, err = io.Copy(w, io.NewSectionReader(msg, 0, msg.Size()))
		if err == nil {
			var resp *smtp.DataResponse
			resp, err = w.CloseWithResponse()
			if err == nil {
				for _, i := range accepted {
					set(i, 250, resp.StatusText, host)
				}
				keep = true
				d.log.InfoContext(ctx, "delivered to MX", logging.TraceKey, env.Trace, "mx", host, "addr", addr,
					"rcpts", len(accepted), "tls", isTLS)
				return true, ""
			}
		} else {
			w.Close()
		}
	}
	code, text := errReply(err)
	for _, i := range accepted {
		set(i, code, text, host)
	}
	keep = code >= 400 && code < 600 && code != 421
	if keep {
		keep = c.Reset() == nil
	}
	return true, ""
}

// errReply extracts the code and text of a server reply; 0 for errors
// that are not replies (timeouts, closed connections): temporary.
func errReply(err error) (int, string) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		t := se.Message
		if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != smtp.EnhancedCodeNotSet {
			e := se.EnhancedCode
			t = fmt.Sprintf("%d.%d.%d %s", e[0], e[1], e[2], t)
		}
		return se.Code, t
	}
	return 0, err.Error()
}

// fromReply turns a reply into a result; code 0 is a connection failure.
func fromReply(rcpt, host string, code int, text string) delivery.Result {
	r := delivery.Result{Rcpt: rcpt, Host: host, Code: code}
	if code == 0 {
		r.Code, r.Enhanced, r.Text, r.Status = 451, "4.4.2", "connection to "+host+" failed: "+text, delivery.Temporary
		return r
	}
	if enh, rest, ok := strings.Cut(text, " "); ok && isEnhanced(enh) {
		r.Enhanced, r.Text = enh, rest
	} else {
		r.Text = text
	}
	switch {
	case code >= 200 && code < 300:
		r.Status = delivery.Delivered
	case code >= 500 && code < 600:
		r.Status = delivery.Permanent
	default:
		r.Status = delivery.Temporary
	}
	return r
}

func isEnhanced(s string) bool {
	p := strings.Split(s, ".")
	if len(p) != 3 || (p[0] != "2" && p[0] != "4" && p[0] != "5") {
		return false
	}
	for _, x := range p[1:] {
		if _, err := strconv.Atoi(x); err != nil || len(x) > 3 {
			return false
		}
	}
	return true
}

// get returns a kept connection to addr that still answers RSET, or a
// new one.
func (d *Deliverer) get(ctx context.Context, addr string) (*smtp.Client, bool, error) {
	for {
		d.mu.Lock()
		l := d.idle[addr]
		var ic *idleConn
		if n := len(l); n > 0 {
			ic = l[n-1]
			d.idle[addr] = l[:n-1]
		}
		d.mu.Unlock()
		if ic == nil {
			break
		}
		if time.Since(ic.since) < d.cfg.IdleTimeout && ic.c.Noop() == nil {
			return ic.c, ic.tls, nil
		}
		ic.c.Close()
	}
	// A host whose TLS handshake failed is spoken to in plaintext for an
	// hour rather than paying a failed handshake per connection.
	d.mu.Lock()
	tryTLS := time.Now().After(d.noTLS[addr])
	d.mu.Unlock()
	c, isTLS, err := d.dial(ctx, addr, tryTLS)
	var te tlsError
	if errors.As(err, &te) {
		d.log.Info("STARTTLS failed: retrying in plaintext", "addr", addr, "err", err)
		d.mu.Lock()
		d.noTLS[addr] = time.Now().Add(time.Hour)
		d.mu.Unlock()
		c, isTLS, err = d.dial(ctx, addr, false)
	}
	return c, isTLS, err
}

func (d *Deliverer) put(addr string, c *smtp.Client, isTLS bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		c.Close()
		return
	}
	d.idle[addr] = append(d.idle[addr], &idleConn{c: c, since: time.Now(), tls: isTLS})
}

type tlsError struct{ error }

func (e tlsError) Unwrap() error { return e.error }

// dial connects, reads the greeting, sends EHLO and, when the server
// offers it and tryTLS, upgrades with STARTTLS. go-smtp's client can only
// start TLS unconditionally and with its own EHLO name, so this first
// exchange is done here; the client then gets the connection with the
// greeting replayed and sends EHLO again (RFC 5321 allows a second EHLO).
func (d *Deliverer) dial(ctx context.Context, addr string, tryTLS bool) (*smtp.Client, bool, error) {
	dl := net.Dialer{Timeout: d.cfg.DialTimeout}
	nc, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	nc.SetDeadline(time.Now().Add(d.cfg.CommandTimeout))
	br := bufio.NewReader(nc)
	tp := textproto.NewReader(br)
	code, msg, err := tp.ReadResponse(220)
	if err != nil {
		nc.Close()
		return nil, false, fmt.Errorf("greeting from %s: %d %s (%v)", addr, code, msg, err)
	}
	if _, err := fmt.Fprintf(nc, "EHLO %s\r\n", d.cfg.HelloName); err != nil {
		nc.Close()
		return nil, false, fmt.Errorf("EHLO to %s: %w", addr, err)
	}
	_, msg, err = tp.ReadResponse(250)
	starttls := false
	if err == nil {
		for _, l := range strings.Split(msg, "\n") {
			if strings.EqualFold(strings.TrimSpace(l), "STARTTLS") {
				starttls = true
			}
		}
	}
	// An EHLO refusal is left to the client below (it falls back to HELO).
	var conn net.Conn = &replayConn{Conn: nc, r: io.MultiReader(strings.NewReader("220 replayed greeting\r\n"), br)}
	isTLS := false
	if starttls && tryTLS {
		if _, err := io.WriteString(nc, "STARTTLS\r\n"); err != nil {
			nc.Close()
			return nil, false, fmt.Errorf("STARTTLS to %s: %w", addr, err)
		}
		if code, msg, err := tp.ReadResponse(220); err != nil {
			nc.Close()
			return nil, false, tlsError{fmt.Errorf("STARTTLS refused by %s: %d %s", addr, code, msg)}
		}
		if br.Buffered() > 0 {
			nc.Close()
			return nil, false, fmt.Errorf("%s sent data before the TLS handshake (a protocol error or an injection attempt)", addr)
		}
		cfg := d.cfg.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, false, tlsError{fmt.Errorf("TLS handshake with %s: %w", addr, err)}
		}
		conn = &replayConn{Conn: tc, r: io.MultiReader(strings.NewReader("220 replayed greeting\r\n"), tc)}
		isTLS = true
	}
	nc.SetDeadline(time.Time{})
	c := smtp.NewClient(conn)
	c.CommandTimeout = d.cfg.CommandTimeout
	c.SubmissionTimeout = d.cfg.DataTimeout
	if err := c.Hello(d.cfg.HelloName); err != nil {
		c.Close()
		return nil, false, fmt.Errorf("EHLO to %s: %w", addr, err)
	}
	return c, isTLS, nil
}

// replayConn reads from r (a replayed greeting, then the connection).
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }
