package pwserver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"correo/src/directory"
	"correo/src/pwproto"
)

const opCount = 8 // > every pwproto.Op value

func opName(op int) string { return pwproto.Op(op).String() }

type udpState struct {
	once   sync.Once
	codec  *pwproto.Codec
	replay *pwproto.ReplayFilter
	auth   chan authJob
	dedup  authDedup
	// workers verify passwords; verifyNanos is a moving average of what
	// one verification costs them, for the admission check.
	workers     int
	verifyNanos atomic.Int64
}

type authJob struct {
	conn   *net.UDPConn
	from   netip.AddrPort
	req    pwproto.Request
	rec    *authRec
	queued time.Time
}

func (s *Server) initUDP() error {
	var err error
	s.udp.once.Do(func() {
		s.udp.codec, err = pwproto.NewCodec(s.cfg.Ring)
		s.udp.replay = pwproto.NewReplayFilter()
		s.udp.auth = make(chan authJob, s.cfg.Profile.Cluster.Passwd.AuthQueue)
		n := s.cfg.AuthWorkers
		if n <= 0 {
			n = runtime.GOMAXPROCS(0)
		}
		s.udp.workers = n
		for i := 0; i < n; i++ {
			go s.authWorker()
		}
		// The admission check needs the cost of a verification before the
		// first login, or a storm right after start-up would fill the
		// queue with logins nobody can wait for: measure one (the
		// unknown-user hash, at the profile's cost; real logins refine it).
		go func() {
			h := s.dummyHash()
			start := time.Now()
			directory.VerifyPassword(h, "correo-admission-probe")
			s.udp.verifyNanos.CompareAndSwap(0, int64(time.Since(start)))
		}()
	})
	return err
}

// ServeUDP answers queries on the given sockets until they are closed,
// with one reader goroutine per socket. Several goroutines reading one
// socket would only take turns on its descriptor lock, each turn costing
// a wake-up; with SO_REUSEPORT sockets (ListenUDP) the kernel spreads
// clients over sockets instead, and every reader owns its buffers, so the
// hot path allocates only what the decoded strings need.
func (s *Server) ServeUDP(conns ...*net.UDPConn) error {
	if err := s.initUDP(); err != nil {
		return err
	}
	errc := make(chan error, len(conns))
	for _, c := range conns {
		go func() { errc <- s.readLoop(c) }()
	}
	var first error
	for range conns {
		if err := <-errc; err != nil && first == nil && !errors.Is(err, net.ErrClosed) {
			first = err
		}
	}
	return first
}

// ListenUDP opens n sockets on addr sharing the port with SO_REUSEPORT,
// each with a receive buffer big enough to absorb a login storm.
func ListenUDP(addr netip.AddrPort, n int) ([]*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	var conns []*net.UDPConn
	for i := 0; i < n; i++ {
		pc, err := lc.ListenPacket(context.Background(), "udp", addr.String())
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		c := pc.(*net.UDPConn)
		c.SetReadBuffer(4 << 20)
		conns = append(conns, c)
	}
	return conns, nil
}

func (s *Server) readLoop(conn *net.UDPConn) error {
	in := make([]byte, pwproto.MaxDatagram+1)
	out := make([]byte, 0, pwproto.MaxDatagram)
	var req pwproto.Request
	for {
		n, from, err := conn.ReadFromUDPAddrPort(in)
		if err != nil {
			return err
		}
		now := s.cfg.now()
		if n > pwproto.MaxDatagram {
			s.dropped("oversize", from, pwproto.ErrOversize, now)
			continue
		}
		err = s.udp.codec.OpenRequestTo(&req, in[:n], now)
		if err != nil && err != pwproto.ErrUnknownOp && err != pwproto.ErrMalformed {
			s.dropped(dropReason(err), from, err, now)
			continue
		}
		if !s.udp.replay.Admit(&req, now) {
			s.dropped("replay", from, errors.New("replayed request"), now)
			continue
		}
		var resp pwproto.Response
		if err != nil {
			resp = req.Reply(pwproto.StatusBadRequest)
		} else {
			if int(req.Op) < opCount {
				s.stats.requests[req.Op].Add(1)
			}
			if req.Op == pwproto.OpAuth {
				s.enqueueAuth(conn, from, req)
				continue
			}
			resp = s.answer(&req)
		}
		// Counted before the answer leaves: a client that scrapes the
		// metrics right after its answer sees its own request.
		d := time.Since(now)
		s.stats.served(d)
		s.stats.metrics.lookup(req.Op, resp.Status, d)
		s.send(conn, from, &resp, &out, now)
	}
}

func (s *Server) send(conn *net.UDPConn, to netip.AddrPort, resp *pwproto.Response, out *[]byte, now time.Time) {
	b, err := s.udp.codec.SealResponse((*out)[:0], resp, now)
	if err != nil {
		// Only an oversized record can get here (FitUser prevents it for
		// lookups); the client gets an error instead of a timeout.
		s.log.Error("cannot seal a response", "op", resp.Op.String(), "err", err)
		r := pwproto.Response{Op: resp.Op, ID: resp.ID, KeyID: resp.KeyID, Status: pwproto.StatusTempFail}
		if b, err = s.udp.codec.SealResponse((*out)[:0], &r, now); err != nil {
			return
		}
	}
	*out = b
	conn.WriteToUDPAddrPort(b, to)
}

func dropReason(err error) string {
	switch err {
	case pwproto.ErrShort:
		return "short"
	case pwproto.ErrOversize:
		return "oversize"
	case pwproto.ErrMagic:
		return "magic"
	case pwproto.ErrVersion:
		return "version"
	case pwproto.ErrUnknownKey:
		return "unknown_key"
	case pwproto.ErrAuth:
		return "auth"
	case pwproto.ErrDirection:
		return "direction"
	case pwproto.ErrStale:
		return "stale"
	}
	return "other"
}

// dropped counts a datagram that gets no answer and logs the class at a
// limited rate: silence is the answer to forgeries, but the operator must
// be able to see them.
func (s *Server) dropped(reason string, from netip.AddrPort, err error, now time.Time) {
	s.stats.drop(reason)
	if ok, n := s.logLimit.Allow("drop-"+reason, now); ok {
		s.log.Warn("dropped a datagram", "reason", reason, "from", from.String(), "err", err, "suppressed", n)
	}
}

// answer serves every read operation from the current index.
func (s *Server) answer(req *pwproto.Request) pwproto.Response {
	if !s.ready() && req.Op != pwproto.OpPing {
		return req.Reply(pwproto.StatusTempFail)
	}
	ix := s.store.Index()
	switch req.Op {
	case pwproto.OpLookupName:
		u, ok := ix.ByName(req.Name)
		return s.userReply(req, u, ok)
	case pwproto.OpLookupUID:
		u, ok := ix.ByUID(req.UID)
		return s.userReply(req, u, ok)
	case pwproto.OpLookupAddr:
		local, ok := s.localPart(req.Address)
		if !ok {
			return req.Reply(pwproto.StatusNotFound)
		}
		u, ok := ix.Resolve(local)
		return s.userReply(req, u, ok)
	case pwproto.OpEnumerate:
		max := int(req.Max)
		if max <= 0 || max > 64 {
			max = 64
		}
		users, next := ix.Page(req.Cursor, max)
		resp := req.Reply(pwproto.StatusOK)
		resp.Users = make([]pwproto.User, len(users))
		for i, u := range users {
			resp.Users[i] = s.wireUser(u)
		}
		// Whatever does not fit in this datagram starts the next page.
		if fit := pwproto.FitEnumerate(resp.Users); fit < len(resp.Users) {
			resp.Users = resp.Users[:fit]
			next = pageCursor(ix, req.Cursor, fit, next)
		}
		resp.Next = next
		return resp
	case pwproto.OpPing:
		resp := req.Reply(pwproto.StatusOK)
		epoch, seq := s.store.Generation()
		resp.Ping = pwproto.PingInfo{Role: pwproto.RolePrimary, Epoch: epoch, Seq: seq, Users: uint64(ix.Len())}
		if s.role == Secondary {
			resp.Ping.Role = pwproto.RoleSecondary
		}
		return resp
	}
	return req.Reply(pwproto.StatusBadRequest)
}

// pageCursor finds the cursor after the first n users of the page that
// began at cursor, when the datagram could not carry the whole page.
func pageCursor(ix *directory.Index, cursor uint64, n int, fallback uint64) uint64 {
	if n == 0 {
		return fallback
	}
	_, next := ix.Page(cursor, n)
	return next
}

func (s *Server) userReply(req *pwproto.Request, u directory.User, ok bool) pwproto.Response {
	if !ok {
		// A secondary cut off from its primary may lack users added
		// since: its "no such user" would make an MX or a storage host
		// bounce mail for a user who exists (seconds after the user was
		// created, clients still on the secondary after a failover). It
		// can vouch for the users it has, not for the absence of others.
		if s.role == Secondary && !s.inStep(time.Now()) {
			return req.Reply(pwproto.StatusTempFail)
		}
		return req.Reply(pwproto.StatusNotFound)
	}
	resp := req.Reply(pwproto.StatusOK)
	resp.User = s.wireUser(u)
	return resp
}

// wireUser is the record as clients see it: no hash, home derived, and
// trimmed to fit one datagram.
func (s *Server) wireUser(u directory.User) pwproto.User {
	return pwproto.FitUser(pwproto.User{Name: u.Name, UID: u.UID, GID: u.GID, Gecos: u.Gecos, Shell: u.Shell,
		Home: s.home(u), Storage: u.Storage, Quota: u.Quota, State: pwproto.State(u.State), Aliases: u.Aliases})
}

// localPart returns the local part of a mail address at one of the
// cluster's domains, with a "+detail" suffix removed (juan+lists@ is
// juan's), so the index can resolve it as a name or alias.
func (s *Server) localPart(addr string) (string, bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || !s.cfg.Profile.IsLocalDomain(addr[at+1:]) {
		return "", false
	}
	local := addr[:at]
	if plus := strings.IndexByte(local, '+'); plus > 0 {
		local = local[:plus]
	}
	return local, true
}

// authDedup recognises a client's retransmission of an authentication
// (same source, same request id, fresh nonce): it is answered from the
// first attempt instead of verifying — and counting a failure — twice.
type authDedup struct {
	mu        sync.Mutex
	m         map[authKey]*authRec
	lastSweep time.Time
}

type authKey struct {
	from netip.AddrPort
	id   uint64
}

type authRec struct {
	done bool
	resp pwproto.Response
	at   time.Time
}

// A retransmission comes within the client's timeout; keep answers a
// little longer than the longest sensible one, and bound the memory.
const (
	authDedupKeep = 30 * time.Second
	authDedupMax  = 100_000
)

// claim registers a new authentication, or returns the record of the
// earlier copy of the same request.
func (d *authDedup) claim(k authKey, now time.Time) (rec *authRec, dup bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[authKey]*authRec{}
	}
	if r, ok := d.m[k]; ok {
		return r, true
	}
	if now.Sub(d.lastSweep) > authDedupKeep/4 || len(d.m) >= authDedupMax {
		for key, r := range d.m {
			if now.Sub(r.at) > authDedupKeep {
				delete(d.m, key)
			}
		}
		d.lastSweep = now
	}
	r := &authRec{at: now}
	if len(d.m) < authDedupMax {
		d.m[k] = r
	}
	return r, false
}

func (d *authDedup) finish(r *authRec, resp pwproto.Response) {
	d.mu.Lock()
	r.done, r.resp = true, resp
	d.mu.Unlock()
}

func (d *authDedup) answer(r *authRec) (pwproto.Response, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return r.resp, r.done
}

func (s *Server) enqueueAuth(conn *net.UDPConn, from netip.AddrPort, req pwproto.Request) {
	now := s.cfg.now()
	rec, dup := s.udp.dedup.claim(authKey{from, req.ID}, now)
	if dup {
		s.stats.drop("auth_retransmit")
		if resp, done := s.udp.dedup.answer(rec); done {
			// The first answer was lost: send it again, sealed anew.
			resp.KeyID = req.KeyID
			out := make([]byte, 0, pwproto.MaxDatagram)
			s.send(conn, from, &resp, &out, now)
		}
		// Still being verified: the answer to the first copy will do.
		return
	}
	// Whatever needs no password hash check (a cached login, a lockout)
	// is answered here, so polling clients are not queued behind the
	// bcrypt checks of a login storm.
	if resp, done, _ := s.authenticate(&req, false); done {
		s.udp.dedup.finish(rec, resp)
		out := make([]byte, 0, pwproto.MaxDatagram)
		s.stats.metrics.auth(resp.Status, s.cfg.now().Sub(now))
		s.send(conn, from, &resp, &out, s.cfg.now())
		return
	}
	// A login whose answer could not come before the client stops
	// waiting (cluster.passwd.timeout) is told "try later" at once: the
	// client turns that into its protocol's temporary failure instead of
	// timing out, and the verifiers spend no time on logins nobody waits
	// for. The queue also has a hard bound (cluster.passwd.auth_queue).
	if s.expectedWait() > s.authBudget() {
		s.refuseAuth(conn, from, &req, rec, "auth_overload", now)
		return
	}
	select {
	case s.udp.auth <- authJob{conn: conn, from: from, req: req, rec: rec, queued: now}:
	default:
		s.refuseAuth(conn, from, &req, rec, "auth_queue_full", now)
	}
}

// authBudget is how long a login may wait for a verifier: half the time
// a client waits for passwdd, the other half left for the verification
// itself and the way back.
func (s *Server) authBudget() time.Duration {
	return s.cfg.Profile.Cluster.Passwd.Timeout.Std() / 2
}

// expectedWait estimates how long a login queued now would wait for a
// verifier: the logins ahead of it, shared among the workers, at the
// recent cost of one verification.
func (s *Server) expectedWait() time.Duration {
	per := time.Duration(s.udp.verifyNanos.Load())
	return time.Duration(len(s.udp.auth)+1) * per / time.Duration(s.udp.workers)
}

func (s *Server) refuseAuth(conn *net.UDPConn, from netip.AddrPort, req *pwproto.Request, rec *authRec, reason string, now time.Time) {
	s.stats.drop(reason)
	if ok, n := s.logLimit.Allow(reason, now); ok {
		s.log.Warn("login refused for now: password verifiers busy", "reason", reason, "queued", len(s.udp.auth),
			"verify_ms", time.Duration(s.udp.verifyNanos.Load()).Milliseconds(), "suppressed", n)
	}
	resp := req.Reply(pwproto.StatusTempFail)
	s.udp.dedup.finish(rec, resp)
	out := make([]byte, 0, 256)
	s.stats.metrics.auth(resp.Status, s.cfg.now().Sub(now))
	s.send(conn, from, &resp, &out, s.cfg.now())
}

func (s *Server) authWorker() {
	out := make([]byte, 0, pwproto.MaxDatagram)
	for job := range s.udp.auth {
		var resp pwproto.Response
		start := s.cfg.now()
		if start.Sub(job.queued) > s.cfg.Profile.Cluster.Passwd.Timeout.Std() {
			// The client has stopped waiting; if it asked again, that copy
			// is this same job (dedup), and "try later" is the truth.
			s.stats.drop("auth_expired")
			resp = job.req.Reply(pwproto.StatusTempFail)
		} else {
			var verified bool
			resp, _, verified = s.authenticate(&job.req, true)
			if verified {
				s.noteVerifyCost(s.cfg.now().Sub(start))
			}
		}
		s.udp.dedup.finish(job.rec, resp)
		s.stats.metrics.auth(resp.Status, s.cfg.now().Sub(job.queued))
		s.send(job.conn, job.from, &resp, &out, s.cfg.now())
	}
}

// noteVerifyCost folds one verification's duration into the moving
// average (weight 1/8: a few logins after a change of hash costs, or of
// load, the estimate follows).
func (s *Server) noteVerifyCost(d time.Duration) {
	for {
		old := s.udp.verifyNanos.Load()
		nv := int64(d)
		if old != 0 {
			nv = old + (int64(d)-old)/8
		}
		if s.udp.verifyNanos.CompareAndSwap(old, nv) {
			return
		}
	}
}

// authenticate verifies a password here, so the hash never leaves. While
// the user or the source is locked out the password is not even checked:
// a guesser learns nothing and costs no bcrypt. A cache hit passes the
// same lockout checks as a full verification. With verify false it
// answers only what needs no password hash check, and done is false for
// the rest; verified says whether a password hash was checked.
func (s *Server) authenticate(req *pwproto.Request, verify bool) (resp pwproto.Response, done, verified bool) {
	if !s.ready() {
		return req.Reply(pwproto.StatusTempFail), true, false
	}
	userKey := strings.ToLower(req.Name)
	srcKey := SourceKey(req.Client)
	if s.users.Locked(userKey) || s.sources.Locked(srcKey) {
		s.stats.authLocked.Add(1)
		return req.Reply(pwproto.StatusLockedOut), true, false
	}
	u, ok := s.store.Index().ByName(req.Name)
	now := s.cfg.now()
	if ok && u.State != directory.StateDisabled && s.creds.check(u, req.Password, now) {
		s.stats.authCached.Add(1)
		s.stats.metrics.cacheLookup(true)
		return s.authSucceeded(req, userKey, u), true, false
	}
	if !verify {
		return pwproto.Response{}, false, false
	}
	s.stats.authVerified.Add(1)
	s.stats.metrics.cacheLookup(false)
	if !ok || u.State == directory.StateDisabled || !directory.VerifyPassword(u.Hash, req.Password) {
		if !ok {
			// Spend the same time as a real check, so timing does not tell
			// which users exist.
			directory.VerifyPassword(s.dummyHash(), req.Password)
		}
		lockedUser := s.users.Fail(userKey)
		lockedSrc := s.sources.Fail(srcKey)
		if lockedUser || lockedSrc {
			s.stats.authLocked.Add(1)
			if ok, n := s.logLimit.Allow("lockout", s.cfg.now()); ok {
				s.log.Warn("login locked out after repeated failures", "user", userKey, "client", req.Client, "suppressed", n)
			}
			return req.Reply(pwproto.StatusLockedOut), true, true
		}
		s.stats.authDenied.Add(1)
		return req.Reply(pwproto.StatusDenied), true, true
	}
	s.creds.put(u, req.Password, now)
	return s.authSucceeded(req, userKey, u), true, true
}

func (s *Server) authSucceeded(req *pwproto.Request, userKey string, u directory.User) pwproto.Response {
	s.users.Succeed(userKey)
	s.stats.authOK.Add(1)
	resp := req.Reply(pwproto.StatusOK)
	resp.User = s.wireUser(u)
	return resp
}
