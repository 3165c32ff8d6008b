package pwserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/pwadmin"
	"correo/src/pwproto"
)

// frames is the sealed stream an admin connection speaks (pwproto.Stream).
type frames interface {
	Send(kind uint8, payload []byte) error
	Recv() (kind uint8, payload []byte, err error)
}

// Admin connections are interactive but may carry a large import: idle
// limits are generous, and a connection that never completes the
// handshake is cut quickly.
const (
	adminHandshakeTimeout = 5 * time.Second
	adminIdleTimeout      = 10 * time.Minute
	// importGCPercent is GOGC while an import builds the new index.
	importGCPercent = 400
	// maxImportBytes bounds an import session's memory: about 20 M users.
	maxImportBytes = 4 << 30
)

// ServeAdmin accepts admin and replication connections until ln closes.
func (s *Server) ServeAdmin(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go s.handleAdmin(c)
	}
}

func (s *Server) handleAdmin(c net.Conn) {
	lowerPriority()
	defer c.Close()
	remote := c.RemoteAddr().String()
	c.SetDeadline(time.Now().Add(adminHandshakeTimeout))
	st, err := pwproto.ServerStream(c, s.cfg.Ring)
	if err != nil {
		if ok, n := s.logLimit.Allow("admin-handshake", time.Now()); ok {
			s.log.Warn("admin connection refused: handshake failed (wrong cluster key?)", "remote", remote, "err", err, "suppressed", n)
		}
		s.stats.drop("admin_handshake")
		return
	}
	sess := &adminSession{s: s, remote: remote}
	for {
		c.SetDeadline(time.Now().Add(adminIdleTimeout))
		kind, payload, err := st.Recv()
		if err != nil {
			return
		}
		if kind != pwadmin.KindRequest {
			s.log.Warn("admin connection sent a frame that is not a request", "remote", remote, "kind", kind)
			return
		}
		var req pwadmin.Request
		if err := json.Unmarshal(payload, &req); err != nil {
			sess.reply(st, fail(pwadmin.CodeInvalid, fmt.Errorf("malformed request: %v", err)))
			continue
		}
		if req.Op == pwadmin.OpReplicate {
			c.SetDeadline(time.Time{})
			s.serveReplica(c, st, remote, req)
			return
		}
		resp := sess.handle(req)
		if err := sess.reply(st, resp); err != nil {
			return
		}
	}
}

type adminSession struct {
	s             *Server
	remote        string
	importing     bool
	chunks        []json.RawMessage
	importBytes   int
	importReplace bool
}

func (a *adminSession) reply(st frames, resp pwadmin.Response) error {
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(fail(pwadmin.CodeInternal, err))
	}
	return st.Send(pwadmin.KindResponse, b)
}

func fail(code string, err error) pwadmin.Response {
	return pwadmin.Response{Code: code, Error: err.Error()}
}

// errCode classifies a store error for the client.
func errCode(err error) string {
	switch {
	case errors.Is(err, directory.ErrNotFound):
		return pwadmin.CodeNotFound
	case errors.Is(err, errNotPrimary):
		return pwadmin.CodeNotPrimary
	default:
		return pwadmin.CodeInvalid
	}
}

var writeOps = map[string]bool{
	pwadmin.OpUserAdd: true, pwadmin.OpUserDel: true, pwadmin.OpUserMod: true, pwadmin.OpUserPasswd: true,
	pwadmin.OpAliasAdd: true, pwadmin.OpAliasDel: true,
	pwadmin.OpImportBegin: true, pwadmin.OpImportChunk: true, pwadmin.OpImportCommit: true,
}

func (a *adminSession) handle(req pwadmin.Request) pwadmin.Response {
	s := a.s
	if writeOps[req.Op] && s.role != Primary {
		return pwadmin.Response{Code: pwadmin.CodeNotPrimary, Primary: s.primary,
			Error: fmt.Sprintf("%v: %s", errNotPrimary, s.primary)}
	}
	switch req.Op {
	case pwadmin.OpUserAdd:
		return a.userAdd(req)
	case pwadmin.OpUserDel:
		return a.apply(directory.Entry{Op: directory.OpDelete, Name: req.Name}, "deleted")
	case pwadmin.OpUserMod:
		if req.Patch == nil {
			return fail(pwadmin.CodeInvalid, errors.New("user.mod needs a patch"))
		}
		if req.Patch.Storage != nil {
			if err := s.checkStorage(*req.Patch.Storage); err != nil {
				return fail(pwadmin.CodeInvalid, err)
			}
		}
		return a.apply(directory.Entry{Op: directory.OpModify, Name: req.Name, Patch: req.Patch}, "modified")
	case pwadmin.OpUserPasswd:
		hash, err := directory.HashPassword(req.Password, s.cfg.Profile.Cluster.Passwd.BcryptCost)
		if err != nil {
			return fail(pwadmin.CodeInvalid, err)
		}
		return a.apply(directory.Entry{Op: directory.OpPasswd, Name: req.Name, Hash: hash}, "password changed")
	case pwadmin.OpAliasAdd:
		return a.apply(directory.Entry{Op: directory.OpAliasAdd, Name: req.Name, Alias: req.Alias}, "alias added")
	case pwadmin.OpAliasDel:
		// The owner is found from the alias itself.
		u, ok := s.store.Index().Resolve(req.Alias)
		if !ok {
			return fail(pwadmin.CodeNotFound, fmt.Errorf("no user has alias %q", req.Alias))
		}
		return a.apply(directory.Entry{Op: directory.OpAliasDel, Name: u.Name, Alias: req.Alias}, "alias removed")
	case pwadmin.OpUserShow:
		u, ok := s.store.Index().ByName(req.Name)
		if !ok {
			return fail(pwadmin.CodeNotFound, fmt.Errorf("no user %q", req.Name))
		}
		u = redact(u)
		return pwadmin.Response{OK: true, User: &u}
	case pwadmin.OpUserList:
		max := req.Max
		if max <= 0 || max > 10_000 {
			max = 1000
		}
		users, next := s.store.Index().Page(req.Cursor, max)
		for i := range users {
			users[i] = redact(users[i])
		}
		return pwadmin.Response{OK: true, Users: users, Next: next}
	case pwadmin.OpImportBegin:
		a.importing, a.chunks, a.importBytes, a.importReplace = true, nil, 0, req.Replace
		return pwadmin.Response{OK: true}
	case pwadmin.OpImportChunk:
		if !a.importing {
			return fail(pwadmin.CodeInvalid, errors.New("import.chunk before import.begin"))
		}
		if a.importBytes+len(req.Chunk) > maxImportBytes {
			a.importing, a.chunks = false, nil
			return fail(pwadmin.CodeInvalid, fmt.Errorf("import larger than %d MiB; aborted", maxImportBytes>>20))
		}
		a.chunks = append(a.chunks, req.Chunk)
		a.importBytes += len(req.Chunk)
		return pwadmin.Response{OK: true}
	case pwadmin.OpImportCommit:
		if !a.importing {
			return fail(pwadmin.CodeInvalid, errors.New("import.commit before import.begin"))
		}
		chunks := a.chunks
		a.importing, a.chunks = false, nil
		n, err := s.importUsers(chunks, a.importBytes, a.importReplace)
		if err != nil {
			return fail(pwadmin.CodeInvalid, err)
		}
		s.log.Info("import committed", "remote", a.remote, "users", n, "replace", a.importReplace)
		return pwadmin.Response{OK: true, Count: n}
	case pwadmin.OpStats:
		st := s.Stats()
		return pwadmin.Response{OK: true, Stats: &st}
	default:
		return fail(pwadmin.CodeInvalid, fmt.Errorf("unknown operation %q", req.Op))
	}
}

// redact removes the password hash from a record leaving passwdd: it is
// replaced by a marker saying whether a password is set.
func redact(u directory.User) directory.User {
	switch {
	case u.Hash == "" || u.Hash == "*" || strings.HasPrefix(u.Hash, "!"):
		u.Hash = "(none)"
	default:
		u.Hash = "(set)"
	}
	return u
}

func (s *Server) checkStorage(name string) error {
	for _, h := range s.storages {
		if h.Name == name {
			return nil
		}
	}
	var names []string
	for _, h := range s.storages {
		names = append(names, h.Name)
	}
	return fmt.Errorf("storage host %q is not in the profile (storage hosts: %s)", name, strings.Join(names, ", "))
}

// place fills in a new user's storage host by the profile's policy.
func (s *Server) place(u *directory.User, counts map[string]int) error {
	if u.Storage != "" {
		return s.checkStorage(u.Storage)
	}
	h, err := directory.Place(s.cfg.Profile.Cluster.Placement, s.storages, counts, u.Name)
	if err != nil {
		return err
	}
	u.Storage = h
	counts[h]++
	return nil
}

func (a *adminSession) userAdd(req pwadmin.Request) pwadmin.Response {
	s := a.s
	if req.User == nil {
		return fail(pwadmin.CodeInvalid, errors.New("user.add needs a user"))
	}
	u := *req.User
	if req.Password != "" {
		h, err := directory.HashPassword(req.Password, s.cfg.Profile.Cluster.Passwd.BcryptCost)
		if err != nil {
			return fail(pwadmin.CodeInvalid, err)
		}
		u.Hash = h
	}
	// One add at a time, so two adds without a uid cannot pick the same.
	s.addMu.Lock()
	defer s.addMu.Unlock()
	ix := s.store.Index()
	if u.UID == 0 {
		u.UID = max(ix.MaxUID()+1, FirstUID)
	}
	if u.GID == 0 {
		u.GID = s.mailGID()
	}
	if err := s.place(&u, ix.CountByStorage()); err != nil {
		return fail(pwadmin.CodeInvalid, err)
	}
	resp := a.apply(directory.Entry{Op: directory.OpAdd, User: &u}, "added")
	if resp.OK {
		ru := redact(u)
		resp.User = &ru
	}
	return resp
}

func (a *adminSession) apply(e directory.Entry, what string) pwadmin.Response {
	s := a.s
	stored, err := s.store.Apply(e)
	if err != nil {
		return fail(errCode(err), err)
	}
	s.creds.drop(stored.Name)
	s.log.Info("user "+what, "user", stored.Name, "op", stored.Op.String(), "seq", stored.Seq, "remote", a.remote)
	return pwadmin.Response{OK: true}
}

// importUsers makes the imported users part of the directory in one
// atomic step: the store writes a complete new snapshot, so a crash leaves
// the old set or the new one. The chunks are decoded one user at a time
// straight into the index builder: a bulk import must not fill the heap
// with a million users' worth of Go strings and pointers, whose scanning
// by the garbage collector would stall the readers answering queries.
func (s *Server) importUsers(chunks []json.RawMessage, size int, replace bool) (int, error) {
	// Decoding a million users makes short-lived garbage at a great rate.
	// Letting the heap grow a few times over while it lasts means few GC
	// cycles, so few moments where a reader must help the collector
	// instead of answering; the memory comes back when the import ends.
	defer debug.SetGCPercent(debug.SetGCPercent(importGCPercent))
	cur := s.store.Index()
	hint := size / 2
	existing := 0
	if !replace {
		existing = cur.Len()
	}
	b := directory.NewBuilder(existing+size/150, hint)
	counts := map[string]int{}
	var err error
	if !replace {
		cur.Range(func(u directory.User) bool {
			counts[u.Storage]++
			err = b.Add(u)
			return err == nil
		})
		if err != nil {
			return 0, fmt.Errorf("existing users: %w", err)
		}
	}
	n := 0
	for ci, chunk := range chunks {
		dec := json.NewDecoder(bytes.NewReader(chunk))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return 0, fmt.Errorf("import chunk %d: not a JSON array of users", ci+1)
		}
		for dec.More() {
			var u directory.User
			if err := dec.Decode(&u); err != nil {
				return 0, fmt.Errorf("import chunk %d, user %d: %v", ci+1, n+1, err)
			}
			if err := s.place(&u, counts); err != nil {
				return 0, fmt.Errorf("user %q: %w", u.Name, err)
			}
			if err := b.Add(u); err != nil {
				return 0, err
			}
			n++
		}
	}
	ix, err := b.Finish()
	if err != nil {
		return 0, err
	}
	if _, err := s.store.ReplaceIndex(ix); err != nil {
		return 0, err
	}
	s.creds.clear()
	return n, nil
}

// Stats reports the server's state.
func (s *Server) Stats() pwadmin.Stats {
	ix := s.store.Index()
	epoch, seq := s.store.Generation()
	st := pwadmin.Stats{Host: s.cfg.Host.Name, Role: string(s.role), Epoch: epoch, Seq: seq,
		Users: ix.Len(), PerStorage: ix.CountByStorage(), Requests: map[string]uint64{}, Dropped: map[string]uint64{},
		AuthOK: s.stats.authOK.Load(), AuthDenied: s.stats.authDenied.Load(), AuthLocked: s.stats.authLocked.Load(),
		AuthCached: s.stats.authCached.Load(), AuthVerified: s.stats.authVerified.Load(), AuthCacheEntries: s.creds.len(),
		VerifyCost: time.Duration(s.udp.verifyNanos.Load()).Round(10 * time.Microsecond).String(),
		LockedKeys: s.users.Len() + s.sources.Len(), JournalSize: s.store.JournalSize(),
		UptimeSec:      int64(time.Since(s.started).Seconds()),
		SlowestAnswer:  time.Duration(s.stats.slowest.Load()).String(),
		AnswersOver1ms: s.stats.over1ms.Load(), AnswersOver10ms: s.stats.over10ms.Load()}
	for op := range opCount {
		if n := s.stats.requests[op].Load(); n > 0 {
			st.Requests[opName(op)] = n
		}
	}
	s.stats.dropped.Range(func(k, v any) bool {
		st.Dropped[k.(string)] = v.(interface{ Load() uint64 }).Load()
		return true
	})
	s.mu.Lock()
	st.Following = s.following
	if !s.lastContact.IsZero() {
		st.Lag = time.Since(s.lastContact).Round(time.Millisecond).String()
	}
	for k := range s.secondaries {
		st.Secondaries = append(st.Secondaries, k)
	}
	s.mu.Unlock()
	slices.Sort(st.Secondaries)
	return st
}

// FirstUID is where automatically assigned uids start: above the system
// and local-login ranges of Debian and NixOS.
const FirstUID = 10000

// mailGID is the gid of users added without one: the cluster's first
// mail group, which nssd serves.
func (s *Server) mailGID() uint32 {
	if g := s.cfg.Profile.Cluster.NSS.Groups; len(g) > 0 {
		return uint32(g[0].GID)
	}
	return uint32(cluster.DefaultNSSGroups()[0].GID)
}
