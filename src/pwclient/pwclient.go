// Package pwclient asks passwdd, the cluster's password server, over the
// sealed UDP protocol of pwproto. Every daemon that needs a user (smtpd,
// pop3d, mailproxy, nssd, pdeliveryd) holds one Client and shares it among
// all its goroutines.
//
// Failover follows the paper: requests go to the current server; when it
// does not answer within Timeout (with one retransmission at Timeout/2) the
// request is retried on the other server, and a secondary that answers
// becomes the current server. While on the secondary the client pings the
// primary every second and returns to it as soon as it answers.
package pwclient

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"correo/src/cluster"
	"correo/src/keyfile"
	"correo/src/pwproto"
)

// Errors callers branch on. Returned errors wrap them with detail; use
// errors.Is.
var (
	ErrNotFound  = errors.New("pwclient: not found")
	ErrDenied    = errors.New("pwclient: authentication denied")
	ErrLockedOut = errors.New("pwclient: locked out after too many failures, try later")
	// ErrTempFail: a server answered that it cannot answer now (e.g. a
	// secondary still syncing). Callers answer with a temporary (4xx)
	// failure.
	ErrTempFail = errors.New("pwclient: password server temporarily unable to answer")
	// ErrNoServer: no server answered in time. Callers answer with a
	// temporary (4xx) failure; the wrapping error names the servers tried.
	ErrNoServer = errors.New("pwclient: no password server answered")
	// ErrBadRequest: the server could not parse the request — usually a
	// client newer than the server. Not retried on the other server.
	ErrBadRequest = errors.New("pwclient: password server rejected the request as malformed (client and server versions differ?)")
	ErrClosed     = errors.New("pwclient: client closed")
)

// DefaultTimeout is the paper's failover timeout.
const DefaultTimeout = 2 * time.Second

// readBuffer is the receive buffer asked for each socket.
const readBuffer = 4 << 20

// probeInterval is how often the primary is pinged while on the secondary.
const probeInterval = time.Second

// Server names one of the two password servers.
type Server int

const (
	Primary Server = iota
	Secondary
)

func (s Server) String() string {
	if s == Primary {
		return "primary"
	}
	return "secondary"
}

// Config configures a Client.
type Config struct {
	Primary   netip.AddrPort
	Secondary netip.AddrPort // the zero value: no secondary
	Ring      *keyfile.Ring
	// Timeout is how long one server gets to answer a request before the
	// other is asked; the request is retransmitted once at Timeout/2.
	// Zero means DefaultTimeout.
	Timeout time.Duration
	Log     *slog.Logger // nil: no logging
}

// Stats counts what a client did; see Client.Stats.
type Stats struct {
	Requests    uint64 // requests sent (not counting retransmissions)
	Retransmits uint64 // retransmissions at Timeout/2
	Failovers   uint64 // switches from the primary to the secondary
	Returns     uint64 // switches back to the primary
	// Datagrams dropped by the readers: not openable (forged, garbage,
	// another key), or authentic but for no pending request (late
	// duplicates, answers to cancelled requests).
	DroppedBad       uint64
	DroppedUnknownID uint64
}

// Client is safe for concurrent use. Close it to release its sockets.
type Client struct {
	timeout time.Duration
	codec   *pwproto.Codec
	log     *slog.Logger
	servers [2]*server // servers[Secondary] is nil without a secondary
	active  atomic.Int32
	ids     atomic.Uint64
	probing atomic.Bool

	mu      sync.Mutex
	pending map[uint64]chan answer
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup

	requests, retransmits, failovers, returns, droppedBad, droppedUnknown atomic.Uint64
	lastDropLog                                                           atomic.Int64
}

// server is one password server: a connected UDP socket, so the kernel
// filters datagrams from other sources and reports ICMP port unreachable as
// ECONNREFUSED.
type server struct {
	which Server
	addr  netip.AddrPort
	conn  *net.UDPConn

	mu      sync.Mutex
	refused chan struct{} // closed (and replaced) when the port is reported unreachable
}

type answer struct {
	resp *pwproto.Response
	from *server
}

// New dials the configured servers (UDP: nothing is sent yet) and starts a
// reader per socket.
func New(cfg Config) (*Client, error) {
	if !cfg.Primary.IsValid() {
		return nil, errors.New("pwclient: no primary password server address configured")
	}
	if cfg.Secondary == cfg.Primary {
		cfg.Secondary = netip.AddrPort{}
	}
	codec, err := pwproto.NewCodec(cfg.Ring)
	if err != nil {
		return nil, fmt.Errorf("pwclient: %w", err)
	}
	c := &Client{
		timeout: cfg.Timeout,
		codec:   codec,
		log:     cfg.Log,
		pending: make(map[uint64]chan answer),
		done:    make(chan struct{}),
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("pwclient: drawing request ids: %w", err)
	}
	// Ids count up from a random start: unique within the process, and a
	// restarted client does not match responses meant for its previous run.
	c.ids.Store(binary.BigEndian.Uint64(seed[:]))
	for i, ap := range []netip.AddrPort{cfg.Primary, cfg.Secondary} {
		if !ap.IsValid() {
			continue
		}
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			c.closeSockets()
			return nil, fmt.Errorf("pwclient: %s password server %s: %w", Server(i), ap, err)
		}
		// Many requests in flight means bursts of answers; the default
		// buffer (~200 KB, a few hundred datagrams) overflows and turns a
		// burst into retransmissions. The kernel caps this at
		// net.core.rmem_max; a failure only costs that headroom.
		_ = conn.SetReadBuffer(readBuffer)
		c.servers[i] = &server{which: Server(i), addr: ap, conn: conn, refused: make(chan struct{})}
	}
	for _, s := range c.servers {
		if s != nil {
			c.wg.Add(1)
			go c.reader(s)
		}
	}
	return c, nil
}

// FromProfile builds a client for the profile's passwd-primary and (if
// any) passwd-secondary hosts, with the profile's timeout.
func FromProfile(p *cluster.Profile, ring *keyfile.Ring, log *slog.Logger) (*Client, error) {
	prim, sec := p.PasswdServers()
	if prim == nil {
		return nil, fmt.Errorf("pwclient: %s has no host with role %s", p.Source, cluster.RolePasswdPrimary)
	}
	cfg := Config{Ring: ring, Timeout: p.Cluster.Passwd.Timeout.Std(), Log: log}
	var err error
	if cfg.Primary, err = p.Listen(prim.Name, cluster.SvcPasswd); err != nil {
		return nil, fmt.Errorf("pwclient: %w", err)
	}
	if sec != nil {
		if cfg.Secondary, err = p.Listen(sec.Name, cluster.SvcPasswd); err != nil {
			return nil, fmt.Errorf("pwclient: %w", err)
		}
	}
	return New(cfg)
}

func (c *Client) closeSockets() {
	for _, s := range c.servers {
		if s != nil {
			s.conn.Close()
		}
	}
}

// Close stops the client: pending requests return ErrClosed, sockets are
// closed and background goroutines end before Close returns.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	c.closeSockets()
	c.wg.Wait()
	return nil
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{
		Requests: c.requests.Load(), Retransmits: c.retransmits.Load(),
		Failovers: c.failovers.Load(), Returns: c.returns.Load(),
		DroppedBad: c.droppedBad.Load(), DroppedUnknownID: c.droppedUnknown.Load(),
	}
}

// Current is the server requests go to first.
func (c *Client) Current() Server { return Server(c.active.Load()) }

func (s *server) refusedChan() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

func (s *server) signalRefused() {
	s.mu.Lock()
	close(s.refused)
	s.refused = make(chan struct{})
	s.mu.Unlock()
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// reader delivers the responses arriving on one socket.
func (c *Client) reader(s *server) {
	defer c.wg.Done()
	// One byte more than a datagram may be, to notice oversize ones.
	buf := make([]byte, pwproto.MaxDatagram+1)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			select {
			case <-c.done:
				return
			default:
			}
			if isRefused(err) {
				// ICMP port unreachable: nothing listens there now.
				// Requests waiting on this server give up at once.
				s.signalRefused()
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Warn("passwd client: reading from server failed", "server", s.which.String(), "addr", s.addr.String(), "err", err)
			time.Sleep(10 * time.Millisecond) // never spin on a persistent error
			continue
		}
		if n > pwproto.MaxDatagram {
			c.dropped(&c.droppedBad, s, pwproto.ErrOversize)
			continue
		}
		resp, err := c.codec.OpenResponse(buf[:n])
		if err != nil {
			c.dropped(&c.droppedBad, s, err)
			continue
		}
		c.mu.Lock()
		ch := c.pending[resp.ID]
		delete(c.pending, resp.ID)
		c.mu.Unlock()
		if ch == nil {
			c.dropped(&c.droppedUnknown, s, errUnknownID)
			continue
		}
		ch <- answer{resp, s} // buffered: never blocks
	}
}

// dropped counts a dropped datagram and logs at most one line per second,
// so a flood cannot flood the log too.
func (c *Client) dropped(ctr *atomic.Uint64, s *server, why error) {
	ctr.Add(1)
	now := time.Now().UnixNano()
	last := c.lastDropLog.Load()
	if now-last >= int64(time.Second) && c.lastDropLog.CompareAndSwap(last, now) {
		c.log.Warn("passwd client: dropped a datagram", "server", s.which.String(), "addr", s.addr.String(), "reason", why.Error(),
			"dropped_bad", c.droppedBad.Load(), "dropped_unknown_id", c.droppedUnknown.Load())
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, pwproto.MaxDatagram); return &b }}

// errNoAnswer: this server did not answer in time (or is unreachable).
var errNoAnswer = errors.New("no answer")

var errUnknownID = errors.New("no pending request with this id (a late duplicate, or the request was cancelled)")

// sealError is a request that cannot be encoded (a name over the limit, a
// NUL byte): the caller's input, not the server's fault, so it is returned
// as is rather than turned into a failover.
type sealError struct{ err error }

func (e *sealError) Error() string { return "pwclient: " + e.err.Error() }
func (e *sealError) Unwrap() error { return e.err }

// do sends req with failover and returns the authenticated response.
func (c *Client) do(ctx context.Context, req *pwproto.Request) (*pwproto.Response, error) {
	first := Server(c.active.Load())
	a, err := c.exchange(ctx, req, []*server{c.servers[first], c.servers[1-first]})
	if err != nil {
		return nil, err
	}
	c.answered(a.from)
	return a.resp, nil
}

// exchange tries the servers in order until one answers.
// Only do switches servers: a Ping of the secondary must not move traffic.
func (c *Client) exchange(ctx context.Context, req *pwproto.Request, order []*server) (answer, error) {
	ch := make(chan answer, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return answer{}, ErrClosed
	}
	req.ID = c.ids.Add(1)
	c.pending[req.ID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, req.ID)
		c.mu.Unlock()
	}()
	c.requests.Add(1)

	var tried []string
	for _, s := range order {
		if s == nil {
			continue
		}
		a, err := c.attempt(ctx, s, req, ch)
		if err == errNoAnswer {
			// Close closes the sockets too: a send or a refusal that
			// fails because of it is the close, not a silent server.
			select {
			case <-c.done:
				return answer{}, ErrClosed
			default:
			}
			tried = append(tried, fmt.Sprintf("%s %s", s.which, s.addr))
			continue
		}
		if err != nil {
			return answer{}, err
		}
		if a.resp.Op != req.Op {
			return answer{}, fmt.Errorf("pwclient: %s %s answered %s to a %s request (server bug?)", a.from.which, a.from.addr, a.resp.Op, req.Op)
		}
		return a, nil
	}
	return answer{}, fmt.Errorf("%w: tried %s; none answered within %v (is passwdd running, and do the cluster keys match?)",
		ErrNoServer, strings.Join(tried, " and "), c.timeout)
}

// attempt asks one server, retransmitting once at timeout/2, and waits for
// the answer on ch (which may also come late from a server asked before).
func (c *Client) attempt(ctx context.Context, s *server, req *pwproto.Request, ch chan answer) (answer, error) {
	refused := s.refusedChan()
	if err := c.send(s, req); err != nil {
		if se := (*sealError)(nil); errors.As(err, &se) {
			return answer{}, err
		}
		return answer{}, errNoAnswer
	}
	retx := time.NewTimer(c.timeout / 2)
	defer retx.Stop()
	deadline := time.NewTimer(c.timeout)
	defer deadline.Stop()
	for {
		select {
		case a := <-ch:
			return a, nil
		case <-ctx.Done():
			return answer{}, ctx.Err()
		case <-c.done:
			return answer{}, ErrClosed
		case <-refused:
			return answer{}, errNoAnswer
		case <-deadline.C:
			return answer{}, errNoAnswer
		case <-retx.C:
			// Same id, fresh nonce and timestamp: the server's replay
			// filter admits it, and whichever copy is answered first
			// completes the request.
			c.retransmits.Add(1)
			if err := c.send(s, req); err != nil {
				return answer{}, errNoAnswer
			}
		}
	}
}

// send seals and writes req to s.
func (c *Client) send(s *server, req *pwproto.Request) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b, err := c.codec.SealRequest((*bp)[:0], req, time.Now())
	if err != nil {
		return &sealError{err}
	}
	*bp = b
	_, err = s.conn.Write(b)
	if isRefused(err) {
		// The error belongs to an earlier datagram (the kernel reports a
		// pending ICMP error on the next call) and the failed call cleared
		// it; this datagram was not sent. Send it now: the server may be
		// back, and if not, its new ICMP error ends the attempt.
		_, err = s.conn.Write(b)
	}
	if err != nil {
		if !isRefused(err) {
			c.log.Warn("passwd client: sending failed", "server", s.which.String(), "addr", s.addr.String(), "err", err)
		}
		return err
	}
	return nil
}

// answered makes the server that answered the current one.
func (c *Client) answered(s *server) {
	cur := Server(c.active.Load())
	if s.which == cur || !c.active.CompareAndSwap(int32(cur), int32(s.which)) {
		return
	}
	if s.which == Secondary {
		c.failovers.Add(1)
		c.log.Warn("passwd client: primary did not answer, using the secondary", "primary", c.servers[Primary].addr.String(),
			"secondary", s.addr.String(), "timeout", c.timeout.String())
		c.startProbe()
	} else {
		c.returns.Add(1)
		c.log.Info("passwd client: primary answers again, back on it", "primary", s.addr.String())
	}
}

// startProbe pings the primary every probeInterval while on the secondary.
func (c *Client) startProbe() {
	if !c.probing.CompareAndSwap(false, true) {
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.probing.Store(false)
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		c.probe()
		c.probing.Store(false)
		// A failover that happened while this prober was finishing saw
		// probing set and started none: start it now.
		if Server(c.active.Load()) == Secondary {
			c.startProbe()
		}
	}()
}

func (c *Client) probe() {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for Server(c.active.Load()) == Secondary {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		if _, err := c.Ping(context.Background(), Primary); err == nil {
			c.answered(c.servers[Primary])
			return
		}
	}
}

// statusErr maps a non-OK status to the package's errors.
func statusErr(st pwproto.Status) error {
	switch st {
	case pwproto.StatusNotFound:
		return ErrNotFound
	case pwproto.StatusDenied:
		return ErrDenied
	case pwproto.StatusLockedOut:
		return ErrLockedOut
	case pwproto.StatusTempFail:
		return ErrTempFail
	case pwproto.StatusBadRequest:
		return ErrBadRequest
	}
	return fmt.Errorf("pwclient: unexpected status %v", st)
}

func (c *Client) lookup(ctx context.Context, req *pwproto.Request, what string) (pwproto.User, error) {
	resp, err := c.do(ctx, req)
	if err != nil {
		return pwproto.User{}, err
	}
	if resp.Status != pwproto.StatusOK {
		return pwproto.User{}, fmt.Errorf("%s: %w", what, statusErr(resp.Status))
	}
	return resp.User, nil
}

// LookupName finds a user by login name.
func (c *Client) LookupName(ctx context.Context, name string) (pwproto.User, error) {
	return c.lookup(ctx, &pwproto.Request{Op: pwproto.OpLookupName, Name: name}, "user "+name)
}

// LookupUID finds a user by uid.
func (c *Client) LookupUID(ctx context.Context, uid uint32) (pwproto.User, error) {
	return c.lookup(ctx, &pwproto.Request{Op: pwproto.OpLookupUID, UID: uid}, fmt.Sprintf("uid %d", uid))
}

// LookupAddr finds the user a mail address (local@domain) delivers to; the
// server resolves aliases and the cluster's mail domains.
func (c *Client) LookupAddr(ctx context.Context, addr string) (pwproto.User, error) {
	return c.lookup(ctx, &pwproto.Request{Op: pwproto.OpLookupAddr, Address: addr}, "address "+addr)
}

// Authenticate checks a password; passwdd verifies it and rate-limits
// failures per user and per clientIP (the end user's address). It returns
// the user on success, ErrDenied for a wrong password or unknown user (the
// two are not told apart), ErrLockedOut while limited.
func (c *Client) Authenticate(ctx context.Context, name, password, clientIP string) (pwproto.User, error) {
	req := &pwproto.Request{Op: pwproto.OpAuth, Name: name, Password: password, Client: clientIP}
	resp, err := c.do(ctx, req)
	if err != nil {
		return pwproto.User{}, err
	}
	switch resp.Status {
	case pwproto.StatusOK:
		return resp.User, nil
	case pwproto.StatusNotFound:
		return pwproto.User{}, fmt.Errorf("user %s: %w", name, ErrDenied)
	}
	return pwproto.User{}, fmt.Errorf("user %s: %w", name, statusErr(resp.Status))
}

// Enumerate returns a page of users starting at cursor (0: the beginning)
// and the cursor of the next page (0: no more). limit bounds the page (0: the
// server's choice); a page is also bounded by what fits in one datagram.
func (c *Client) Enumerate(ctx context.Context, cursor uint64, limit int) ([]pwproto.User, uint64, error) {
	limit = min(max(limit, 0), 0xffff)
	resp, err := c.do(ctx, &pwproto.Request{Op: pwproto.OpEnumerate, Cursor: cursor, Max: uint16(limit)})
	if err != nil {
		return nil, 0, err
	}
	if resp.Status != pwproto.StatusOK {
		return nil, 0, fmt.Errorf("enumerate from %d: %w", cursor, statusErr(resp.Status))
	}
	return resp.Users, resp.Next, nil
}

// Ping asks one server (no failover) for its role and generation.
func (c *Client) Ping(ctx context.Context, which Server) (pwproto.PingInfo, error) {
	if which != Primary && which != Secondary || c.servers[which] == nil {
		return pwproto.PingInfo{}, fmt.Errorf("pwclient: no %s password server configured", which)
	}
	a, err := c.exchange(ctx, &pwproto.Request{Op: pwproto.OpPing}, []*server{c.servers[which]})
	if err != nil {
		return pwproto.PingInfo{}, err
	}
	resp := a.resp
	if resp.Status != pwproto.StatusOK {
		return pwproto.PingInfo{}, fmt.Errorf("ping %s: %w", which, statusErr(resp.Status))
	}
	return resp.Ping, nil
}
