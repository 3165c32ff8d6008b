package pwserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/pwadmin"
	"correo/src/pwclient"
	"correo/src/pwproto"
)

func TestCredCache(t *testing.T) {
	base := directory.User{Name: "juan", UID: 5001, GID: 5000, Hash: "$2a$04$abc", Storage: "s1", Aliases: []string{"jp"}}
	now := time.Unix(1_700_000_000, 0)
	changed := func(f func(*directory.User)) directory.User {
		u := base
		u.Aliases = append([]string(nil), base.Aliases...)
		f(&u)
		return u
	}
	for _, tt := range []struct {
		name string
		user directory.User // the record at the second login
		pw   string
		at   time.Time
		want bool
	}{
		{"same record and password", base, "secret", now.Add(time.Minute), true},
		{"other password", base, "secreto", now, false},
		{"password is a prefix", base, "secre", now, false},
		{"name and password run together", changed(func(u *directory.User) { u.Name = "juans" }), "ecret", now, false},
		{"expired", base, "secret", now.Add(15*time.Minute + time.Second), false},
		{"password changed", changed(func(u *directory.User) { u.Hash = "$2a$04$xyz" }), "secret", now, false},
		{"disabled", changed(func(u *directory.User) { u.State = directory.StateDisabled }), "secret", now, false},
		{"moving", changed(func(u *directory.User) { u.State = directory.StateMoving }), "secret", now, false},
		{"storage changed", changed(func(u *directory.User) { u.Storage = "s2" }), "secret", now, false},
		{"re-created with another uid", changed(func(u *directory.User) { u.UID = 5002 }), "secret", now, false},
		{"alias added", changed(func(u *directory.User) { u.Aliases = append(u.Aliases, "juanp") }), "secret", now, false},
		{"quota changed", changed(func(u *directory.User) { u.Quota = 1 << 30 }), "secret", now, false},
		{"name case", changed(func(u *directory.User) { u.Name = "JUAN" }), "secret", now, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCredCache(15*time.Minute, 100)
			c.put(base, "secret", now)
			if got := c.check(tt.user, tt.pw, tt.at); got != tt.want {
				t.Fatalf("check = %v, want %v", got, tt.want)
			}
			if !tt.want && tt.pw == "secret" && c.len() != 0 {
				t.Errorf("a stale entry stayed: %d entries", c.len())
			}
		})
	}

	// Two processes' caches share nothing: the same login gives other
	// verifiers, so a dump of one says nothing usable by another.
	a, b := newCredCache(time.Minute, 10), newCredCache(time.Minute, 10)
	if a.mac("juan", "secret") == b.mac("juan", "secret") {
		t.Error("two caches made the same verifier")
	}
	if a.mac("juan", "secret") == a.mac("juan", "secreT") {
		t.Error("one verifier for two passwords")
	}

	// Bounded: a full cache makes room instead of growing.
	c := newCredCache(time.Hour, 64)
	for i := range 1000 {
		c.put(directory.User{Name: fmt.Sprintf("u%d", i), Hash: "h"}, "pw", now)
		if c.len() > 64 {
			t.Fatalf("cache grew to %d entries, bound 64", c.len())
		}
	}
	if !c.check(directory.User{Name: "u999", Hash: "h"}, "pw", now) {
		t.Error("the newest entry was evicted")
	}
	c.drop("U999")
	if c.check(directory.User{Name: "u999", Hash: "h"}, "pw", now) {
		t.Error("drop is case-sensitive")
	}
	c.clear()
	if c.len() != 0 {
		t.Error("clear left entries")
	}
}

// authStats is the part of the stats the cache tests look at.
func authStats(tc *testCluster, host string) (cached, verified uint64) {
	st := tc.nodes[host].srv.Stats()
	return st.AuthCached, st.AuthVerified
}

// rawAuth asks one server directly (no failover), for the secondary.
func rawAuth(t *testing.T, tc *testCluster, host string, id uint64, name, pw string) pwproto.Status {
	t.Helper()
	addr, _ := tc.profile.Listen(host, cluster.SvcPasswd)
	codec, _ := pwproto.NewCodec(tc.ring)
	b, err := codec.SealRequest(nil, &pwproto.Request{Op: pwproto.OpAuth, ID: id, Name: name, Password: pw, Client: "192.0.2.7"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ans := rawExchange(t, addr.String(), b, 30*time.Second)
	if ans == nil {
		t.Fatalf("%s did not answer the login of %s", host, name)
	}
	resp, err := codec.OpenResponse(ans)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Status
}

func TestAuthCacheFollowsTheRecord(t *testing.T) {
	tc := newTestCluster(t, true)
	adm := tc.admin("pw1")
	tc.addUser(adm, "maria", 5003, "first-password")
	pc := tc.client()
	ctx := context.Background()
	login := func(pw string) error {
		_, err := pc.Authenticate(ctx, "maria", pw, "203.0.113.5")
		return err
	}
	mustCount := func(what string, wantCached, wantVerified uint64) {
		t.Helper()
		if c, v := authStats(tc, "pw1"); c != wantCached || v != wantVerified {
			t.Fatalf("%s: %d logins from the cache, %d verified; want %d and %d", what, c, v, wantCached, wantVerified)
		}
	}
	if err := login("first-password"); err != nil {
		t.Fatal(err)
	}
	mustCount("first login", 0, 1)
	if err := login("first-password"); err != nil {
		t.Fatal(err)
	}
	mustCount("second login", 1, 1)
	// A wrong password is never answered from the cache, and not cached.
	if err := login("wrong"); !errors.Is(err, pwclient.ErrDenied) {
		t.Fatalf("wrong password: %v", err)
	}
	mustCount("wrong password", 1, 2)

	// A new password: the old one stops working at once.
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserPasswd, Name: "maria", Password: "second-password"}); err != nil {
		t.Fatal(err)
	}
	if err := login("first-password"); !errors.Is(err, pwclient.ErrDenied) {
		t.Fatalf("old password after a change: %v", err)
	}
	if err := login("second-password"); err != nil {
		t.Fatal(err)
	}
	if err := login("second-password"); err != nil {
		t.Fatal(err)
	}
	mustCount("after the change", 2, 4)

	// On the secondary, through replication: its own cache, dropped by
	// the replicated change.
	eventually(t, "the secondary has the new password", func() error {
		if st := rawAuth(t, tc, "pw2", 1, "maria", "second-password"); st != pwproto.StatusOK {
			return fmt.Errorf("status %v", st)
		}
		return nil
	})
	if st := rawAuth(t, tc, "pw2", 2, "maria", "second-password"); st != pwproto.StatusOK {
		t.Fatalf("secondary, cached: %v", st)
	}
	if c, _ := authStats(tc, "pw2"); c == 0 {
		t.Fatal("the secondary answered nothing from its cache")
	}
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserPasswd, Name: "maria", Password: "third-password"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the secondary drops the old password", func() error {
		if st := rawAuth(t, tc, "pw2", 3, "maria", "second-password"); st != pwproto.StatusDenied {
			return fmt.Errorf("old password on the secondary: %v", st)
		}
		return nil
	})

	// Disabled, then deleted: refused although cached.
	if err := login("third-password"); err != nil {
		t.Fatal(err)
	}
	disabled := directory.StateDisabled
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserMod, Name: "maria", Patch: &directory.Patch{State: &disabled}}); err != nil {
		t.Fatal(err)
	}
	if err := login("third-password"); !errors.Is(err, pwclient.ErrDenied) {
		t.Fatalf("disabled user: %v", err)
	}
	active := directory.StateActive
	adm.Do(pwadmin.Request{Op: pwadmin.OpUserMod, Name: "maria", Patch: &directory.Patch{State: &active}})
	if err := login("third-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserDel, Name: "maria"}); err != nil {
		t.Fatal(err)
	}
	if err := login("third-password"); !errors.Is(err, pwclient.ErrDenied) {
		t.Fatalf("deleted user: %v", err)
	}
	if n := tc.nodes["pw1"].srv.Stats().AuthCacheEntries; n != 0 {
		t.Errorf("%d cache entries left after the user was deleted", n)
	}
}

// A cached login still passes the lockout: a guesser who locked the
// account out does not get the owner's cached success either.
func TestAuthCacheKeepsLockout(t *testing.T) {
	tc := newTestCluster(t, false)
	tc.addUser(tc.admin("pw1"), "maria", 5003, "right-password")
	pc := tc.client()
	ctx := context.Background()
	if _, err := pc.Authenticate(ctx, "maria", "right-password", "203.0.113.5"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		pc.Authenticate(ctx, "maria", "guess", "198.51.100.9")
	}
	if _, err := pc.Authenticate(ctx, "maria", "right-password", "203.0.113.5"); !errors.Is(err, pwclient.ErrLockedOut) {
		t.Fatalf("cached password while locked out: %v", err)
	}
}

// Past the queue limit, logins are told "try later" at once. Verifying a
// real-cost hash takes tens of milliseconds on any machine (over a second
// under -race), while the whole burst is read in well under that: with one
// verifier and a queue of one, at most two of the burst can be taken.
func TestAuthQueueLimitAnswersTempFail(t *testing.T) {
	tc := newTestCluster(t, false)
	h, err := bcrypt.GenerateFromPassword([]byte("right-password"), directory.DefaultBcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.admin("pw1").Do(pwadmin.Request{Op: pwadmin.OpUserAdd,
		User: &directory.User{Name: "maria", UID: 5003, GID: 5000, Hash: string(h)}}); err != nil {
		t.Fatal(err)
	}
	tc.stop("pw1")
	tc.profile.Cluster.Passwd.AuthQueue = 1
	tc.authWorkers = 1
	tc.start("pw1")

	addr, _ := tc.profile.Listen("pw1", cluster.SvcPasswd)
	codec, _ := pwproto.NewCodec(tc.ring)
	conn, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const burst = 20
	for i := range burst {
		b, _ := codec.SealRequest(nil, &pwproto.Request{Op: pwproto.OpAuth, ID: uint64(100 + i), Name: "maria",
			Password: "guess", Client: fmt.Sprintf("198.51.100.%d", i)}, time.Now())
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	statuses := map[pwproto.Status]int{}
	buf := make([]byte, 2048)
	conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	for range burst {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("after %v: %v", statuses, err)
		}
		resp, err := codec.OpenResponse(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		statuses[resp.Status]++
	}
	if statuses[pwproto.StatusTempFail] < burst-2 || statuses[pwproto.StatusDenied] < 1 {
		t.Fatalf("answers %v: want at least %d TempFail and the taken ones Denied", statuses, burst-2)
	}
	// Refused for a full queue, or because the first verification's cost
	// (once measured) told that the rest could not be answered in time.
	if st := tc.nodes["pw1"].srv.Stats(); st.Dropped["auth_queue_full"]+st.Dropped["auth_overload"] < burst-2 {
		t.Errorf("refusal counts %v", st.Dropped)
	}
}

// When the verifiers cannot answer before the client stops waiting, a
// login that needs a hash check is told "try later" at once, while a
// cached login is still answered.
func TestAuthOverloadRefusesOnlyWhatNeedsAHashCheck(t *testing.T) {
	tc := newTestCluster(t, false)
	tc.addUser(tc.admin("pw1"), "maria", 5003, "maria-pw")
	tc.addUser(tc.admin("pw1"), "pedro", 5004, "pedro-pw")
	pc := tc.client()
	ctx := context.Background()
	if _, err := pc.Authenticate(ctx, "maria", "maria-pw", "203.0.113.5"); err != nil {
		t.Fatal(err)
	}
	// As if each verification took an hour: no queued login could be
	// answered within the passwd timeout.
	srv := tc.nodes["pw1"].srv
	srv.udp.verifyNanos.Store(int64(time.Hour))
	if _, err := pc.Authenticate(ctx, "pedro", "pedro-pw", "203.0.113.6"); !errors.Is(err, pwclient.ErrTempFail) {
		t.Fatalf("uncached login while overloaded: %v, want a temporary failure", err)
	}
	if _, err := pc.Authenticate(ctx, "maria", "maria-pw", "203.0.113.5"); err != nil {
		t.Fatalf("cached login while overloaded: %v", err)
	}
	st := srv.Stats()
	if st.Dropped["auth_overload"] != 1 || st.AuthCached != 1 || st.AuthVerified != 1 {
		t.Errorf("stats: dropped %v, cached %d, verified %d", st.Dropped, st.AuthCached, st.AuthVerified)
	}
	// Once verifications are cheap again, so is admission.
	srv.udp.verifyNanos.Store(int64(time.Millisecond))
	if _, err := pc.Authenticate(ctx, "pedro", "pedro-pw", "203.0.113.6"); err != nil {
		t.Fatalf("after the overload: %v", err)
	}
}
