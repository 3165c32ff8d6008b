package pwserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/pwadmin"
	"correo/src/pwclient"
	"correo/src/pwproto"
)

func TestLookupsAuthAndAdmin(t *testing.T) {
	tc := newTestCluster(t, false)
	adm := tc.admin("pw1")
	tc.addUser(adm, "juan", 5001, "s3cret-juan", "jperez", "juan.perez")
	tc.addUser(adm, "Zoe", 5002, "")
	pc := tc.client()
	ctx := context.Background()

	u, err := pc.LookupName(ctx, "JUAN")
	if err != nil {
		t.Fatal(err)
	}
	// letters placement: j is in the first half of the alphabet → s1; z → s2.
	if u.Name != "juan" || u.UID != 5001 || u.Storage != "s1" || u.Home != "/srv/s1/j/u/a/juan" || len(u.Aliases) != 2 {
		t.Errorf("LookupName(juan) = %+v", u)
	}
	if z, err := pc.LookupUID(ctx, 5002); err != nil || z.Name != "zoe" || z.Storage != "s2" || z.Home != "/srv/s2/z/o/e/zoe" {
		t.Errorf("LookupUID(5002) = %+v, %v", z, err)
	}
	addrs := []struct {
		addr string
		want string
	}{
		{"juan@correo.test", "juan"},
		{"JPerez@Other.Test", "juan"},
		{"juan.perez+lists@correo.test", "juan"},
		{"juan@elsewhere.test", ""},
		{"nobody@correo.test", ""},
		{"@correo.test", ""},
		{"juan", ""},
		{"../etc/passwd@correo.test", ""},
	}
	for _, a := range addrs {
		u, err := pc.LookupAddr(ctx, a.addr)
		if a.want == "" {
			if !errors.Is(err, pwclient.ErrNotFound) {
				t.Errorf("LookupAddr(%q) = %+v, %v; want not found", a.addr, u, err)
			}
			continue
		}
		if err != nil || u.Name != a.want {
			t.Errorf("LookupAddr(%q) = %+v, %v; want %s", a.addr, u, err, a.want)
		}
	}
	if _, err := pc.LookupName(ctx, "nobody"); !errors.Is(err, pwclient.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}

	if u, err := pc.Authenticate(ctx, "juan", "s3cret-juan", "192.0.2.1"); err != nil || u.Name != "juan" {
		t.Errorf("good password: %+v, %v", u, err)
	}
	if _, err := pc.Authenticate(ctx, "juan", "wrong", "192.0.2.1"); !errors.Is(err, pwclient.ErrDenied) {
		t.Errorf("bad password: %v", err)
	}
	if _, err := pc.Authenticate(ctx, "zoe", "", "192.0.2.1"); !errors.Is(err, pwclient.ErrDenied) {
		t.Errorf("user without password logged in: %v", err)
	}
	// Unknown users get the same answer as a wrong password.
	if _, err := pc.Authenticate(ctx, "ghost", "x", "192.0.2.1"); !errors.Is(err, pwclient.ErrDenied) {
		t.Errorf("unknown user: %v", err)
	}

	// A disabled user keeps its record but cannot log in.
	disabled := directory.StateDisabled
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserMod, Name: "juan", Patch: &directory.Patch{State: &disabled}}); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Authenticate(ctx, "juan", "s3cret-juan", "192.0.2.1"); !errors.Is(err, pwclient.ErrDenied) {
		t.Errorf("disabled user: %v", err)
	}
	if u, _ := pc.LookupName(ctx, "juan"); u.State != pwproto.StateDisabled {
		t.Errorf("state = %v, want disabled", u.State)
	}

	// The hash never leaves passwdd, not even through admin.
	resp, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserShow, Name: "juan"})
	if err != nil || resp.User.Hash != "(set)" {
		t.Errorf("show: %+v, %v", resp.User, err)
	}
	resp, _ = adm.Do(pwadmin.Request{Op: pwadmin.OpUserList, Max: 10})
	for _, u := range resp.Users {
		if strings.HasPrefix(u.Hash, "$") {
			t.Errorf("list leaked a hash for %s", u.Name)
		}
	}

	// Admin errors are clear and change nothing.
	bad := []struct {
		req  pwadmin.Request
		code string
	}{
		{pwadmin.Request{Op: pwadmin.OpUserAdd, User: &directory.User{Name: "juan", UID: 7000}}, pwadmin.CodeInvalid},
		{pwadmin.Request{Op: pwadmin.OpUserAdd, User: &directory.User{Name: "../x", UID: 7001}}, pwadmin.CodeInvalid},
		{pwadmin.Request{Op: pwadmin.OpUserAdd, User: &directory.User{Name: "ok", UID: 7002, Storage: "nowhere"}}, pwadmin.CodeInvalid},
		{pwadmin.Request{Op: pwadmin.OpUserDel, Name: "ghost"}, pwadmin.CodeNotFound},
		{pwadmin.Request{Op: pwadmin.OpAliasAdd, Name: "zoe", Alias: "jperez"}, pwadmin.CodeInvalid},
		{pwadmin.Request{Op: pwadmin.OpAliasDel, Alias: "nope"}, pwadmin.CodeNotFound},
		{pwadmin.Request{Op: "frobnicate"}, pwadmin.CodeInvalid},
		{pwadmin.Request{Op: pwadmin.OpImportChunk}, pwadmin.CodeInvalid},
	}
	_, seqBefore := tc.nodes["pw1"].store.Generation()
	for _, b := range bad {
		if _, err := adm.Do(b.req); !pwadmin.IsCode(err, b.code) {
			t.Errorf("%s %+v: err = %v, want code %s", b.req.Op, b.req, err, b.code)
		}
	}
	if _, seq := tc.nodes["pw1"].store.Generation(); seq != seqBefore {
		t.Errorf("refused admin commands changed the journal: seq %d → %d", seqBefore, seq)
	}

	ping, err := pc.Ping(ctx, pwclient.Primary)
	if err != nil || ping.Role != pwproto.RolePrimary || ping.Users != 2 {
		t.Errorf("ping = %+v, %v", ping, err)
	}
}

func TestEnumeratePagesEveryone(t *testing.T) {
	tc := newTestCluster(t, false)
	adm := tc.admin("pw1")
	var users []directory.User
	for i := 0; i < 500; i++ {
		users = append(users, directory.User{Name: "user" + itoa(i), UID: uint32(10000 + i), GID: 5000,
			Gecos: strings.Repeat("g", 40), Shell: "/bin/sh"})
	}
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpImportBegin}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpImportChunk, Chunk: pwadmin.UsersChunk(users)}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpImportCommit}); err != nil {
		t.Fatal(err)
	}
	pc := tc.client()
	seen := map[string]bool{}
	var cursor uint64
	pages := 0
	for {
		page, next, err := pc.Enumerate(context.Background(), cursor, 64)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, u := range page {
			if seen[u.Name] {
				t.Fatalf("%s enumerated twice", u.Name)
			}
			seen[u.Name] = true
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	if len(seen) != 500 || pages < 8 {
		t.Fatalf("enumerated %d users in %d pages", len(seen), pages)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// rawExchange sends one datagram and returns the answer, or nil when the
// server stays silent for the wait.
func rawExchange(t *testing.T, addr string, b []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(b)
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func TestBadDatagramsGetNoAnswer(t *testing.T) {
	tc := newTestCluster(t, false)
	tc.addUser(tc.admin("pw1"), "juan", 5001, "")
	addr, _ := tc.profile.Listen("pw1", cluster.SvcPasswd)
	codec, _ := pwproto.NewCodec(tc.ring)
	other, _ := keyfile.NewKey(1)
	otherCodec, _ := pwproto.NewCodec(&keyfile.Ring{Keys: []keyfile.Key{other}})
	now := time.Now()
	good := func(id uint64, at time.Time) []byte {
		b, err := codec.SealRequest(nil, &pwproto.Request{Op: pwproto.OpLookupName, ID: id, Name: "juan"}, at)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A valid request is answered: the baseline for the silent cases.
	if rawExchange(t, addr.String(), good(1, now), time.Second) == nil {
		t.Fatal("valid request got no answer")
	}
	replayed := good(2, now)
	if rawExchange(t, addr.String(), replayed, time.Second) == nil {
		t.Fatal("first copy got no answer")
	}
	flipped := good(3, now)
	flipped[len(flipped)-5] ^= 1
	forged, _ := otherCodec.SealRequest(nil, &pwproto.Request{Op: pwproto.OpLookupName, ID: 4, Name: "juan"}, now)
	asResponse, _ := codec.SealResponse(nil, &pwproto.Response{Op: pwproto.OpLookupName, ID: 5, Status: pwproto.StatusOK}, now)
	cases := map[string][]byte{
		"replayed":            replayed,
		"stale":               good(6, now.Add(-10*time.Minute)),
		"future":              good(7, now.Add(10*time.Minute)),
		"bit flipped":         flipped,
		"other cluster key":   forged,
		"response as request": asResponse,
		"truncated":           good(8, now)[:20],
		"garbage":             []byte(strings.Repeat("USER root\r\nPASS toor\r\n", 5)),
		"empty":               {},
		"oversized":           make([]byte, 1500),
	}
	for name, b := range cases {
		if ans := rawExchange(t, addr.String(), b, 300*time.Millisecond); ans != nil {
			t.Errorf("%s: got an answer of %d bytes, want silence", name, len(ans))
		}
	}
	// The server still serves, and counted every drop by reason.
	if rawExchange(t, addr.String(), good(9, time.Now()), time.Second) == nil {
		t.Fatal("server stopped answering after bad datagrams")
	}
	st := tc.nodes["pw1"].srv.Stats()
	for _, reason := range []string{"replay", "stale", "auth", "direction", "short", "magic"} {
		if st.Dropped[reason] == 0 {
			t.Errorf("drop reason %q not counted: %v", reason, st.Dropped)
		}
	}
}

func TestLockout(t *testing.T) {
	tc := newTestCluster(t, false)
	tc.addUser(tc.admin("pw1"), "maria", 5003, "right-password")
	pc := tc.client()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := pc.Authenticate(ctx, "maria", "guess", "198.51.100.9"); !errors.Is(err, pwclient.ErrDenied) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	if _, err := pc.Authenticate(ctx, "maria", "guess", "198.51.100.9"); !errors.Is(err, pwclient.ErrLockedOut) {
		t.Fatalf("third failure: %v, want locked out", err)
	}
	// While locked, even the right password is refused.
	if _, err := pc.Authenticate(ctx, "maria", "right-password", "203.0.113.5"); !errors.Is(err, pwclient.ErrLockedOut) {
		t.Fatalf("right password while locked: %v", err)
	}
	if st := tc.nodes["pw1"].srv.Stats(); st.AuthLocked < 2 || st.AuthDenied < 2 {
		t.Errorf("stats: %+v", st)
	}
}

func TestSecondaryFollowsAndRefusesWrites(t *testing.T) {
	tc := newTestCluster(t, true)
	adm := tc.admin("pw1")
	tc.addUser(adm, "ana", 6001, "", "anita")
	sec := tc.nodes["pw2"].store
	eventually(t, "secondary loads the snapshot", func() error {
		if _, ok := sec.Index().ByName("ana"); !ok {
			return errors.New("ana not replicated")
		}
		return nil
	})
	// Changes after the snapshot stream as journal entries.
	tc.addUser(adm, "bruno", 6002, "")
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserDel, Name: "ana"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "secondary follows the journal", func() error {
		if _, ok := sec.Index().ByName("bruno"); !ok {
			return errors.New("bruno missing")
		}
		if _, ok := sec.Index().ByName("ana"); ok {
			return errors.New("ana still there")
		}
		pe, ps := tc.nodes["pw1"].store.Generation()
		se, ss := sec.Generation()
		if pe != se || ps != ss {
			return errors.New("generations differ")
		}
		return nil
	})
	// Following, it knows who does not exist; a stream silent past a
	// heartbeat (a link that flapped: TCP still retransmitting) vouches
	// for nothing.
	if sec := tc.nodes["pw2"].srv; !sec.inStep(time.Now()) || sec.inStep(time.Now().Add(heartbeatEvery+heartbeatSlack+time.Second)) {
		t.Fatal("inStep: want true now and false after a missed heartbeat")
	}
	if resp := tc.nodes["pw2"].srv.answer(&pwproto.Request{Op: pwproto.OpLookupName, Name: "nobody"}); resp.Status != pwproto.StatusNotFound {
		t.Fatalf("following secondary on an unknown name: %v, want NotFound", resp.Status)
	}
	// Writes to the secondary name the primary.
	_, err := tc.admin("pw2").Do(pwadmin.Request{Op: pwadmin.OpUserAdd, User: &directory.User{Name: "x", UID: 9}})
	var e *pwadmin.Error
	if !errors.As(err, &e) || e.Code != pwadmin.CodeNotPrimary || !strings.Contains(e.Msg, "pw1 (127.0.0.1:") {
		t.Fatalf("write to secondary: %v", err)
	}
	// A bulk import on the primary reaches the secondary as a new snapshot.
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpImportBegin, Replace: true}); err != nil {
		t.Fatal(err)
	}
	adm.Do(pwadmin.Request{Op: pwadmin.OpImportChunk, Chunk: pwadmin.UsersChunk([]directory.User{{Name: "carla", UID: 7001, GID: 5000}})})
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpImportCommit}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "secondary resyncs after an import", func() error {
		if _, ok := sec.Index().ByName("carla"); !ok || sec.Index().Len() != 1 {
			return errors.New("import not replicated")
		}
		return nil
	})

	// The secondary answers reads on its own once the primary is gone.
	tc.stop("pw1")
	sa, _ := tc.profile.Listen("pw2", cluster.SvcPasswd)
	codec, _ := pwproto.NewCodec(tc.ring)
	b, _ := codec.SealRequest(nil, &pwproto.Request{Op: pwproto.OpLookupName, ID: 77, Name: "carla"}, time.Now())
	ans := rawExchange(t, sa.String(), b, time.Second)
	if ans == nil {
		t.Fatal("secondary silent without the primary")
	}
	resp, err := codec.OpenResponse(ans)
	if err != nil || resp.Status != pwproto.StatusOK || resp.User.Name != "carla" {
		t.Fatalf("secondary answer: %+v, %v", resp, err)
	}
	// ...but cannot say that a user does not exist: it may have been
	// added on the primary since the link dropped. (Restarted, so that it
	// has certainly lost the stream: the stopped in-process primary's
	// sessions live on.)
	tc.stop("pw2")
	tc.start("pw2")
	eventually(t, "secondary without its primary tempfails unknown names", func() error {
		b, _ := codec.SealRequest(nil, &pwproto.Request{Op: pwproto.OpLookupName, ID: 78, Name: "added-meanwhile"}, time.Now())
		ans := rawExchange(t, sa.String(), b, time.Second)
		if ans == nil {
			return errors.New("no answer")
		}
		resp, err := codec.OpenResponse(ans)
		if err != nil {
			return err
		}
		if resp.Status != pwproto.StatusTempFail {
			return fmt.Errorf("status %v, want TempFail", resp.Status)
		}
		return nil
	})
}

func TestSecondaryWithoutDataSaysTempFail(t *testing.T) {
	tc := newTestCluster(t, true)
	tc.stop("pw1")
	tc.stop("pw2")
	// A fresh secondary whose primary is down has nothing to answer from.
	tc.nodes["pw2"] = nil
	delete(tc.nodes, "pw2")
	dirPath := tc.dir + "/pw2-fresh"
	store, err := directory.Open(dirPath)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	h, _ := tc.profile.Host("pw2")
	srv, _ := New(Config{Profile: tc.profile, Host: h, Store: store, StateDir: dirPath, Ring: tc.ring, Log: quietLog()})
	req := &pwproto.Request{Op: pwproto.OpLookupName, Name: "x"}
	if resp := srv.answer(req); resp.Status != pwproto.StatusTempFail {
		t.Fatalf("unsynced secondary answered %v", resp.Status)
	}
	req.Op = pwproto.OpPing
	if resp := srv.answer(req); resp.Status != pwproto.StatusOK || resp.Ping.Role != pwproto.RoleSecondary {
		t.Fatalf("ping on unsynced secondary: %+v", resp)
	}
}

// TestAuthRetransmitCountsOnce sends one authentication twice, as a client
// retransmits it (same id, new nonce): both copies get the answer, but
// the wrong password counts as one failure.
func TestAuthRetransmitCountsOnce(t *testing.T) {
	tc := newTestCluster(t, false)
	tc.addUser(tc.admin("pw1"), "lola", 5004, "right")
	addr, _ := tc.profile.Listen("pw1", cluster.SvcPasswd)
	codec, _ := pwproto.NewCodec(tc.ring)
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := &pwproto.Request{Op: pwproto.OpAuth, ID: 42, Name: "lola", Password: "wrong", Client: "192.0.2.50"}
	for i := 0; i < 2; i++ {
		b, _ := codec.SealRequest(nil, req, time.Now())
		c.Write(b)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := codec.OpenResponse(buf[:n])
	if err != nil || resp.ID != 42 || resp.Status != pwproto.StatusDenied {
		t.Fatalf("answer: %+v, %v", resp, err)
	}
	// A third copy after the answer gets the same answer again.
	b, _ := codec.SealRequest(nil, req, time.Now())
	c.Write(b)
	n, err = c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := codec.OpenResponse(buf[:n]); err != nil || resp.Status != pwproto.StatusDenied || resp.ID != 42 {
		t.Fatalf("repeated answer: %+v, %v", resp, err)
	}
	st := tc.nodes["pw1"].srv.Stats()
	if st.AuthDenied != 1 || st.Dropped["auth_retransmit"] != 2 {
		t.Fatalf("denied %d, retransmits %d; want 1 and 2", st.AuthDenied, st.Dropped["auth_retransmit"])
	}
}
