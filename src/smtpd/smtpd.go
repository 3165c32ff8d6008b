// Package smtpd is correo's SMTP server (github.com/emersion/go-smtp) in
// front of the durable queue (package queue). One Server serves several
// listeners, each with its own Policy: the mx role's port 25 (the zero
// Policy), and the relay role's 25/587/465 (relay.go: Relay's policies
// fill the hooks MayRelay, Auth, RequireAuth, CheckSender and Queued).
//
// # The mx role
//
// Inbound mail for the cluster's domains only: the mx role is never an
// open relay (every other domain and every routing trick is 554 5.7.1;
// see Classify). Each recipient is looked up in passwdd at RCPT time:
//
//	not a cluster domain, or a relay trick   554 5.7.1
//	bad syntax                               501 5.1.3
//	unknown user or alias                    550 5.1.1
//	disabled                                 550 5.2.1
//	being moved                              250 (the queue retries later)
//	both passwd servers silent               451 4.4.3
//
// After DATA the message, with a Received line carrying the queue id and
// the trace id and an X-Correo-Trace header (pdeliveryd reuses the id),
// is written to the queue and fsynced (queue.Writer.Commit) before the
// 250; delivery is attempted at once by the queue's workers.
//
// # Limits
//
// Connections in total and per client address (the profile's
// [host.smtpd]; over them: 421 4.7.0 and close), message size (SIZE,
// 552 5.3.4), recipients per message (452 4.5.3), an idle timeout for each
// command and for each read of message data plus a bound on the whole
// DATA phase, command lines of MaxLineLength, and MaxBadCommands refused
// commands (bad addresses, refused recipients) before 421 and close;
// unknown commands are go-smtp's business (500, and closing after three).
//
// # Extensions
//
// PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, CHUNKING (BDAT: go-smtp
// always offers it), SIZE, STARTTLS (when the host has a certificate) and
// SMTPUTF8 (message headers in UTF-8 are carried as they are; addresses
// must still be ASCII, since every correo mailbox name is: a UTF-8
// address gets 553 5.6.7).
package smtpd

import (
	"correo/src/mailauth"

	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"correo/src/cluster"
	"correo/src/delivery"
	"correo/src/logging"
	"correo/src/netserve"
	"correo/src/queue"
)

// Limits of a Server; zero fields take DefaultLimits or the profile's
// [host.smtpd].
type Limits struct {
	MaxMessageBytes         int64
	MaxRecipients           int
	MaxConnections          int
	MaxConnectionsPerClient int
	// CommandTimeout bounds the wait for each command (RFC 5321 §4.5.3.2
	// asks for at least 5 minutes) and each read of message data.
	CommandTimeout time.Duration
	// DataTimeout bounds the whole DATA phase: a client trickling a byte
	// a minute cannot hold a connection for ever.
	DataTimeout time.Duration
	// MaxLineLength bounds command and message lines. RFC 5322 says 998,
	// real mail has longer ones; pdeliveryd accepts the same.
	MaxLineLength int
	// MaxBadCommands refused commands before the connection is closed.
	MaxBadCommands int
	// LookupTimeout bounds one passwd lookup including failover.
	LookupTimeout time.Duration
}

// DefaultLimits are used for fields the profile has no key for.
var DefaultLimits = Limits{
	CommandTimeout: 5 * time.Minute,
	DataTimeout:    10 * time.Minute,
	MaxLineLength:  32 << 10,
	MaxBadCommands: 20,
}

// Config configures a Server.
type Config struct {
	Profile *cluster.Profile
	Host    *cluster.Host
	Queue   *queue.Queue
	// Users answers recipient lookups (a *pwclient.Client).
	Users delivery.Resolver
	// TLS, when set, is offered by STARTTLS.
	TLS    *tls.Config
	Log    *slog.Logger
	Limits Limits
	// AuthResolver is the DNS the mx's SPF, DKIM and DMARC checks ask;
	// nil: the system's name servers.
	AuthResolver mailauth.Resolver
	// SpoolDir is where a message larger than 1 MiB waits while filters
	// read it (the state directory); "" is the system's temporary
	// directory.
	SpoolDir string
	// Metrics, when set, counts sessions, messages and milter verdicts
	// (NewMetrics).
	Metrics *Metrics
}

// Session is what a Policy sees of a connection.
type Session struct {
	Listener string // the Listener's name
	Client   netip.Addr
	Helo     string
	TLS      bool
	// User is the authenticated user; "" until AUTH succeeds (the relay
	// role sets it from its Auth hook with SetUser).
	User string
}

// SetUser records a successful authentication.
func (s *Session) SetUser(u string) { s.User = u }

// Policy is what differs between the mx and relay listeners. The zero
// value is the mx role: local recipients only, no AUTH.
type Policy struct {
	// MayRelay reports whether the session may send to other domains
	// (relay role: authenticated, or a cluster host). nil: never.
	MayRelay func(s *Session) bool
	// AuthMechanisms and Auth offer SMTP AUTH (relay role). Auth's SASL
	// server must call s.SetUser on success.
	AuthMechanisms func(s *Session) []string
	Auth           func(s *Session, mech string) (sasl.Server, error)
	// RequireAuth refuses MAIL (530 5.7.0) before AUTH (submission).
	RequireAuth bool
	// CheckSender may refuse a MAIL FROM (relay: 553 5.7.1 when it is not
	// the user's).
	CheckSender func(s *Session, from string) error
	// Queued is told of every message queued (relay: the per-user
	// hourly count).
	Queued func(s *Session)
	// Filters see every message before it is queued, in order (mail
	// authentication, then DKIM signing); each decides from the Session
	// whether the message is its business.
	Filters []Filter
}

// Listener is one port a Server serves.
type Listener struct {
	Name     string // for logs: "mx", "submission" ...
	Listener net.Listener
	// ImplicitTLS wraps every connection in TLS before the greeting
	// (port 465).
	ImplicitTLS bool
	Policy      Policy
}

// Server is one host's SMTP service.
type Server struct {
	cfg  Config
	log  *slog.Logger
	name string // FQDN in greetings and Received lines

	mu       sync.Mutex
	perIP    map[netip.Addr]int
	total    int
	servers  []*smtp.Server
	draining atomic.Bool
	inData   netserve.InFlight
	refusals logging.Throttle
}

// New checks the configuration; nothing listens until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Profile == nil || cfg.Host == nil || cfg.Queue == nil || cfg.Users == nil {
		return nil, errors.New("smtpd: Profile, Host, Queue and Users are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	l := &cfg.Limits
	if s := cfg.Host.SMTPD; s != nil {
		if l.MaxMessageBytes <= 0 {
			l.MaxMessageBytes = s.MaxMessageBytes
		}
		if l.MaxRecipients <= 0 {
			l.MaxRecipients = s.MaxRecipients
		}
		if l.MaxConnections <= 0 {
			l.MaxConnections = s.MaxConnections
		}
		if l.MaxConnectionsPerClient <= 0 {
			l.MaxConnectionsPerClient = s.MaxConnectionsPerClient
		}
		if l.CommandTimeout <= 0 {
			l.CommandTimeout = s.CommandTimeout.Std()
		}
		if l.DataTimeout <= 0 {
			l.DataTimeout = s.DataTimeout.Std()
		}
	}
	def := func(f *int, d int) {
		if *f <= 0 {
			*f = d
		}
	}
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = cluster.DefaultMaxMessageBytes
	}
	def(&l.MaxRecipients, cluster.DefaultMaxRecipients)
	def(&l.MaxConnections, cluster.DefaultMaxConnections)
	def(&l.MaxConnectionsPerClient, cluster.DefaultMaxConnectionsPerClient)
	def(&l.MaxLineLength, DefaultLimits.MaxLineLength)
	def(&l.MaxBadCommands, DefaultLimits.MaxBadCommands)
	if l.CommandTimeout <= 0 {
		l.CommandTimeout = DefaultLimits.CommandTimeout
	}
	if l.DataTimeout <= 0 {
		l.DataTimeout = DefaultLimits.DataTimeout
	}
	if l.LookupTimeout <= 0 {
		l.LookupTimeout = 2*cfg.Profile.Cluster.Passwd.Timeout.Std() + time.Second
	}
	name := cfg.Host.Name
	if z := cfg.Profile.Cluster.DNS.Zone; z != "" {
		name += "." + z
	}
	return &Server{cfg: cfg, log: cfg.Log, name: name, perIP: map[netip.Addr]int{}}, nil
}

// Name is the host name the server greets with.
func (s *Server) Name() string { return s.name }

// Log is the server's logger.
func (s *Server) Log() *slog.Logger { return s.log }

// Limits returns the limits in force.
func (s *Server) Limits() Limits { return s.cfg.Limits }

// Serve serves one listener until it is closed.
func (s *Server) Serve(l Listener) error {
	lim := s.cfg.Limits
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return s.newSession(c, &l)
	}))
	srv.Domain = s.name
	srv.MaxMessageBytes = lim.MaxMessageBytes
	srv.MaxRecipients = lim.MaxRecipients
	srv.MaxLineLength = lim.MaxLineLength
	srv.ReadTimeout = lim.CommandTimeout
	srv.WriteTimeout = lim.CommandTimeout
	srv.EnableSMTPUTF8 = true
	srv.TLSConfig = s.cfg.TLS
	srv.ErrorLog = slogPrinter{s.log}
	// AUTH only where the policy offers it; over plaintext only on a
	// network the profile calls trusted.
	srv.AllowInsecureAuth = s.cfg.Profile.Cluster.TrustedNetwork
	var ln net.Listener = &limitListener{Listener: l.Listener, s: s, name: l.Name}
	if l.ImplicitTLS {
		if s.cfg.TLS == nil {
			return fmt.Errorf("smtpd: listener %s wants implicit TLS but the host has no certificate", l.Name)
		}
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.mu.Lock()
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	err := srv.Serve(ln)
	if s.draining.Load() || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, lets messages in DATA finish (their 250 means
// queued), then closes every connection; it returns when that is done or
// ctx expires.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	servers := append([]*smtp.Server(nil), s.servers...)
	s.mu.Unlock()
	err := s.inData.Wait(ctx)
	for _, srv := range servers {
		srv.Close()
	}
	return err
}

// Close closes every listener and connection at once; a message in DATA
// gets no answer, so its client sends it again.
func (s *Server) Close() error {
	s.draining.Store(true)
	s.mu.Lock()
	servers := append([]*smtp.Server(nil), s.servers...)
	s.mu.Unlock()
	for _, srv := range servers {
		srv.Close()
	}
	return nil
}

// Sessions is the number of open connections.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// limitListener enforces the connection limits before go-smtp sees a
// connection: a client over them gets 421 instead of a greeting.
type limitListener struct {
	net.Listener
	s    *Server
	name string
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		s := l.s
		s.mu.Lock()
		lim := s.cfg.Limits
		over := ""
		switch {
		case s.total >= lim.MaxConnections:
			over = fmt.Sprintf("too many connections (%d)", lim.MaxConnections)
		case s.perIP[ip] >= lim.MaxConnectionsPerClient:
			over = fmt.Sprintf("too many connections from %s (%d)", ip, lim.MaxConnectionsPerClient)
		}
		if over == "" {
			s.total++
			s.perIP[ip]++
		}
		s.mu.Unlock()
		if over != "" {
			s.cfg.Metrics.session(l.name, "refused_limit")
			go s.refuse(c, ip, over)
			continue
		}
		// Replies wait for the next read: a pipelining client's MAIL,
		// RCPT and DATA replies, and EHLO's lines, leave in one write.
		return &conn{Conn: netserve.Batch(c), s: s, ip: ip}, nil
	}
}

func (s *Server) refuse(c net.Conn, ip netip.Addr, why string) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "421 4.7.0 %s %s, try again later\r\n", s.name, why)
	c.Close()
	if ok, suppressed := s.refusals.Allow("", time.Now()); ok {
		s.log.Warn("refused a connection", "client", ip.String(), "why", why, "suppressed", suppressed)
	}
}

// conn releases its connection slot once, and can be told to end the
// session after the reply being written (the bad-command limit): the next
// read returns EOF, so go-smtp closes it.
type conn struct {
	net.Conn
	s      *Server
	ip     netip.Addr
	once   sync.Once
	hangup atomic.Bool
}

func (c *conn) Read(p []byte) (int, error) {
	if c.hangup.Load() {
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.total--
		if c.s.perIP[c.ip]--; c.s.perIP[c.ip] <= 0 {
			delete(c.s.perIP, c.ip)
		}
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// baseConn finds our conn under a TLS layer.
func baseConn(c net.Conn) *conn {
	for {
		switch x := c.(type) {
		case *conn:
			return x
		case *tls.Conn:
			c = x.NetConn()
		default:
			return nil
		}
	}
}

// slogPrinter routes go-smtp's internal error log to slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) {
	p.log.Debug("smtp server", "msg", fmt.Sprintf(format, v...))
}
func (p slogPrinter) Println(v ...any) { p.log.Debug("smtp server", "msg", fmt.Sprint(v...)) }
