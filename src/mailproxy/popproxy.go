// Package mailproxy is the paper's POP "distributor": users configure one
// POP server name; the proxy reads their login, asks passwdd who they are
// and where their mailbox lives, connects to that storage host's pop3d,
// and from then on copies bytes both ways. TLS (STLS on 110, implicit on
// 995) ends here; the backend learns the real client address from a PROXY
// v2 header, which also carries the session's trace id.
//
// The proxy verifies the password itself, so an unknown user and a wrong
// password get the same answer after the same delay, and a guessing
// client never reaches a storage host. It then replays the login to
// pop3d as AUTH PLAIN, and pop3d verifies it again with passwdd: a storage
// host trusts no one's word for a password (see cmd/pop3d). That costs one
// more passwdd round trip per login and keeps a forged PROXY header or a
// compromised proxy address from opening any mailbox without the user's
// password.
//
// After login the backend's limits (its autologout timer) govern the
// session: the proxy only copies, with TCP keepalives on both sockets, and
// closes the client as soon as the backend closes (QUIT, crash, timeout).
package mailproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"correo/src/cluster"
	"correo/src/netserve"
	"correo/src/pwproto"
	"correo/src/ticket"
)

// Users verifies passwords; *pwclient.Client is one.
type Users interface {
	Authenticate(ctx context.Context, name, password, clientIP string) (pwproto.User, error)
}

// Limits bound what one client may cost before it has logged in.
type Limits struct {
	// IdleTimeout is the wait for each command before login.
	IdleTimeout time.Duration
	// LoginTimeout bounds the whole time before a successful login.
	LoginTimeout time.Duration
	// MaxLineLength bounds a command line, CRLF included.
	MaxLineLength int
	// MaxCommands is how many commands a client may send before it has
	// logged in (CAPA, USER, failed PASS ... all count).
	MaxCommands int
	// MaxAuthFailures closes the session after that many failed logins.
	MaxAuthFailures int
	// MaxConnections bounds concurrent sessions; MaxConnectionsPerClient
	// the sessions from one client address.
	MaxConnections          int
	MaxConnectionsPerClient int
	// FailDelay is the wait before answering a failed login; it doubles
	// with every further failure from the same client address within
	// FailMemory, up to MaxFailDelay.
	FailDelay    time.Duration
	MaxFailDelay time.Duration
	FailMemory   time.Duration
	// DialTimeout bounds connecting to a backend and its greeting.
	DialTimeout time.Duration
}

// DefaultLimits are the limits of zero fields.
var DefaultLimits = Limits{
	IdleTimeout:             time.Minute,
	LoginTimeout:            2 * time.Minute,
	MaxLineLength:           2048,
	MaxCommands:             20,
	MaxAuthFailures:         3,
	MaxConnections:          5000,
	MaxConnectionsPerClient: 20,
	FailDelay:               500 * time.Millisecond,
	MaxFailDelay:            8 * time.Second,
	FailMemory:              15 * time.Minute,
	DialTimeout:             5 * time.Second,
}

// LimitsFromProfile is the limits a mailproxy host's [host.mailproxy] sets
// (the profile loader fills in its defaults); the others are zero, which
// New turns into DefaultLimits.
func LimitsFromProfile(h *cluster.Host) Limits {
	var l Limits
	if x := h.MailProxy; x != nil {
		l.FailDelay, l.MaxFailDelay = x.FailDelay.Std(), x.MaxFailDelay.Std()
		l.MaxConnections, l.MaxConnectionsPerClient = x.MaxConnections, x.MaxConnectionsPerClient
	}
	return l
}

// Config configures a Server.
type Config struct {
	Profile *cluster.Profile
	// Host is the mailproxy host this runs on; connections to backends
	// leave from its address, which pop3d checks before accepting the
	// PROXY header.
	Host  *cluster.Host
	Users Users
	// Tickets, when set, seals a login ticket for pop3d after each good
	// password check, so the backend need not check it again.
	Tickets *ticket.Sealer
	// TLS enables STLS and ServeTLS; nil means neither.
	TLS *tls.Config
	Log *slog.Logger
	// Metrics, when set, counts sessions, logins and backend failures
	// (NewMetrics).
	Metrics *Metrics
	// Limits; zero fields take DefaultLimits.
	Limits Limits
	// AuthTimeout bounds one password check including failover (default:
	// twice the profile's passwd timeout plus a second).
	AuthTimeout time.Duration
}

// Server is one host's POP proxy.
type Server struct {
	cfg      Config
	log      *slog.Logger
	trusted  bool
	backends map[string]netip.AddrPort // storage host → its pop3d
	imapds   map[string]netip.AddrPort // storage host → its imapd
	dialer   net.Dialer
	fails    failures

	group netserve.Group

	mu        sync.Mutex // guards the connection counts
	perClient map[netip.Addr]int
	active    int
}

// New builds a server; nothing listens until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Profile == nil || cfg.Host == nil || cfg.Users == nil {
		return nil, errors.New("mailproxy: Profile, Host and Users are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	d := DefaultLimits
	l := &cfg.Limits
	for _, f := range []struct{ v, def *time.Duration }{{&l.IdleTimeout, &d.IdleTimeout}, {&l.LoginTimeout, &d.LoginTimeout},
		{&l.FailDelay, &d.FailDelay}, {&l.MaxFailDelay, &d.MaxFailDelay}, {&l.FailMemory, &d.FailMemory}, {&l.DialTimeout, &d.DialTimeout}} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	for _, f := range []struct{ v, def *int }{{&l.MaxLineLength, &d.MaxLineLength}, {&l.MaxCommands, &d.MaxCommands},
		{&l.MaxAuthFailures, &d.MaxAuthFailures}, {&l.MaxConnections, &d.MaxConnections}, {&l.MaxConnectionsPerClient, &d.MaxConnectionsPerClient}} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = 2*cfg.Profile.Cluster.Passwd.Timeout.Std() + time.Second
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Log,
		trusted:   cfg.Profile.Cluster.TrustedNetwork,
		backends:  map[string]netip.AddrPort{},
		imapds:    map[string]netip.AddrPort{},
		perClient: map[netip.Addr]int{},
		fails:     failures{m: map[netip.Addr]*failEntry{}},
	}
	s.group.Log = cfg.Log
	for _, e := range cfg.Profile.Endpoints(cluster.SvcPOP3Backend) {
		s.backends[e.Host] = e.Addr
	}
	for _, e := range cfg.Profile.Endpoints(cluster.SvcIMAPBackend) {
		s.imapds[e.Host] = e.Addr
	}
	// Leave from the host's own address: on a host with several
	// addresses (or loopback test clusters) the kernel would otherwise
	// pick one pop3d does not know as a proxy.
	s.dialer = net.Dialer{Timeout: cfg.Limits.DialTimeout, LocalAddr: &net.TCPAddr{IP: cfg.Host.Addr().AsSlice()}}
	return s, nil
}

// Serve accepts plain POP3 connections (port 110, STLS offered).
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts POP3 over implicit TLS (port 995).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("mailproxy: ServeTLS without a TLS configuration")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	return s.group.Serve(ln, func(c net.Conn) {
		client := addrPort(c.RemoteAddr())
		refusal := s.admit(client.Addr())
		defer s.release(client.Addr(), refusal == "")
		if refusal != "" {
			s.cfg.Metrics.session("pop3", "refused")
			s.refuse(c, client, implicitTLS, refusal)
			return
		}
		s.cfg.Metrics.session("pop3", "accepted")
		s.handle(c, client, implicitTLS)
	})
}

// ServeIMAP accepts plain IMAP connections (port 143, STARTTLS offered).
func (s *Server) ServeIMAP(ln net.Listener) error { return s.serveIMAP(ln, false) }

// ServeIMAPS accepts IMAP over implicit TLS (port 993).
func (s *Server) ServeIMAPS(ln net.Listener) error {
	if s.cfg.TLS == nil {
		return errors.New("mailproxy: ServeIMAPS without a TLS configuration")
	}
	return s.serveIMAP(ln, true)
}

// serveIMAP shares the connection limits and the failed-login delays
// with POP3: one client, one budget, whatever protocol it speaks.
func (s *Server) serveIMAP(ln net.Listener, implicitTLS bool) error {
	return s.group.Serve(ln, func(c net.Conn) {
		client := addrPort(c.RemoteAddr())
		refusal := s.admit(client.Addr())
		defer s.release(client.Addr(), refusal == "")
		if refusal != "" {
			s.cfg.Metrics.session("imap", "refused")
			s.refuseIMAP(c, implicitTLS, refusal)
			return
		}
		s.cfg.Metrics.session("imap", "accepted")
		s.handleIMAP(c, client, implicitTLS)
	})
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// admit counts a new connection; a non-empty result is why it is refused.
func (s *Server) admit(client netip.Addr) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.group.Closed():
		return "shutting down"
	case s.active >= s.cfg.Limits.MaxConnections:
		return "too many connections"
	case s.perClient[client] >= s.cfg.Limits.MaxConnectionsPerClient:
		return "too many connections from this address"
	}
	s.active++
	s.perClient[client]++
	return ""
}

func (s *Server) release(client netip.Addr, admitted bool) {
	if !admitted {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	if s.perClient[client]--; s.perClient[client] <= 0 {
		delete(s.perClient, client)
	}
}

func (s *Server) refuse(c net.Conn, client netip.AddrPort, implicitTLS bool, why string) {
	s.log.Warn("connection refused", "client", client.String(), "reason", why)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if implicitTLS {
		// The refusal must be readable: over TLS on 995.
		tc := tls.Server(c, s.cfg.TLS)
		if tc.Handshake() != nil {
			return
		}
		c = tc
	}
	fmt.Fprintf(c, "-ERR [SYS/TEMP] %s, try again later.\r\n", capitalize(why))
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// Close stops listening and drops every session.
func (s *Server) Close() error { return s.group.Close() }

// Sessions is the number of sessions open (what a graceful stop waits for).
func (s *Server) Sessions() int { return s.group.Len() }

// Shutdown stops listening and waits for sessions to end until ctx is
// done, then drops the rest (a dropped POP3 session deletes nothing).
func (s *Server) Shutdown(ctx context.Context) error { return s.group.Shutdown(ctx) }

// failures remembers failed logins per client address, so the delay grows
// for a client that reconnects to guess again. A success does not reset
// it (one valid account must not buy a guesser fast retries); entries
// expire after FailMemory. Its memory is bounded: when
// full it forgets everything, which at worst shortens delays.
type failures struct {
	mu sync.Mutex
	m  map[netip.Addr]*failEntry
}

type failEntry struct {
	n    int
	last time.Time
}

const maxFailEntries = 100_000

// fail records a failure and returns the delay to apply.
func (f *failures) fail(a netip.Addr, l Limits) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	e := f.m[a]
	if e == nil || now.Sub(e.last) > l.FailMemory {
		if len(f.m) >= maxFailEntries {
			clear(f.m)
		}
		e = &failEntry{}
		f.m[a] = e
	}
	e.n++
	e.last = now
	d := l.FailDelay
	for i := 1; i < e.n && d < l.MaxFailDelay; i++ {
		d *= 2
	}
	return min(d, l.MaxFailDelay)
}
