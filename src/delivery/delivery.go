// Package delivery routes a message to the storage hosts that hold its
// recipients' mailboxes and hands it over by LMTP (RFC 2033), the way the
// paper's pdelivery talked to pdeliveryd. smtpd (mx role) and pdelivery
// both use it:
//
//	d, _ := delivery.New(delivery.Config{Profile: p, Users: pw})
//	results := d.Deliver(ctx, delivery.Envelope{From: from, To: rcpts}, msg)
//
// Deliver looks each recipient up in passwdd (through Resolver), groups the
// recipients per storage host, runs one LMTP transaction per host (hosts in
// parallel, over a small pool of kept-alive connections per host) and
// returns exactly one Result per recipient, in envelope order: Delivered,
// Temporary (try again later: the caller keeps the message queued) or
// Permanent (bounce), with the server's code and text.
//
// It never hangs on a dead host: dialing is bounded by DialTimeout and
// every read and write by IOTimeout, and cancelling the context aborts a
// transaction at once. A host that cannot be reached, answers nonsense,
// or drops the connection gives Temporary results; a recipient's outcome
// is unknown only when the connection is lost after the final dot, and
// that too is Temporary (the retry may then duplicate the message, which
// is the SMTP rule: never lose, rarely duplicate).
//
// A storage host that answers "451 4.3.0 <user> is stored on H, not here"
// (the mailbox moved after the lookup, or the caller had no directory) is
// followed once to H.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"correo/src/cluster"
	"correo/src/dedup"
	"correo/src/keyfile"
	"correo/src/pwclient"
	"correo/src/pwproto"
)

// Status is a recipient's outcome.
type Status int

const (
	// Delivered: the storage host answered 250; the message is durable in
	// the mailbox.
	Delivered Status = iota + 1
	// Temporary: not delivered now; keep the message and retry later.
	Temporary
	// Permanent: never deliverable as is; bounce it.
	Permanent
)

func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Temporary:
		return "temporary"
	case Permanent:
		return "permanent"
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Envelope is one message's sender and recipients.
type Envelope struct {
	// From is the reverse path; "" is the null sender (bounces).
	From string
	// To are the recipient addresses (local@domain), as given by the
	// client. Duplicates are delivered once and reported for each entry.
	To []string
	// Trace is the message's trace id, for the log lines; "" for none.
	Trace string
	// Hosts, when set, is aligned with To: the storage host a lookup made
	// moments ago found for each recipient ("" where there was none).
	// Such a recipient goes there without asking passwd again: the
	// storage host checks it anyway, and one that has moved since answers
	// "stored on" and is followed. For a first attempt only: a retry asks.
	Hosts []string
	// Key names this message for every attempt (smtpd's queue: queue id
	// and trace id), so that a storage host that stored it already answers
	// a retry without storing it again (see package dedup). Sent only when
	// Config.Ring is set; "" sends none.
	Key string
}

// Message is the message to deliver: read from the start for every
// attempt (a host, a redirect, a retry on a fresh connection), so it must
// be re-readable. *bytes.Reader, *io.SectionReader and *strings.Reader
// qualify; smtpd passes its queue file as io.NewSectionReader(f, 0, size).
type Message interface {
	io.ReaderAt
	Size() int64
}

// Result is the outcome for one recipient.
type Result struct {
	Rcpt     string
	Status   Status
	Code     int    // SMTP/LMTP reply code: 250, 451, 550 ...
	Enhanced string // enhanced status code, e.g. "2.0.0", "4.4.1"; may be ""
	Text     string // reply text without code and enhanced code
	Host     string // the storage host that answered or was tried; "" if none
}

func (r Result) String() string {
	s := fmt.Sprintf("%s: %s %d", r.Rcpt, r.Status, r.Code)
	if r.Enhanced != "" {
		s += " " + r.Enhanced
	}
	s += " " + r.Text
	if r.Host != "" {
		s += " (host " + r.Host + ")"
	}
	return s
}

// Resolver finds the user a mail address delivers to. *pwclient.Client
// is one.
type Resolver interface {
	LookupAddr(ctx context.Context, addr string) (pwproto.User, error)
}

// Config configures a Deliverer.
type Config struct {
	Profile *cluster.Profile
	// Users finds each recipient's storage host. Nil means no directory
	// (pdelivery run by a user who cannot read the cluster key): every
	// recipient goes to Fallback first and redirects are followed.
	Users Resolver
	// Fallback is the storage host used when Users is nil; empty means
	// the first storage host of the profile.
	Fallback string
	// Local names the host this process runs on. Deliveries to it go
	// through Socket (pdeliveryd's Unix socket) when Socket is set and
	// can be connected to, else by TCP like any other host.
	Local  string
	Socket string
	// HelloName is sent in LHLO; empty means Local, or "localhost".
	HelloName string
	// DialTimeout bounds connecting (default 5 s); IOTimeout bounds every
	// read and write, including the wait for the replies after the final
	// dot while the storage host fsyncs (default 60 s).
	DialTimeout time.Duration
	IOTimeout   time.Duration
	// MaxIdle is how many idle connections are kept per host (default
	// 8); IdleTimeout is how long one may stay idle (default 30 s, well
	// under pdeliveryd's 5 minute idle timeout, so a kept connection is
	// never one the server is about to drop).
	MaxIdle     int
	IdleTimeout time.Duration
	Log         *slog.Logger
	// Ring seals the Envelope.Key sent to the storage hosts (the cluster
	// key file); nil sends no key (pdelivery: a one-shot MDA has no retry
	// of its own to deduplicate).
	Ring *keyfile.Ring
}

// SocketName is pdeliveryd's Unix socket in its state directory, and
// DefaultSocket where that is with the default state directory: how
// programs on a storage host reach it without TCP.
const (
	SocketName    = "lmtp.sock"
	DefaultSocket = "/var/lib/correo/pdeliveryd/" + SocketName
)

// Defaults for Config's zero values.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultIOTimeout   = 60 * time.Second
	DefaultMaxIdle     = 8
	DefaultIdleTimeout = 30 * time.Second
	// maxRedirects bounds how often one recipient follows "stored on":
	// one hop covers a mailbox moved since the lookup (or no directory);
	// more would be a routing loop between misconfigured hosts.
	maxRedirects = 1
)

// Deliverer delivers messages; it is safe for concurrent use and holds
// the connection pools, so keep one per process and Close it at the end.
type Deliverer struct {
	cfg   Config
	log   *slog.Logger
	hosts map[string]string // storage host name → LMTP address

	mu     sync.Mutex
	pools  map[string]*pool
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup

	stats statsCounters
}

// New checks the configuration and returns a Deliverer.
func New(cfg Config) (*Deliverer, error) {
	if cfg.Profile == nil {
		return nil, errors.New("delivery: no profile")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = DefaultIOTimeout
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = DefaultMaxIdle
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.HelloName == "" {
		cfg.HelloName = cfg.Local
		if cfg.HelloName == "" {
			cfg.HelloName = "localhost"
		}
	}
	d := &Deliverer{cfg: cfg, log: cfg.Log, hosts: map[string]string{}, pools: map[string]*pool{}, stop: make(chan struct{})}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	for _, e := range cfg.Profile.Endpoints(cluster.SvcLMTP) {
		d.hosts[e.Host] = e.Addr.String()
	}
	if len(d.hosts) == 0 {
		return nil, fmt.Errorf("delivery: %s has no host with role %s", cfg.Profile.Source, cluster.RoleStorage)
	}
	if cfg.Users == nil {
		if cfg.Fallback == "" {
			cfg.Fallback = cfg.Profile.Endpoints(cluster.SvcLMTP)[0].Host
			d.cfg.Fallback = cfg.Fallback
		}
		if _, ok := d.hosts[cfg.Fallback]; !ok {
			return nil, fmt.Errorf("delivery: fallback host %q is not a storage host of %s", cfg.Fallback, cfg.Profile.Source)
		}
	}
	d.wg.Add(1)
	go d.janitor()
	return d, nil
}

// Close closes every pooled connection. Deliver must not be called after.
func (d *Deliverer) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	pools := d.pools
	d.pools = map[string]*pool{}
	d.mu.Unlock()
	close(d.stop)
	d.wg.Wait()
	for _, p := range pools {
		p.closeAll()
	}
	return nil
}

// janitor closes connections idle for longer than IdleTimeout, so a quiet
// process does not sit on sockets the servers have given up on.
func (d *Deliverer) janitor() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.IdleTimeout / 2)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.mu.Lock()
			pools := make([]*pool, 0, len(d.pools))
			for _, p := range d.pools {
				pools = append(pools, p)
			}
			d.mu.Unlock()
			for _, p := range pools {
				p.prune(time.Now())
			}
		}
	}
}

// Stats counts connection use, for tests and monitoring.
type Stats struct {
	Dials        uint64 // new connections made
	Reuses       uint64 // transactions run on a pooled connection
	Transactions uint64 // LMTP transactions started
}

// Stats returns the counters.
func (d *Deliverer) Stats() Stats { return d.stats.snapshot() }

// Deliver delivers msg to every recipient of env and returns one Result per
// env.To entry, in the same order. It returns when every host has answered
// or failed; ctx bounds the whole call.
func (d *Deliverer) Deliver(ctx context.Context, env Envelope, msg Message) []Result {
	results := make([]Result, len(env.To))
	if err := CheckPath(env.From, true); err != nil {
		ae := err.(*AddrError)
		for i, rcpt := range env.To {
			results[i] = Result{Rcpt: rcpt, Status: Permanent, Code: 501, Enhanced: "5.1.7", Text: "bad sender address syntax: " + ae.Reason}
		}
		return results
	}
	if line := dedup.Line(d.cfg.Ring, env.Key); line != "" {
		msg = &keyed{head: line, msg: msg}
	}
	// Route every recipient: a host, or a final result already.
	route := make([]string, len(env.To))
	for i, rcpt := range env.To {
		results[i].Rcpt = rcpt
		if i < len(env.Hosts) {
			if _, known := d.hosts[env.Hosts[i]]; known {
				route[i] = env.Hosts[i]
				continue
			}
		}
		host, res, done := d.resolve(ctx, rcpt)
		if done {
			results[i] = res
			results[i].Rcpt = rcpt
			continue
		}
		route[i] = host
	}
	pending := make([]int, 0, len(env.To))
	for i := range env.To {
		if route[i] != "" {
			pending = append(pending, i)
		}
	}
	for hop := 0; len(pending) > 0; hop++ {
		d.sendAll(ctx, env, msg, route, pending, results)
		if hop >= maxRedirects {
			break
		}
		// Recipients whose host said "stored on H": try H once.
		next := pending[:0:0]
		for _, i := range pending {
			r := results[i]
			if r.Code != 451 {
				continue
			}
			h, ok := ParseStoredElsewhere(r.Text)
			if !ok || h == route[i] {
				continue
			}
			if _, known := d.hosts[h]; !known {
				results[i].Text += " (and " + h + " is not a storage host of this cluster's profile)"
				continue
			}
			d.log.InfoContext(ctx, "following a redirect", "trace", env.Trace, "rcpt", r.Rcpt, "from_host", route[i], "to_host", h)
			route[i] = h
			next = append(next, i)
		}
		pending = next
	}
	return results
}

// resolve finds a recipient's storage host, or its final result.
func (d *Deliverer) resolve(ctx context.Context, rcpt string) (host string, res Result, done bool) {
	loc, err := ParseLocal(d.cfg.Profile, rcpt)
	if err != nil {
		ae := err.(*AddrError)
		return "", Result{Status: Permanent, Code: ae.Code, Enhanced: ae.Enhanced, Text: ae.Text + ": " + ae.Reason}, true
	}
	if d.cfg.Users == nil {
		return d.cfg.Fallback, Result{}, false
	}
	u, err := d.cfg.Users.LookupAddr(ctx, loc.Key())
	switch {
	case err == nil:
	case errors.Is(err, pwclient.ErrNotFound):
		return "", Result{Status: Permanent, Code: 550, Enhanced: "5.1.1", Text: "no such user"}, true
	case errors.Is(err, pwclient.ErrNoServer), errors.Is(err, pwclient.ErrTempFail):
		return "", Result{Status: Temporary, Code: 451, Enhanced: "4.4.3", Text: "user directory unavailable, try again later"}, true
	case ctx.Err() != nil:
		return "", Result{Status: Temporary, Code: 451, Enhanced: "4.4.7", Text: "delivery abandoned: " + ctx.Err().Error()}, true
	default:
		d.log.WarnContext(ctx, "user lookup failed", "rcpt", rcpt, "err", err)
		return "", Result{Status: Temporary, Code: 451, Enhanced: "4.3.0", Text: "user lookup failed, try again later"}, true
	}
	// The state is checked again by the storage host with a fresher
	// lookup; answering here spares a connection and gives the same
	// reply.
	switch u.State {
	case pwproto.StateDisabled:
		return "", Result{Status: Permanent, Code: 550, Enhanced: "5.2.1", Text: "mailbox disabled"}, true
	case pwproto.StateMoving:
		return "", Result{Status: Temporary, Code: 451, Enhanced: "4.2.0", Text: "mailbox being moved, try again later"}, true
	}
	if _, ok := d.hosts[u.Storage]; !ok {
		d.log.ErrorContext(ctx, "user's storage host is not in the profile", "rcpt", rcpt, "user", u.Name, "storage", u.Storage)
		return "", Result{Status: Temporary, Code: 451, Enhanced: "4.3.0", Host: u.Storage,
			Text: fmt.Sprintf("storage host %q of this user is not in the cluster profile", u.Storage)}, true
	}
	return u.Storage, Result{}, false
}

// sendAll runs one transaction per host for the pending recipients, hosts
// in parallel, and fills their results.
func (d *Deliverer) sendAll(ctx context.Context, env Envelope, msg Message, route []string, pending []int, results []Result) {
	byHost := map[string][]int{}
	for _, i := range pending {
		byHost[route[i]] = append(byHost[route[i]], i)
	}
	hosts := make([]string, 0, len(byHost))
	for h := range byHost {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	if len(hosts) == 1 {
		d.sendHost(ctx, env, msg, hosts[0], byHost[hosts[0]], results)
		return
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.sendHost(ctx, env, msg, h, byHost[h], results)
		}()
	}
	wg.Wait()
}

// reply turns a server's reply into a Result.
func reply(rcpt, host string, code int, text string) Result {
	r := Result{Rcpt: rcpt, Code: code, Host: host}
	r.Enhanced, r.Text = splitEnhanced(text)
	switch {
	case code >= 200 && code < 300:
		r.Status = Delivered
	case code >= 500 && code < 600:
		r.Status = Permanent
	default:
		r.Status = Temporary
	}
	return r
}

// splitEnhanced splits "2.0.0 text" into its enhanced code and text.
func splitEnhanced(s string) (enh, text string) {
	code, rest, ok := strings.Cut(s, " ")
	if ok && isEnhanced(code) {
		return code, rest
	}
	return "", s
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 {
			return false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// temp is a Temporary result for a failure on our side of the wire.
func temp(rcpt, host, enh, text string) Result {
	return Result{Rcpt: rcpt, Status: Temporary, Code: 451, Enhanced: enh, Text: text, Host: host}
}

// keyed is a message with the delivery key's header line in front: the
// queue's bytes stay as accepted, the line exists only on the wire.
type keyed struct {
	head string
	msg  Message
}

func (k *keyed) Size() int64 { return int64(len(k.head)) + k.msg.Size() }

func (k *keyed) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < int64(len(k.head)) {
		n = copy(p, k.head[off:])
		if n == len(p) {
			return n, nil
		}
		off = 0
	} else {
		off -= int64(len(k.head))
	}
	m, err := k.msg.ReadAt(p[n:], off)
	return n + m, err
}
