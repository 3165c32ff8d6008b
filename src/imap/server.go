// Package imap is correo's IMAP server of a storage host (imapd): sessions
// over src/imapwire (the wire) and src/mailstore (the user's Maildir++,
// shared with pop3d and pdeliveryd), behind the cluster's proxies. The
// connection prelude is pop3d's: only the cluster network may connect, a
// PROXY v2 header is taken from the profile's proxy hosts only, and a
// proxy's login ticket spares the second password check.
package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"time"

	"correo/src/cluster"
	"correo/src/imapwire"
	"correo/src/mailbox"
	"correo/src/netserve"
	"correo/src/pwproto"
	"correo/src/ticket"
)

// Users is what the server needs from passwdd (pwclient.Client).
type Users interface {
	Authenticate(ctx context.Context, name, password, clientIP string) (pwproto.User, error)
	LookupName(ctx context.Context, name string) (pwproto.User, error)
}

// Limits bound what one client may cost.
type Limits struct {
	// IdleTimeout is the autologout timer after login: RFC 9051 section
	// 5.4 asks for at least 30 minutes; IDLE clients re-issue within 29.
	IdleTimeout time.Duration
	// LoginTimeout bounds the NOT AUTHENTICATED state.
	LoginTimeout time.Duration
	// MaxBadCommands is how many bad commands a session may send before
	// it is closed.
	MaxBadCommands int
	// MaxConnections bounds concurrent sessions.
	MaxConnections int
	// Wire bounds one command (line, literals, nesting).
	Wire imapwire.Limits
	// RenderCacheBytes bounds the memory of rendered ENVELOPE and
	// BODYSTRUCTURE answers shared by all sessions (default 64 MiB,
	// roughly 200 000 messages; negative: none).
	RenderCacheBytes int
}

// DefaultLimits are the limits of zero fields.
var DefaultLimits = Limits{
	IdleTimeout:      30 * time.Minute,
	LoginTimeout:     time.Minute,
	MaxBadCommands:   20,
	MaxConnections:   10000,
	RenderCacheBytes: 64 << 20,
}

// Config configures a Server.
type Config struct {
	Profile *cluster.Profile
	// Host is the storage host this server runs on: users stored on
	// another host are refused.
	Host  *cluster.Host
	Users Users
	// Tickets opens the proxies' login tickets (nil: every login checks
	// its password).
	Tickets *ticket.Sealer
	// TLS enables STARTTLS; nil offers none.
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

// Server serves IMAP for one storage host. Serve it on any number of
// listeners.
type Server struct {
	cfg     Config
	log     *slog.Logger
	dataDir string
	scheme  mailbox.Scheme
	network netip.Prefix
	proxies map[netip.Addr]bool
	trusted bool

	group  netserve.Group
	active atomic.Int64
	render *renderCache
}

// New builds a server; nothing listens until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Profile == nil || cfg.Host == nil || cfg.Users == nil {
		return nil, errors.New("imap: Profile, Host and Users are required")
	}
	if !cfg.Host.HasRole(cluster.RoleStorage) || cfg.Host.Storage == nil || cfg.Host.Storage.DataDir == "" {
		return nil, fmt.Errorf("imap: host %s is not a storage host with a data_dir in %s", cfg.Host.Name, cfg.Profile.Source)
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
	if l.MaxBadCommands <= 0 {
		l.MaxBadCommands = DefaultLimits.MaxBadCommands
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultLimits.MaxConnections
	}
	if l.RenderCacheBytes == 0 {
		l.RenderCacheBytes = DefaultLimits.RenderCacheBytes
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = 2*cfg.Profile.Cluster.Passwd.Timeout.Std() + time.Second
	}
	// A profile's relative data_dir (the dev cluster's) is relative to the
	// daemon's working directory, fixed at start; the store wants it
	// absolute.
	dataDir, err := filepath.Abs(cfg.Host.Storage.DataDir)
	if err != nil {
		return nil, fmt.Errorf("imap: data_dir %q of host %s: %w", cfg.Host.Storage.DataDir, cfg.Host.Name, err)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Log,
		dataDir: dataDir,
		scheme:  cfg.Profile.LayoutScheme(),
		network: cfg.Profile.NetworkPrefix(),
		proxies: map[netip.Addr]bool{},
		trusted: cfg.Profile.Cluster.TrustedNetwork,
		render:  newRenderCache(l.RenderCacheBytes),
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
func (s *Server) Serve(ln net.Listener) error { return s.group.Serve(ln, s.handle) }

// Close stops listening and drops every session.
func (s *Server) Close() error { return s.group.Close() }

// Sessions is the number of sessions open.
func (s *Server) Sessions() int { return s.group.Len() }

// Shutdown stops listening and waits for sessions to end until ctx is
// done, then drops the rest.
func (s *Server) Shutdown(ctx context.Context) error { return s.group.Shutdown(ctx) }
