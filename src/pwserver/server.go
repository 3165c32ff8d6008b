// Package pwserver is passwdd: the cluster's in-memory password server. It
// answers sealed UDP queries from the current directory index, verifies
// passwords itself (hashes never leave it), throttles password guessing,
// serves the admin commands over the sealed TCP stream, and — on the
// secondary — follows the primary's journal so it can take over reads.
package pwserver

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/logging"
	"correo/src/mailbox"
)

// Role is which passwd server this is.
type Role string

const (
	Primary   Role = "primary"
	Secondary Role = "secondary"
)

// Config is what a Server is built from.
type Config struct {
	Profile *cluster.Profile
	Host    *cluster.Host
	Store   *directory.Store
	// StateDir is the store's directory; a secondary keeps there the mark
	// that it has loaded the primary's data at least once.
	StateDir string
	Ring     *keyfile.Ring
	Log      *slog.Logger
	// UserPolicy and SourcePolicy throttle failed logins; zero values mean
	// the defaults.
	UserPolicy, SourcePolicy LimitPolicy
	// AuthWorkers verify passwords (bcrypt costs tens of milliseconds, so
	// it never runs on the datagram readers); default GOMAXPROCS.
	AuthWorkers int
	// Metrics, when set, counts what the server answers (NewMetrics).
	Metrics *Metrics
	// now is the clock, for tests.
	now func() time.Time
}

// Server is one passwdd.
type Server struct {
	cfg      Config
	role     Role
	store    *directory.Store
	log      *slog.Logger
	users    *Limiter
	sources  *Limiter
	homes    map[string]string // storage host → data_dir
	storages []directory.StorageHost
	layout   mailbox.Scheme
	primary  string // "pw1 (10.77.0.5:7002)", for errors on the secondary
	started  time.Time
	stats    counters
	logLimit logging.Throttle

	addMu sync.Mutex

	mu          sync.Mutex
	following   bool
	lastContact time.Time
	secondaries map[string]bool

	udp udpState
	// creds answers repeated logins without a password hash check.
	creds *credCache
	// dummyHash is verified for unknown users at the profile's bcrypt
	// cost, so that "no such user" takes as long as "wrong password".
	dummyHash func() string
	// synced is set once a secondary holds the primary's data.
	synced atomic.Bool
}

// syncedMark is the file a secondary creates after its first snapshot
// from the primary: without it, an empty store would answer "no such
// user" for everybody.
const syncedMark = "synced-from-primary"

// New builds a server for the host's passwd role.
func New(cfg Config) (*Server, error) {
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	var role Role
	switch {
	case cfg.Host.HasRole(cluster.RolePasswdPrimary):
		role = Primary
	case cfg.Host.HasRole(cluster.RolePasswdSecondary):
		role = Secondary
	default:
		return nil, fmt.Errorf("host %s has neither passwd-primary nor passwd-secondary role", cfg.Host.Name)
	}
	if cfg.UserPolicy == (LimitPolicy{}) {
		cfg.UserPolicy = DefaultUserPolicy
	}
	if cfg.SourcePolicy == (LimitPolicy{}) {
		cfg.SourcePolicy = DefaultSourcePolicy
	}
	s := &Server{cfg: cfg, role: role, store: cfg.Store, log: cfg.Log,
		users: NewLimiter(cfg.UserPolicy), sources: NewLimiter(cfg.SourcePolicy),
		homes: map[string]string{}, storages: directory.StorageHosts(cfg.Profile),
		layout: cfg.Profile.LayoutScheme(), started: cfg.now(), secondaries: map[string]bool{}}
	s.stats.metrics = cfg.Metrics
	s.users.now, s.sources.now = cfg.now, cfg.now
	pw := cfg.Profile.Cluster.Passwd
	s.creds = newCredCache(pw.AuthCacheTTL.Std(), pw.AuthCacheEntries)
	s.dummyHash = sync.OnceValue(func() string {
		h, err := directory.HashPassword("correo-timing-equaliser-not-a-password", pw.BcryptCost)
		if err != nil {
			panic(err) // bcrypt of a fixed short password at a validated cost cannot fail
		}
		return h
	})
	for _, h := range cfg.Profile.HostsWithRole(cluster.RoleStorage) {
		s.homes[h.Name] = strings.TrimSuffix(filepath.Clean(h.Storage.DataDir), "/")
	}
	if p, _ := cfg.Profile.PasswdServers(); p != nil {
		a, _ := cfg.Profile.Listen(p.Name, cluster.SvcPasswdAdmin)
		s.primary = fmt.Sprintf("%s (%s)", p.Name, a)
	}
	s.logLimit.Every = 10 * time.Second
	if _, err := os.Stat(filepath.Join(cfg.StateDir, syncedMark)); role == Secondary && err == nil {
		s.synced.Store(true)
	}
	return s, nil
}

// Role says whether this is the primary or the secondary.
func (s *Server) Role() Role { return s.role }

// home derives a user's home directory from its storage host and the
// cluster's layout; it is never stored.
func (s *Server) home(u directory.User) string {
	root, ok := s.homes[u.Storage]
	if !ok {
		return ""
	}
	// Scheme.Dir validates the name and yields a clean relative path, and
	// the roots are cleaned once in New: a concatenation is all that is
	// left, on the path of every lookup.
	dir, err := s.layout.Dir(u.Name)
	if err != nil {
		return ""
	}
	return root + "/" + dir
}

// ready reports whether this server may answer reads: a secondary that
// has never loaded a user set would answer "no such user" for everybody,
// which is worse than "try later".
func (s *Server) ready() bool {
	return s.role == Primary || s.synced.Load()
}

// markSynced records durably that this secondary holds the primary's data.
func (s *Server) markSynced() error {
	if s.synced.Load() {
		return nil
	}
	f, err := os.Create(filepath.Join(s.cfg.StateDir, syncedMark))
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	s.synced.Store(true)
	return nil
}

// counters are the server's statistics, updated without locks.
type counters struct {
	metrics    *Metrics
	requests   [opCount]atomic.Uint64
	dropped    sync.Map // reason → *atomic.Uint64
	authOK     atomic.Uint64
	authDenied atomic.Uint64
	authLocked atomic.Uint64
	// Logins answered from the credentials cache, and those that needed
	// a password hash check.
	authCached   atomic.Uint64
	authVerified atomic.Uint64
	// Time from a datagram's arrival in the reader to its answer's send:
	// the server's own share of a client's latency.
	slowest  atomic.Int64
	over1ms  atomic.Uint64
	over10ms atomic.Uint64
}

func (c *counters) served(d time.Duration) {
	if d > time.Millisecond {
		c.over1ms.Add(1)
		if d > 10*time.Millisecond {
			c.over10ms.Add(1)
		}
	}
	for old := c.slowest.Load(); int64(d) > old && !c.slowest.CompareAndSwap(old, int64(d)); old = c.slowest.Load() {
	}
}

func (c *counters) drop(reason string) {
	c.metrics.drop(reason)
	v, ok := c.dropped.Load(reason)
	if !ok {
		v, _ = c.dropped.LoadOrStore(reason, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}

// errNotPrimary is the answer to a write that reached the secondary.
var errNotPrimary = errors.New("this is the passwd secondary; send writes to the primary")
