package nssd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"correo/src/logging"
	"correo/src/nssproto"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxConns = 256
	// DefaultIOTimeout bounds the wait for the first request on a new
	// connection, for the rest of a request once its first byte came,
	// and for writing an answer. The module sends its request right
	// after connecting, so only a stuck or hostile client waits.
	DefaultIOTimeout = 2 * time.Second
	// DefaultIdleTimeout bounds the wait for the next request on a
	// connection that has been answered before: the module keeps its
	// connection between lookups, and a process that resolves a name
	// every few seconds should not pay a new connection each time.
	// Idle connections are also the first to go when MaxConns are open
	// (see Serve), so a long timeout cannot lock anyone out.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultUpstreamTimeout bounds one question to the Source. It must
	// stay below the module's own deadline (CORREO_NSS_TIMEOUT_MS, 5 s in
	// src/nss/nss_correo.c) so the module always gets nssd's "unavail"
	// rather than a timeout, and above passwd's 2 s failover timeout so a
	// lookup that arrives while pwclient switches to the secondary is
	// still answered.
	DefaultUpstreamTimeout = 4 * time.Second
	// DefaultPageUsers is how many users nssd gathers for one getpwent
	// page (fewer when they would not fit in a response).
	DefaultPageUsers = 256
)

// Config is what a Server needs. Source and Log are required.
type Config struct {
	Source Source
	// Cache may be nil: every lookup then asks the Source.
	Cache  *Cache
	Groups []Group
	Log    *slog.Logger

	MaxConns        int
	IOTimeout       time.Duration
	IdleTimeout     time.Duration
	UpstreamTimeout time.Duration
	PageUsers       int
}

// Server answers the nssproto socket.
type Server struct {
	cfg    Config
	ctx    context.Context // cancelled by Close: aborts upstream calls
	cancel context.CancelFunc
	slots  chan struct{}
	badLog *logging.Throttle // malformed requests, refused records
	upLog  *logging.Throttle // upstream failures

	mu      sync.Mutex
	lns     []net.Listener
	conns   map[*serverConn]struct{}
	closed  bool
	flights map[cacheKey]*flight
	wg      sync.WaitGroup
}

// serverConn is one client connection.
type serverConn struct {
	c net.Conn
	// idleSince is when the connection began waiting for its next
	// request after an answer (UnixNano); 0 while a request is being
	// read or answered, and before the first one. Only a connection
	// idle in this sense may be evicted: its client has had every answer
	// it asked for, and the module reconnects (or retries once) when it
	// finds the connection closed.
	idleSince atomic.Int64
}

// flight is one upstream lookup that concurrent askers of the same key
// share: a burst of deliveries for one uncached user costs one datagram.
type flight struct {
	done chan struct{}
	pw   Passwd
	err  error
}

// New returns a server; call Serve with a listener (see Listen).
func New(cfg Config) *Server {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = DefaultIOTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if cfg.PageUsers <= 0 {
		cfg.PageUsers = DefaultPageUsers
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, ctx: ctx, cancel: cancel, slots: make(chan struct{}, cfg.MaxConns),
		badLog: &logging.Throttle{Every: 10 * time.Second}, upLog: &logging.Throttle{Every: 10 * time.Second}, conns: map[*serverConn]struct{}{}, flights: map[cacheKey]*flight{}}
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("nssd: server closed")

// Serve accepts connections until Close. At most MaxConns are served at
// once: when they are all open, the longest idle kept connection is
// closed to make room for a newcomer; when none is idle, the newcomer
// waits for a slot and further clients wait in the listen backlog (the
// module gives up on its own deadline), so a flood cannot exhaust nssd's
// memory or file descriptors.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and friends: back off instead of spinning.
			s.cfg.Log.Error("accept failed; retrying in 100ms", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if !s.takeSlot() {
			c.Close()
			return ErrServerClosed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			<-s.slots
			return ErrServerClosed
		}
		sc := &serverConn{c: c}
		s.conns[sc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, sc)
				s.mu.Unlock()
				c.Close()
				<-s.slots
				s.wg.Done()
			}()
			s.serveConn(sc)
		}()
	}
}

// Close stops the listeners, aborts upstream lookups, closes every
// connection and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	for _, ln := range s.lns {
		ln.Close()
	}
	for sc := range s.conns {
		sc.c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	// A stopped nssd answers nothing, from the socket or from the file.
	if s.cfg.Cache != nil {
		if t := s.cfg.Cache.SetShared(nil); t != nil {
			t.Close()
		}
	}
	return nil
}

// takeSlot reserves a slot for a connection just accepted: at once when
// one is free, else by evicting the longest idle kept connection, else by
// waiting for a busy one to finish or go idle. Only a newcomer already
// accepted justifies an eviction: nobody is closed for a client that may
// never come. false: the server is closing.
func (s *Server) takeSlot() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.evictIdle()
		select {
		case s.slots <- struct{}{}:
			return true
		case <-tick.C: // a busy connection may have gone idle meanwhile
		case <-s.ctx.Done():
			return false
		}
	}
}

// evictIdle closes the connection that has been idle longest, if any;
// its goroutine then frees its slot.
func (s *Server) evictIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest *serverConn
	var since int64
	for sc := range s.conns {
		if t := sc.idleSince.Load(); t != 0 && (oldest == nil || t < since) {
			oldest, since = sc, t
		}
	}
	if oldest != nil {
		oldest.c.Close()
	}
}

// serveConn answers the requests of one connection in turn, for as long
// as the client keeps it (the module keeps one per process).
func (s *Server) serveConn(sc *serverConn) {
	c := sc.c
	br := bufio.NewReaderSize(c, nssproto.MaxRequest+4)
	var out []byte
	wait := s.cfg.IOTimeout // the first request comes right after connecting
	for {
		c.SetReadDeadline(time.Now().Add(wait))
		_, err := br.Peek(1)
		sc.idleSince.Store(0)
		var req nssproto.Request
		if err == nil {
			// The request has begun: the rest of it is due at once. It
			// usually came whole in one write, and needs no new deadline.
			if hdr, _ := br.Peek(min(4, br.Buffered())); len(hdr) < 4 ||
				br.Buffered() < 4+int(binary.BigEndian.Uint32(hdr)) {
				c.SetReadDeadline(time.Now().Add(s.cfg.IOTimeout))
			}
			req, err = nssproto.ReadRequest(br)
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			case errors.As(err, &ne) && ne.Timeout():
				// An idle client: nothing to report.
			default:
				if ok, suppressed := s.badLog.Allow("", time.Now()); ok {
					s.cfg.Log.Warn("bad request on the nss socket; connection closed",
						"err", err, "suppressed", suppressed)
				}
			}
			return
		}
		resp := s.Answer(req)
		out, err = nssproto.AppendResponse(out[:0], req.Op, resp)
		if err != nil {
			// Only a bug or a record that slipped past validation gets
			// here; say unavail rather than hang up without a word.
			s.cfg.Log.Error("cannot encode answer", "op", req.Op, "err", err)
			out, _ = nssproto.AppendResponse(out[:0], req.Op, nssproto.Response{Status: nssproto.StatusUnavail})
		}
		c.SetWriteDeadline(time.Now().Add(s.cfg.IOTimeout))
		if _, err := c.Write(out); err != nil {
			return
		}
		wait = s.cfg.IdleTimeout
		sc.idleSince.Store(time.Now().UnixNano())
	}
}

// Answer computes the response to one request: the whole of nssd's logic
// without the socket.
func (s *Server) Answer(req nssproto.Request) nssproto.Response {
	switch req.Op {
	case nssproto.OpGetpwnam:
		return s.passwdAnswer(s.lookup(cacheKey{name: req.Name}))
	case nssproto.OpGetpwuid:
		return s.passwdAnswer(s.lookup(cacheKey{byUID: true, uid: req.ID}))
	case nssproto.OpGetpwent:
		return s.passwdPage(req.Cursor)
	case nssproto.OpGetgrnam, nssproto.OpGetgrgid:
		for _, g := range s.cfg.Groups {
			if (req.Op == nssproto.OpGetgrnam && g.Name == req.Name) || (req.Op == nssproto.OpGetgrgid && g.GID == req.ID) {
				return nssproto.Response{Status: nssproto.StatusFound, Groups: []nssproto.Group{wireGroup(g)}}
			}
		}
		return nssproto.Response{Status: nssproto.StatusNotFound}
	case nssproto.OpGetgrent:
		return s.groupPage(req.Cursor)
	}
	return nssproto.Response{Status: nssproto.StatusUnavail}
}

func (s *Server) passwdAnswer(pw Passwd, err error) nssproto.Response {
	switch {
	case err == nil:
		return nssproto.Response{Status: nssproto.StatusFound, Passwd: []nssproto.Passwd{nssproto.Passwd(pw)}}
	case errors.Is(err, ErrNotFound):
		return nssproto.Response{Status: nssproto.StatusNotFound}
	case errors.Is(err, ErrTryAgain):
		return nssproto.Response{Status: nssproto.StatusTryAgain}
	default:
		return nssproto.Response{Status: nssproto.StatusUnavail}
	}
}

// lookup answers from the cache or asks the Source once for all
// concurrent askers of the same key.
func (s *Server) lookup(k cacheKey) (Passwd, error) {
	if pw, found, ok := s.cfg.Cache.get(k); ok {
		if found {
			return pw, nil
		}
		return Passwd{}, ErrNotFound
	}
	s.mu.Lock()
	if f := s.flights[k]; f != nil {
		s.mu.Unlock()
		select {
		case <-f.done:
			return f.pw, f.err
		case <-s.ctx.Done():
			return Passwd{}, ErrUnavailable
		}
	}
	f := &flight{done: make(chan struct{})}
	s.flights[k] = f
	s.mu.Unlock()

	f.pw, f.err = s.ask(k)
	s.mu.Lock()
	delete(s.flights, k)
	s.mu.Unlock()
	close(f.done)
	return f.pw, f.err
}

// ask queries the Source, checks the answer and fills the cache.
func (s *Server) ask(k cacheKey) (Passwd, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	var pw Passwd
	var err error
	if k.byUID {
		pw, err = s.cfg.Source.LookupUID(ctx, k.uid)
	} else {
		pw, err = s.cfg.Source.LookupName(ctx, k.name)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		s.cfg.Cache.putNotFound(k)
		return Passwd{}, ErrNotFound
	case errors.Is(err, ErrTryAgain):
		return Passwd{}, ErrTryAgain
	default:
		// Never cached: the next lookup asks again.
		if ok, suppressed := s.upLog.Allow("", time.Now()); ok {
			s.cfg.Log.Warn("password servers unavailable; answering unavail so local files still resolve",
				"err", err, "suppressed", suppressed)
		}
		return Passwd{}, ErrUnavailable
	}
	// An answer for another key than asked would make getpwnam("juan")
	// return someone else; a record that cannot travel would make every
	// lookup of it fail. Both are refused as "not found".
	if (k.byUID && pw.UID != k.uid) || (!k.byUID && pw.Name != k.name) {
		s.refuse(pw, "answer does not match the question")
		return Passwd{}, ErrNotFound
	}
	if reason := refuseReason(pw); reason != "" {
		s.refuse(pw, reason)
		return Passwd{}, ErrNotFound
	}
	s.cfg.Cache.putFound(pw)
	return pw, nil
}

// refuseReason says why a record from the Source must not reach NSS.
func refuseReason(pw Passwd) string {
	// A cluster mail user is never root: a forged or mistaken uid 0 entry
	// would hand root to whoever knows that user's password.
	if pw.UID == 0 || pw.GID == 0 {
		return "uid or gid 0: a mail user is never root"
	}
	wp := nssproto.Passwd(pw)
	if err := wp.Check(); err != nil {
		return err.Error()
	}
	return ""
}

func (s *Server) refuse(pw Passwd, reason string) {
	if ok, suppressed := s.badLog.Allow("", time.Now()); ok {
		s.cfg.Log.Warn("refusing a record from the password server", "user", pw.Name, "uid", pw.UID,
			"reason", reason, "suppressed", suppressed)
	}
}

// passwdPage gathers one getpwent page from the Source: as many batches
// as fit in one response. Enumeration is not cached (it is rare, and a
// cached page would go stale in ways a cursor cannot tell).
func (s *Server) passwdPage(cursor uint64) nssproto.Response {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	budget := nssproto.MaxResponse - nssproto.PageOverhead
	var page []nssproto.Passwd
	want := s.cfg.PageUsers
	for len(page) < s.cfg.PageUsers {
		users, next, err := s.cfg.Source.Enumerate(ctx, cursor, min(want, s.cfg.PageUsers-len(page)))
		if err != nil {
			if len(page) > 0 {
				// Hand out what we have; the module asks for the rest.
				break
			}
			if errors.Is(err, ErrTryAgain) {
				return nssproto.Response{Status: nssproto.StatusTryAgain}
			}
			if ok, suppressed := s.upLog.Allow("", time.Now()); ok {
				s.cfg.Log.Warn("enumeration failed upstream", "err", err, "suppressed", suppressed)
			}
			return nssproto.Response{Status: nssproto.StatusUnavail}
		}
		var batch []nssproto.Passwd
		size := 0
		for _, u := range users {
			if reason := refuseReason(u); reason != "" {
				s.refuse(u, reason)
				continue
			}
			w := nssproto.Passwd(u)
			batch = append(batch, w)
			size += w.Size()
		}
		if size > budget {
			if len(page) > 0 {
				break // this batch is fetched again as the next page
			}
			if want > 1 {
				want = max(1, want/2)
				continue
			}
			// One valid record always fits (MaxName + 3 MaxField < budget).
			return nssproto.Response{Status: nssproto.StatusUnavail}
		}
		page = append(page, batch...)
		budget -= size
		cursor = next
		if next == 0 {
			break
		}
		if len(users) == 0 {
			// A source that returns nothing yet promises more: stop here
			// rather than loop; the module asks again from next.
			break
		}
	}
	return nssproto.Response{Status: nssproto.StatusFound, Passwd: page, Next: cursor}
}

// groupPage serves the configured groups; the cursor is an index.
func (s *Server) groupPage(cursor uint64) nssproto.Response {
	budget := nssproto.MaxResponse - nssproto.PageOverhead
	var page []nssproto.Group
	i := cursor
	for ; i < uint64(len(s.cfg.Groups)); i++ {
		g := wireGroup(s.cfg.Groups[i])
		if g.Size() > budget {
			break
		}
		budget -= g.Size()
		page = append(page, g)
	}
	next := i
	if i >= uint64(len(s.cfg.Groups)) {
		next = 0
	}
	return nssproto.Response{Status: nssproto.StatusFound, Groups: page, Next: next}
}

func wireGroup(g Group) nssproto.Group {
	return nssproto.Group{Name: g.Name, GID: g.GID, Members: g.Members}
}

// Listen prepares path for the nss socket and listens on it: it creates
// the directory (mode 0755) when missing, refuses to start when another
// nssd answers on path, removes a stale socket left by a crash, and makes
// the socket mode 0666 so every local user can resolve names — the
// protocol has no operation that changes anything.
func Listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		// MkdirAll's mode is masked by the umask; the directory must be
		// searchable by everyone or the socket's 0666 is worthless.
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != os.ModeSocket {
			return nil, &os.PathError{Op: "listen", Path: path,
				Err: errors.New("exists and is not a socket; remove it or set cluster.nss.socket to another path")}
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, &os.PathError{Op: "listen", Path: path,
				Err: errors.New("another nssd is answering on this socket; stop it first")}
		}
		// Nobody listens: a socket left behind by a crash.
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
