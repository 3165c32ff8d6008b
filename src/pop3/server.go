package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"correo/src/cluster"
	"correo/src/mailbox"
	"correo/src/netserve"
	"correo/src/pwproto"
	"correo/src/ticket"
)

// Users verifies passwords and looks users up; *pwclient.Client is one.
type Users interface {
	Authenticate(ctx context.Context, name, password, clientIP string) (pwproto.User, error)
	LookupName(ctx context.Context, name string) (pwproto.User, error)
}

// Limits bound what one client may cost.
type Limits struct {
	// IdleTimeout is the autologout timer between commands after login
	// (RFC 1939 asks for at least 10 minutes).
	IdleTimeout time.Duration
	// LoginTimeout bounds the whole AUTHORIZATION state: a client that
	// has not logged in by then is disconnected.
	LoginTimeout time.Duration
	// MaxLineLength bounds a command line including CRLF. RFC 2449 allows
	// 255 octets; SASL responses need more.
	MaxLineLength int
	// MaxBadCommands is how many invalid commands a session may send
	// before it is closed.
	MaxBadCommands int
	// MaxConnections bounds concurrent sessions.
	MaxConnections int
}

// DefaultLimits are the limits of zero fields.
var DefaultLimits = Limits{
	IdleTimeout:    10 * time.Minute,
	LoginTimeout:   time.Minute,
	MaxLineLength:  2048,
	MaxBadCommands: 10,
	MaxConnections: 2000,
}

// Config configures a Server.
type Config struct {
	Profile *cluster.Profile
	// Host is the storage host this server runs on: users whose Storage
	// is another host are refused.
	Host  *cluster.Host
	Users Users
	// Tickets, when set, opens mailproxy's login tickets: a login that
	// comes with a valid ticket for its user is looked up instead of
	// having its password checked again.
	Tickets *ticket.Sealer
	// TLS enables STLS; nil offers no STLS.
	TLS *tls.Config
	// Metrics, when set, counts logins (NewMetrics).
	Metrics *Metrics
	Log     *slog.Logger
	// Limits; zero fields take DefaultLimits.
	Limits Limits
	// AuthTimeout bounds one password check including failover (default:
	// twice the profile's passwd timeout plus a second).
	AuthTimeout time.Duration
}

// Server serves POP3 for one storage host. Serve it on any number of
// listeners.
type Server struct {
	cfg     Config
	log     *slog.Logger
	dataDir string
	scheme  mailbox.Scheme
	network netip.Prefix
	// proxies may send a PROXY v2 header: the profile's mailproxy hosts.
	proxies map[netip.Addr]bool
	trusted bool
	locks   locks
	// movingPoll is movingPollInterval when New ran.
	movingPoll time.Duration

	group  netserve.Group
	active atomic.Int64
}

// New builds a server; nothing listens until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Profile == nil || cfg.Host == nil || cfg.Users == nil {
		return nil, errors.New("pop3: Profile, Host and Users are required")
	}
	if !cfg.Host.HasRole(cluster.RoleStorage) || cfg.Host.Storage == nil || cfg.Host.Storage.DataDir == "" {
		return nil, fmt.Errorf("pop3: host %s is not a storage host with a data_dir in %s", cfg.Host.Name, cfg.Profile.Source)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	l := &cfg.Limits
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultLimits.IdleTimeout
	}
	if l.LoginTimeout <= 0 {
		l.LoginTimeout = DefaultLimits.LoginTimeout
	}
	if l.MaxLineLength <= 0 {
		l.MaxLineLength = DefaultLimits.MaxLineLength
	}
	if l.MaxBadCommands <= 0 {
		l.MaxBadCommands = DefaultLimits.MaxBadCommands
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultLimits.MaxConnections
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = 2*cfg.Profile.Cluster.Passwd.Timeout.Std() + time.Second
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Log,
		dataDir: cfg.Host.Storage.DataDir,
		scheme:  cfg.Profile.LayoutScheme(),
		network: cfg.Profile.NetworkPrefix(),
		proxies: map[netip.Addr]bool{},
		trusted: cfg.Profile.Cluster.TrustedNetwork,

		movingPoll: movingPollInterval,
	}
	for _, h := range cfg.Profile.HostsWithRole(cluster.RoleMailProxy) {
		s.proxies[h.Addr()] = true
	}
	s.group.Log = cfg.Log
	return s, nil
}

// ProxyAllowed reports whether addr may send a PROXY header.
func (s *Server) ProxyAllowed(addr netip.Addr) bool { return s.proxies[addr.Unmap()] }

// Serve accepts connections on ln until it is closed.
func (s *Server) Serve(ln net.Listener) error {
	return s.group.Serve(ln, s.handle)
}

// Close stops listening and drops every session. Sessions in the
// TRANSACTION state delete nothing: only QUIT applies deletions.
func (s *Server) Close() error { return s.group.Close() }

// Sessions is the number of sessions open (what a graceful stop waits for).
func (s *Server) Sessions() int { return s.group.Len() }

// Shutdown stops listening and waits for sessions to end by themselves
// until ctx is done, then drops the rest.
func (s *Server) Shutdown(ctx context.Context) error { return s.group.Shutdown(ctx) }
