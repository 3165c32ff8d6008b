package mailmove

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"correo/src/cluster"
	"correo/src/keyfile"
	"correo/src/mailbox"
	"correo/src/pwproto"
)

// Config configures a storage host's Server.
type Config struct {
	Profile *cluster.Profile
	// Host is the storage host the server runs on.
	Host *cluster.Host
	// Ring authenticates peers and correoctl: the cluster key.
	Ring *keyfile.Ring
	// Gate is shared with the process's LMTP server (lmtpd.Config.Gate),
	// so a freeze can wait out the deliveries already writing.
	Gate *mailbox.Gate
	Log  *slog.Logger
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Server serves the mailbox_move protocol on one storage host: as the
// source of the moves out of it and as the target of the moves into it.
type Server struct {
	cfg     Config
	log     *slog.Logger
	dataDir string
	scheme  mailbox.Scheme

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[net.Conn]bool
	busy      map[string]string // user → operation holding it
	closed    bool
	wg        sync.WaitGroup

	// handshake bounds a new connection's key exchange: handshakeTimeout,
	// shortened by tests that wait for a silent client to be dropped.
	handshake time.Duration
}

// New builds a server; nothing listens until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Profile == nil || cfg.Host == nil || cfg.Ring == nil {
		return nil, errors.New("mailmove: Profile, Host and Ring are required")
	}
	if !cfg.Host.HasRole(cluster.RoleStorage) || cfg.Host.Storage == nil || cfg.Host.Storage.DataDir == "" {
		return nil, fmt.Errorf("mailmove: host %s is not a storage host with a data_dir in %s", cfg.Host.Name, cfg.Profile.Source)
	}
	if cfg.Gate == nil {
		cfg.Gate = new(mailbox.Gate)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, log: cfg.Log, dataDir: cfg.Host.Storage.DataDir, scheme: cfg.Profile.LayoutScheme(),
		conns: map[net.Conn]bool{}, busy: map[string]string{}, handshake: handshakeTimeout}, nil
}

// Serve accepts connections until the listener is closed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if !s.allowed(c.RemoteAddr()) {
			s.log.Warn("mailbox move connection from outside the cluster network refused", "client", c.RemoteAddr().String())
			c.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// allowed: the cluster's network and loopback (correoctl on the host).
func (s *Server) allowed(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	ip = ip.Unmap()
	return ok && (ip.IsLoopback() || s.cfg.Profile.NetworkPrefix().Contains(ip))
}

// Shutdown stops accepting and waits for the operations in progress: a
// copy is cheap to redo, but a freeze or commit cut halfway leaves work
// for -resume.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close closes listeners and connections at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return nil
}

// Sessions is the number of connections in progress.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// handshakeTimeout bounds the key exchange; idleTimeout a connection
// waiting for its next request (correoctl waits for the target's pull,
// not the other way round).
const (
	handshakeTimeout = 10 * time.Second
	idleTimeout      = 10 * time.Minute
	ioTimeout        = 2 * time.Minute
)

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(s.handshake))
	st, err := pwproto.ServerStream(c, s.cfg.Ring)
	if err != nil {
		s.log.Warn("mailbox move handshake failed", "client", c.RemoteAddr().String(), "err", err)
		return
	}
	for {
		c.SetDeadline(time.Now().Add(idleTimeout))
		kind, payload, err := st.Recv()
		if err != nil {
			return
		}
		if kind != kindRequest {
			s.log.Warn("mailbox move: unexpected frame", "client", c.RemoteAddr().String(), "kind", kind)
			return
		}
		var req Request
		if err := decode(payload, &req, "request"); err != nil {
			sendJSON(st, kindResponse, Response{Error: err.Error()})
			return
		}
		c.SetDeadline(time.Time{})
		resp, err := s.do(c, st, req)
		if err != nil {
			// The stream broke mid-answer: nothing more can be said.
			s.log.Warn("mailbox move: connection lost", "op", req.Op, "user", req.User, "client", c.RemoteAddr().String(), "err", err)
			return
		}
		c.SetDeadline(time.Now().Add(ioTimeout))
		if err := sendJSON(st, kindResponse, resp); err != nil {
			return
		}
	}
}

// do runs one request. A returned error means the stream is broken; a
// refusal is a Response without OK.
func (s *Server) do(c net.Conn, st *pwproto.Stream, req Request) (Response, error) {
	if req.Op == opUsage {
		u, err := s.usage(req.Users)
		if err != nil {
			return refuse(req.Op, "%v", err), nil
		}
		return Response{OK: true, Usage: u}, nil
	}
	user, err := mailbox.NormalizeName(req.User)
	if err != nil || user != req.User {
		return refuse(req.Op, "user name %q: not a valid mailbox name", req.User), nil
	}
	root, err := s.scheme.MaildirPath(s.dataDir, user)
	if err != nil {
		return refuse(req.Op, "%v", err), nil
	}
	// Reading the source's files may overlap anything; changing the
	// stage, the marker or the Maildir's place must not overlap another
	// such change for the same user.
	switch req.Op {
	case opManifest, opFetch, opStatus:
	default:
		release, err := s.hold(user, req.Op)
		if err != nil {
			r := refuse(req.Op, "%v", err)
			r.Code = CodeBusy
			return r, nil
		}
		defer release()
	}
	start := time.Now()
	var resp Response
	var streamErr error
	switch req.Op {
	case opManifest:
		resp, streamErr = s.sendManifest(c, st, root)
	case opFetch:
		resp, streamErr = s.sendFiles(c, st, root, req.Files, req.RateLimit)
	case opFreeze:
		err = s.freeze(user, root, req.To)
	case opThaw:
		err = s.thaw(root)
	case opRetire:
		err = s.retire(user, root, req.To)
	case opPull:
		var pass Pass
		pass, err = s.pull(c, st, user, req.From, req.RateLimit)
		resp.Pass = &pass
	case opVerify:
		var pass Pass
		pass, err = s.verify(user, req.From)
		resp.Pass = &pass
	case opCommit:
		err = s.commit(user, root)
	case opAbort:
		err = os.RemoveAll(s.stagePath(user))
	case opStatus:
		resp.Status = s.status(user, root)
	default:
		return refuse(req.Op, "unknown operation %q", req.Op), nil
	}
	if streamErr != nil {
		return Response{}, streamErr
	}
	if req.Op != opManifest && req.Op != opFetch {
		if err != nil {
			s.log.Warn("mailbox move step failed", "op", req.Op, "user", user, "from", req.From, "to", req.To, "err", err)
			return refuse(req.Op, "%v", err), nil
		}
		resp.OK = true
		if req.Op != opStatus {
			s.log.Info("mailbox move step done", "op", req.Op, "user", user, "from", req.From, "to", req.To, "took", time.Since(start).Round(time.Millisecond).String())
		}
	}
	return resp, nil
}

func refuse(op, format string, a ...any) Response {
	return Response{Error: op + ": " + fmt.Sprintf(format, a...)}
}

// hold gives one operation at a time on a user's mailbox.
func (s *Server) hold(user, op string) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.busy[user]; ok {
		return nil, fmt.Errorf("%s of %s's mailbox is in progress on %s; wait for it or for its connection to end", cur, user, s.cfg.Host.Name)
	}
	s.busy[user] = op
	return func() {
		s.mu.Lock()
		delete(s.busy, user)
		s.mu.Unlock()
	}, nil
}

// movesDir holds the stages of moves in, the records of moves out and
// the trash, on the data directory's file system: a stage becomes a
// Maildir by rename.
func (s *Server) movesDir() string { return filepath.Join(s.dataDir, ".correo-moves") }

func (s *Server) stagePath(user string) string { return filepath.Join(s.movesDir(), "in", user) }

func (s *Server) status(user, root string) *Status {
	st := &Status{}
	if fi, err := os.Stat(root); err == nil && fi.IsDir() {
		st.Live = true
	}
	st.Marker = readMarker(root)
	if fi, err := os.Stat(s.stagePath(user)); err == nil && fi.IsDir() {
		st.Stage = true
	}
	return st
}

// usage measures the asked mailboxes and the data_dir's file system. A
// mailbox frozen or moved away counts 0: it is leaving, or gone.
func (s *Server) usage(users []string) (*Usage, error) {
	if len(users) > maxUsageUsers {
		return nil, fmt.Errorf("%d users in one request, at most %d", len(users), maxUsageUsers)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(s.dataDir, &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", s.dataDir, err)
	}
	u := &Usage{Capacity: int64(st.Blocks) * st.Bsize, Free: int64(st.Bavail) * st.Bsize, Bytes: map[string]int64{}}
	for _, name := range users {
		n, err := mailbox.NormalizeName(name)
		if err != nil || n != name {
			return nil, fmt.Errorf("user name %q: not a valid mailbox name", name)
		}
		root, err := s.scheme.MaildirPath(s.dataDir, name)
		if err != nil {
			return nil, err
		}
		if mailbox.Moving(root) {
			u.Bytes[name] = 0
			continue
		}
		b, err := mailbox.Usage(root)
		if err != nil {
			return nil, fmt.Errorf("usage of %s: %w", name, err)
		}
		u.Bytes[name] = b
	}
	return u, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
