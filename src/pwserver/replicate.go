package pwserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"correo/src/directory"
	"correo/src/pwadmin"
	"correo/src/pwproto"
)

// Replication timing: the primary speaks at least every heartbeat, so a
// secondary that hears nothing for replTimeout knows the primary is gone
// (or cut off) and reconnects.
const (
	heartbeatEvery = 2 * time.Second
	// heartbeatSlack is how late a heartbeat may be before a secondary
	// stops vouching that it is in step.
	heartbeatSlack   = time.Second
	replTimeout      = 3 * heartbeatEvery
	snapshotChunk    = 5000
	entriesChunk     = 1000
	reconnectInitial = 200 * time.Millisecond
	reconnectMax     = 5 * time.Second
)

// serveReplica streams the primary's state to a secondary: a snapshot when
// the secondary's position is unknown here, then every journal entry as it
// is committed, with heartbeats in between.
func (s *Server) serveReplica(c net.Conn, st frames, remote string, req pwadmin.Request) {
	if s.role != Primary {
		b, _ := json.Marshal(pwadmin.Response{Code: pwadmin.CodeNotPrimary, Primary: s.primary, Error: errNotPrimary.Error()})
		st.Send(pwadmin.KindResponse, b)
		return
	}
	s.mu.Lock()
	s.secondaries[remote] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.secondaries, remote)
		s.mu.Unlock()
	}()
	s.log.Info("secondary connected", "remote", remote, "epoch", req.Epoch, "seq", req.Seq)
	send := func(m pwadmin.Repl) error {
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		c.SetWriteDeadline(time.Now().Add(replTimeout))
		return st.Send(pwadmin.KindRepl, b)
	}
	// Notice the peer closing: a replication connection carries nothing
	// from the secondary after its request.
	gone := make(chan struct{})
	go func() {
		st.Recv()
		close(gone)
	}()
	epoch, seq := req.Epoch, req.Seq
	for {
		// Take the watch channel before reading, so a commit between the
		// read and the wait is not missed.
		changed := s.store.Watch()
		entries, err := s.store.Since(epoch, seq)
		if errors.Is(err, directory.ErrResync) || (err == nil && epoch == 0) {
			if epoch, seq, err = s.sendSnapshot(send); err != nil {
				s.log.Warn("replication to secondary ended", "remote", remote, "err", err)
				return
			}
			continue
		}
		if err != nil {
			s.log.Error("replication: reading the journal failed", "remote", remote, "err", err)
			return
		}
		for len(entries) > 0 {
			n := min(len(entries), entriesChunk)
			if err := send(pwadmin.Repl{Type: pwadmin.ReplEntries, Entries: entries[:n]}); err != nil {
				s.log.Warn("replication to secondary ended", "remote", remote, "err", err)
				return
			}
			seq = entries[n-1].Seq
			entries = entries[n:]
		}
		select {
		case <-changed:
		case <-gone:
			s.log.Info("secondary disconnected", "remote", remote)
			return
		case <-time.After(heartbeatEvery):
			if err := send(pwadmin.Repl{Type: pwadmin.ReplHeartbeat}); err != nil {
				s.log.Warn("replication to secondary ended", "remote", remote, "err", err)
				return
			}
		}
	}
}

func (s *Server) sendSnapshot(send func(pwadmin.Repl) error) (epoch, seq uint64, err error) {
	epoch, seq, users := s.store.Snapshot()
	if err := send(pwadmin.Repl{Type: pwadmin.ReplSnapshotBegin, Epoch: epoch, Seq: seq}); err != nil {
		return 0, 0, err
	}
	for len(users) > 0 {
		n := min(len(users), snapshotChunk)
		if err := send(pwadmin.Repl{Type: pwadmin.ReplSnapshotChunk, Users: users[:n]}); err != nil {
			return 0, 0, err
		}
		users = users[n:]
	}
	return epoch, seq, send(pwadmin.Repl{Type: pwadmin.ReplSnapshotEnd, Epoch: epoch, Seq: seq})
}

// inStep tells whether this secondary can vouch for holding everything
// the primary has: the stream is up and the primary spoke within a
// heartbeat. A stream that is up but silent longer (a link that dropped
// and came back: TCP is still retransmitting what the primary sent
// meanwhile) may lag by any number of changes.
func (s *Server) inStep(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.following && now.Sub(s.lastContact) <= heartbeatEvery+heartbeatSlack
}

// FollowPrimary keeps a secondary's store in step with the primary at
// addr until ctx ends, reconnecting with backoff whenever the link drops.
// Meanwhile the secondary answers reads from what it has.
func (s *Server) FollowPrimary(ctx context.Context, addr string) {
	backoff := reconnectInitial
	for ctx.Err() == nil {
		err := s.followOnce(ctx, addr)
		s.mu.Lock()
		wasFollowing := s.following
		s.following = false
		s.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if wasFollowing {
			backoff = reconnectInitial
		}
		if ok, n := s.logLimit.Allow("follow", time.Now()); ok {
			s.log.Warn("not following the primary; answering from the local copy", "primary", addr, "err", err, "suppressed", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, reconnectMax)
	}
}

func (s *Server) followOnce(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetDeadline(time.Now().Add(adminHandshakeTimeout))
	st, err := pwproto.ClientStream(c, s.cfg.Ring)
	if err != nil {
		return fmt.Errorf("handshake with the primary: %w", err)
	}
	epoch, seq := s.store.Generation()
	b, _ := json.Marshal(pwadmin.Request{Op: pwadmin.OpReplicate, Epoch: epoch, Seq: seq})
	if err := st.Send(pwadmin.KindRequest, b); err != nil {
		return err
	}
	var snap []directory.User
	var snapEpoch, snapSeq uint64
	inSnapshot := false
	for {
		c.SetReadDeadline(time.Now().Add(replTimeout))
		kind, payload, err := st.Recv()
		if err != nil {
			return err
		}
		if kind == pwadmin.KindResponse {
			var r pwadmin.Response
			json.Unmarshal(payload, &r)
			return fmt.Errorf("primary refused replication: %s", r.Error)
		}
		if kind != pwadmin.KindRepl {
			return fmt.Errorf("unexpected frame kind %d from the primary", kind)
		}
		var m pwadmin.Repl
		if err := json.Unmarshal(payload, &m); err != nil {
			return fmt.Errorf("malformed replication message: %w", err)
		}
		s.mu.Lock()
		s.following = true
		s.lastContact = time.Now()
		s.mu.Unlock()
		switch m.Type {
		case pwadmin.ReplSnapshotBegin:
			inSnapshot, snap, snapEpoch, snapSeq = true, nil, m.Epoch, m.Seq
		case pwadmin.ReplSnapshotChunk:
			if !inSnapshot {
				return errors.New("snapshot chunk outside a snapshot")
			}
			snap = append(snap, m.Users...)
		case pwadmin.ReplSnapshotEnd:
			if !inSnapshot || m.Epoch != snapEpoch || m.Seq != snapSeq {
				return errors.New("snapshot end does not match its beginning")
			}
			if err := s.store.Reset(snapEpoch, snapSeq, snap); err != nil {
				return fmt.Errorf("installing the primary's snapshot: %w", err)
			}
			s.creds.clear()
			if err := s.markSynced(); err != nil {
				return fmt.Errorf("recording the first sync: %w", err)
			}
			s.log.Info("loaded snapshot from the primary", "users", len(snap), "epoch", snapEpoch, "seq", snapSeq)
			inSnapshot, snap = false, nil
		case pwadmin.ReplEntries:
			for _, e := range m.Entries {
				if err := s.store.ApplyReplicated(e); err != nil {
					// Reconnecting resends from our position, or a snapshot.
					return fmt.Errorf("applying %s: %w", e, err)
				}
				s.creds.drop(e.Name)
			}
		case pwadmin.ReplHeartbeat:
		default:
			return fmt.Errorf("unknown replication message %q", m.Type)
		}
	}
}
