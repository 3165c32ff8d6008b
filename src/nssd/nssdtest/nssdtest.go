// Package nssdtest provides an in-memory nssd.Source and a running nssd
// on a temporary socket, for the tests of nssd, of the C module
// (src/nss/nsstest) and for the NSS benchmark. Nothing here talks to a
// real password server.
package nssdtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"correo/src/nssd"
	"correo/src/nssshm"
)

// Source is an in-memory user directory. Set Down to make every call fail
// with nssd.ErrUnavailable (a dead passwdd), Delay to slow every call.
type Source struct {
	mu     sync.RWMutex
	byName map[string]nssd.Passwd
	byUID  map[uint32]nssd.Passwd
	order  []string // enumeration order: sorted names

	Down  atomic.Bool
	Delay atomic.Int64 // nanoseconds
	// BatchMax caps one Enumerate batch below what nssd asks for, as
	// pwclient's datagram size does.
	BatchMax int

	Lookups, Enumerates atomic.Int64
}

// NewSource returns a source holding users.
func NewSource(users ...nssd.Passwd) *Source {
	s := &Source{byName: map[string]nssd.Passwd{}, byUID: map[uint32]nssd.Passwd{}}
	s.Add(users...)
	return s
}

// Add inserts or replaces users.
func (s *Source) Add(users ...nssd.Passwd) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range users {
		if _, ok := s.byName[u.Name]; !ok {
			s.order = append(s.order, u.Name)
		}
		s.byName[u.Name] = u
		s.byUID[u.UID] = u
	}
	sort.Strings(s.order)
}

// Generated returns n users named u0000001... with uids from 100000,
// gid 5000, homes under /var/mail: a realistic shape for benchmarks.
func Generated(n int) []nssd.Passwd {
	out := make([]nssd.Passwd, n)
	for i := range out {
		name := fmt.Sprintf("u%07d", i+1)
		out[i] = nssd.Passwd{Name: name, UID: uint32(100000 + i), GID: 5000, Gecos: "User " + name,
			Home: "/var/mail/" + name[:1] + "/" + name[1:2] + "/" + name, Shell: "/usr/sbin/nologin"}
	}
	return out
}

func (s *Source) wait(ctx context.Context) error {
	if d := time.Duration(s.Delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nssd.ErrUnavailable
		}
	}
	if s.Down.Load() {
		return fmt.Errorf("fake passwdd is down: %w", nssd.ErrUnavailable)
	}
	return nil
}

// LookupName implements nssd.Source.
func (s *Source) LookupName(ctx context.Context, name string) (nssd.Passwd, error) {
	s.Lookups.Add(1)
	if err := s.wait(ctx); err != nil {
		return nssd.Passwd{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if u, ok := s.byName[name]; ok {
		return u, nil
	}
	return nssd.Passwd{}, nssd.ErrNotFound
}

// LookupUID implements nssd.Source.
func (s *Source) LookupUID(ctx context.Context, uid uint32) (nssd.Passwd, error) {
	s.Lookups.Add(1)
	if err := s.wait(ctx); err != nil {
		return nssd.Passwd{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if u, ok := s.byUID[uid]; ok {
		return u, nil
	}
	return nssd.Passwd{}, nssd.ErrNotFound
}

// Enumerate implements nssd.Source; the cursor is 1 + the index of the
// next user in name order.
func (s *Source) Enumerate(ctx context.Context, cursor uint64, max int) ([]nssd.Passwd, uint64, error) {
	s.Enumerates.Add(1)
	if err := s.wait(ctx); err != nil {
		return nil, 0, err
	}
	if s.BatchMax > 0 && max > s.BatchMax {
		max = s.BatchMax
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	i := 0
	if cursor > 0 {
		i = int(cursor - 1)
	}
	var out []nssd.Passwd
	for ; i < len(s.order) && len(out) < max; i++ {
		out = append(out, s.byName[s.order[i]])
	}
	if i >= len(s.order) {
		return out, 0, nil
	}
	return out, uint64(i + 1), nil
}

// Agent is an nssd serving a Source on a socket in a temporary directory.
type Agent struct {
	Socket string
	Source *Source
	Server *nssd.Server
	Cache  *nssd.Cache
	// Accepts counts the connections nssd accepted: the module's tests
	// check with it that connections are kept and reopened.
	Accepts *atomic.Int64
	ln      net.Listener
	done    chan error
}

// countingListener counts Accept calls that return a connection.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// Start runs an nssd for the test's lifetime with the default cache
// (5 min / 30 s / 100 000 entries) and the group correo (5000).
func Start(t testing.TB, src *Source) *Agent {
	t.Helper()
	a, err := StartAt(filepath.Join(t.TempDir(), "nssd.sock"), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return a
}

// StartAt is Start without a testing.TB: for benchmarks run from main
// programs. log may be nil.
func StartAt(socket string, src *Source, log *slog.Logger) (*Agent, error) {
	ln, err := nssd.Listen(socket)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cache := nssd.NewCache(5*time.Minute, 30*time.Second, 100000)
	if t, err := nssshm.Open(nssshm.Path(socket), nssshm.BucketsFor(100000)); err == nil {
		cache.SetShared(t)
	}
	srv := nssd.New(nssd.Config{Source: src, Cache: cache, Log: log,
		Groups: []nssd.Group{{Name: "correo", GID: 5000}, {Name: "correo-staff", GID: 5001, Members: []string{"juan", "ana"}}}})
	a := &Agent{Socket: socket, Source: src, Server: srv, Cache: cache, Accepts: new(atomic.Int64), ln: ln, done: make(chan error, 1)}
	go func() { a.done <- srv.Serve(countingListener{ln, a.Accepts}) }()
	return a, nil
}

// NoShared stops mirroring the cache into the shared file and empties it,
// so that every lookup goes over the socket: for tests about the
// module's connections. Call it before the first lookup.
func (a *Agent) NoShared() {
	if t := a.Cache.SetShared(nil); t != nil {
		t.Close()
	}
}

// Stop closes the server (idempotent) and waits for Serve to return.
func (a *Agent) Stop() {
	if a.done == nil {
		return
	}
	a.Server.Close()
	<-a.done
	a.done = nil
}
