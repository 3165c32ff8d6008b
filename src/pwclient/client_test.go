package pwclient

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/src/cluster"
	"correo/src/pwproto"
)

const testTimeout = 400 * time.Millisecond

func newClient(t *testing.T, prim, sec *fakeServer, timeout time.Duration) *Client {
	t.Helper()
	cfg := Config{Primary: prim.addr(), Ring: testRing(), Timeout: timeout}
	if sec != nil {
		cfg.Secondary = sec.addr()
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond for up to limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("not within %v: %s", limit, what)
}

func TestEveryOp(t *testing.T) {
	p := newFake(t, pwproto.RolePrimary)
	s := newFake(t, pwproto.RoleSecondary)
	c := newClient(t, p, s, testTimeout)
	ctx := context.Background()

	if u, err := c.LookupName(ctx, "juan"); err != nil || u.UID != 1001 || u.Storage != "store1" || u.Aliases[0] != "jperez" {
		t.Fatalf("LookupName: %+v %v", u, err)
	}
	if _, err := c.LookupName(ctx, "nadie"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nadie") {
		t.Fatalf("LookupName unknown: %v", err)
	}
	if u, err := c.LookupUID(ctx, 1002); err != nil || u.Name != "ana" || u.State != pwproto.StateMoving {
		t.Fatalf("LookupUID: %+v %v", u, err)
	}
	if _, err := c.LookupUID(ctx, 5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LookupUID unknown: %v", err)
	}
	if u, err := c.LookupAddr(ctx, "jperez@correo.test"); err != nil || u.Name != "juan" {
		t.Fatalf("LookupAddr: %+v %v", u, err)
	}
	if u, err := c.Authenticate(ctx, "juan", "pw", "192.0.2.7"); err != nil || u.Name != "juan" {
		t.Fatalf("Authenticate: %+v %v", u, err)
	}
	for name, want := range map[string]error{"juan": ErrDenied, "nobody": ErrDenied, "locked": ErrLockedOut} {
		if _, err := c.Authenticate(ctx, name, "wrong", "192.0.2.7"); !errors.Is(err, want) {
			t.Fatalf("Authenticate %s: %v, want %v", name, err, want)
		}
	}
	var all []string
	for cur, pages := uint64(0), 0; ; pages++ {
		us, next, err := c.Enumerate(ctx, cur, 1)
		if err != nil || pages > 5 {
			t.Fatalf("Enumerate: %v after %d pages", err, pages)
		}
		for _, u := range us {
			all = append(all, u.Name)
		}
		if next == 0 {
			break
		}
		cur = next
	}
	if fmt.Sprint(all) != "[juan ana]" {
		t.Fatalf("Enumerate: %v", all)
	}
	if pi, err := c.Ping(ctx, Primary); err != nil || pi.Role != pwproto.RolePrimary || pi.Seq != 42 || pi.Users != 2 {
		t.Fatalf("Ping primary: %+v %v", pi, err)
	}
	if pi, err := c.Ping(ctx, Secondary); err != nil || pi.Role != pwproto.RoleSecondary {
		t.Fatalf("Ping secondary: %+v %v", pi, err)
	}
	if c.Current() != Primary || s.ops[pwproto.OpLookupName].Load() != 0 {
		t.Fatal("a ping of the secondary moved traffic to it")
	}
	if st := c.Stats(); st.Failovers != 0 || st.Retransmits != 0 || st.DroppedBad != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBadInputIsNotAFailover(t *testing.T) {
	p := newFake(t, pwproto.RolePrimary)
	s := newFake(t, pwproto.RoleSecondary)
	c := newClient(t, p, s, testTimeout)
	_, err := c.LookupName(context.Background(), strings.Repeat("x", pwproto.MaxName+1))
	if !errors.Is(err, pwproto.ErrTooBig) || errors.Is(err, ErrNoServer) {
		t.Fatalf("got %v", err)
	}
	if _, err := c.Authenticate(context.Background(), "juan", "a\x00b", "192.0.2.7"); err == nil || errors.Is(err, ErrNoServer) {
		t.Fatalf("NUL in password: %v", err)
	}
	if c.Current() != Primary || p.received.Load() != 0 {
		t.Fatal("bad input reached a server or moved traffic")
	}
}

func TestNoSecondaryConfigured(t *testing.T) {
	p := newFake(t, pwproto.RolePrimary)
	c := newClient(t, p, nil, testTimeout)
	if _, err := c.Ping(context.Background(), Secondary); err == nil {
		t.Fatal("ping of a missing secondary")
	}
	if _, err := New(Config{Ring: testRing()}); err == nil {
		t.Fatal("no primary accepted")
	}
	if _, err := New(Config{Primary: p.addr()}); err == nil {
		t.Fatal("no ring accepted")
	}
}

func TestFailoverAndReturn(t *testing.T) {
	p := newFake(t, pwproto.RolePrimary)
	s := newFake(t, pwproto.RoleSecondary)
	c := newClient(t, p, s, testTimeout)
	ctx := context.Background()
	if _, err := c.LookupName(ctx, "juan"); err != nil {
		t.Fatal(err)
	}

	p.mode.Store(modeSilent)
	start := time.Now()
	u, err := c.LookupName(ctx, "juan")
	if err != nil || u.Name != "juan" {
		t.Fatalf("failover lookup: %v", err)
	}
	if d := time.Since(start); d > 2*testTimeout+time.Second {
		t.Fatalf("secondary's answer took %v", d)
	}
	st := c.Stats()
	if c.Current() != Secondary || st.Failovers != 1 || st.Retransmits < 1 {
		t.Fatalf("after failover: current %v, stats %+v", c.Current(), st)
	}
	// It stays there: further lookups never go to the silent primary.
	before := p.ops[pwproto.OpLookupUID].Load()
	for range 5 {
		if _, err := c.LookupUID(ctx, 1001); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.ops[pwproto.OpLookupUID].Load(); got != before {
		t.Fatalf("primary asked %d times while on the secondary", got-before)
	}
	// The primary answers again: the probe takes the client back.
	p.mode.Store(modeNormal)
	eventually(t, probeInterval+2*testTimeout+2*time.Second, "back on the primary", func() bool { return c.Current() == Primary })
	before = s.ops[pwproto.OpLookupUID].Load()
	if _, err := c.LookupUID(ctx, 1001); err != nil {
		t.Fatal(err)
	}
	if s.ops[pwproto.OpLookupUID].Load() != before {
		t.Fatal("lookup went to the secondary after the return")
	}
	if st := c.Stats(); st.Returns != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A closed port draws ICMP port unreachable: the client fails over at once
// instead of waiting for the timeout, and returns when the port reopens.
func TestRefusedFailsOverFast(t *testing.T) {
	p := newFake(t, pwproto.RolePrimary)
	s := newFake(t, pwproto.RoleSecondary)
	const long = 5 * time.Second
	c := newClient(t, p, s, long)
	ctx := context.Background()
	if _, err := c.LookupName(ctx, "juan"); err != nil {
		t.Fatal(err)
	}
	p.stop()
	start := time.Now()
	for range 3 {
		if _, err := c.LookupName(ctx, "juan"); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d >= long {
		t.Fatalf("refused primary: answers took %v, as long as the timeout", d)
	}
	if c.Current() != Secondary {
		t.Fatal("not on the secondary")
	}
	p2 := p.restartOn(t)
	eventually(t, probeInterval+3*time.Second, "back on the restarted primary", func() bool { return c.Current() == Primary })
	if _, err := c.LookupName(ctx, "juan"); err != nil || p2.ops[pwproto.OpLookupName].Load() != 1 {
		t.Fatalf("after return: %v, primary saw %d lookups", err, p2.ops[pwproto.OpLookupName].Load())
	}
}

func TestBothSilent(t *testing.T) {
	p := newFake(t, pwproto.RolePrimary)
	s := newFake(t, pwproto.RoleSecondary)
	p.mode.Store(modeSilent)
	s.mode.Store(modeSilent)
	c := newClient(t, p, s, testTimeout)
	start := time.Now()
	_, err := c.LookupName(context.Background(), "juan")
	d := time.Since(start)
	if !errors.Is(err, ErrNoServer) {
		t.Fatalf("got %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, p.addr().String()) || !strings.Contains(msg, s.addr().String()) {
		t.Fatalf("error does not name both servers: %s", msg)
	}
	t.Logf("after %v: %s", d, msg)
	if d > 2*testTimeout+time.Second || d < 2*testTimeout*9/10 {
		t.Fatalf("gave up after %v, want about 2×%v", d, testTimeout)
	}
	// Each server got the request and its retransmission.
	if p.received.Load() != 2 || s.received.Load() != 2 || c.Stats().Retransmits != 2 {
		t.Fatalf("primary got %d, secondary %d, stats %+v", p.received.Load(), s.received.Load(), c.Stats())
	}
	if c.Current() != Primary {
		t.Fatal("switched without an answer")
	}
}

func TestRetransmitNewNonce(t *testing.T) {
	p := newFake(t, pwproto.RolePrimary)
	p.mode.Store(modeDropOnce) // the fake's ReplayFilter fails the test on a replayed nonce
	c := newClient(t, p, nil, testTimeout)
	if _, err := c.LookupName(context.Background(), "juan"); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Retransmits != 1 || p.received.Load() != 2 {
		t.Fatalf("stats %+v, server received %d", st, p.received.Load())
	}
}

func TestJunkIgnored(t *testing.T) {
	p := newFake(t, pwproto.RolePrimary)
	p.mode.Store(modeJunkThen)
	c := newClient(t, p, nil, testTimeout)
	for range 3 {
		if u, err := c.LookupName(context.Background(), "juan"); err != nil || u.Name != "juan" {
			t.Fatalf("%+v %v", u, err)
		}
	}
	eventually(t, time.Second, "junk counted", func() bool {
		st := c.Stats()
		return st.DroppedBad == 9 && st.DroppedUnknownID == 3
	})
	// Junk alone is no answer.
	p.mode.Store(modeJunk)
	if _, err := c.LookupName(context.Background(), "juan"); !errors.Is(err, ErrNoServer) {
		t.Fatalf("junk only: %v", err)
	}
}

func TestTempFailFromSecondary(t *testing.T) {
	p := newFake(t, pwproto.RolePrimary)
	s := newFake(t, pwproto.RoleSecondary)
	p.mode.Store(modeSilent)
	s.mode.Store(modeTempFail)
	c := newClient(t, p, s, testTimeout)
	if _, err := c.LookupName(context.Background(), "juan"); !errors.Is(err, ErrTempFail) {
		t.Fatalf("got %v", err)
	}
}

func TestSlowPrimaryLateAnswer(t *testing.T) {
	// The primary answers after the timeout but before the secondary
	// would: whichever authentic answer comes first is used.
	p := newFake(t, pwproto.RolePrimary)
	s := newFake(t, pwproto.RoleSecondary)
	p.delay.Store(int64(testTimeout + 50*time.Millisecond))
	s.delay.Store(int64(time.Second))
	c := newClient(t, p, s, testTimeout)
	if u, err := c.LookupName(context.Background(), "juan"); err != nil || u.Name != "juan" {
		t.Fatalf("%v", err)
	}
	if c.Current() != Primary {
		t.Fatal("a late answer from the primary caused a failover")
	}
}

func TestConcurrentRequests(t *testing.T) {
	p := newFake(t, pwproto.RolePrimary)
	c := newClient(t, p, nil, 5*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var (
				u    pwproto.User
				err  error
				want string
			)
			switch i % 3 {
			case 0:
				u, err, want = lookupName(c, "juan")
			case 1:
				u, err = c.LookupUID(context.Background(), 1002)
				want = "ana"
			case 2:
				_, err = c.LookupName(context.Background(), fmt.Sprint("x", i))
				if errors.Is(err, ErrNotFound) && strings.Contains(err.Error(), fmt.Sprint("x", i)) {
					return
				}
				errs <- fmt.Errorf("request %d: %v", i, err)
				return
			}
			if err != nil || u.Name != want {
				errs <- fmt.Errorf("request %d: got %q, %v; want %q", i, u.Name, err, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := c.Stats(); st.Requests != 1000 || st.DroppedUnknownID > st.Retransmits {
		t.Fatalf("stats %+v", st)
	}
}

func lookupName(c *Client, n string) (pwproto.User, error, string) {
	u, err := c.LookupName(context.Background(), n)
	return u, err, n
}

func TestContextCancel(t *testing.T) {
	p := newFake(t, pwproto.RolePrimary)
	p.mode.Store(modeSilent)
	c := newClient(t, p, nil, 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, err := c.LookupName(ctx, "juan"); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := c.LookupName(ctx, "juan"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	c.mu.Lock()
	n := len(c.pending)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d pending entries left behind", n)
	}
}

func TestCloseWhilePending(t *testing.T) {
	base := runtime.NumGoroutine()
	p := newFake(t, pwproto.RolePrimary)
	s := newFake(t, pwproto.RoleSecondary)
	p.mode.Store(modeSilent)
	c, err := New(Config{Primary: p.addr(), Secondary: s.addr(), Ring: testRing(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Put the client on the secondary so the prober runs too.
	c.active.Store(int32(Secondary))
	c.startProbe()
	s.mode.Store(modeSilent)
	errs := make(chan error, 50)
	for range 50 {
		go func() {
			_, err := c.LookupName(context.Background(), "juan")
			errs <- err
		}()
	}
	eventually(t, 2*time.Second, "requests pending", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.pending) == 50
	})
	c.Close()
	for range 50 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("pending request: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("pending request did not return after Close")
		}
	}
	if _, err := c.LookupName(context.Background(), "juan"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
	c.Close() // twice is fine
	p.stop()
	s.stop()
	eventually(t, 3*time.Second, "goroutines settle", func() bool { return runtime.NumGoroutine() <= base+2 })
}

// FromProfile opens its sockets toward the profile's servers: loopback
// addresses here, since a test never sends toward a real network.
func TestFromProfile(t *testing.T) {
	src := `[cluster]
name = "t"
domains = ["t.example"]
network = "127.0.0.0/8"
key_file = "KEY"
layout = "hash2"
placement = "least-users"

[cluster.passwd]
udp_port = 7001
tcp_port = 7002
timeout = "3s"

[[host]]
name = "pw1"
address = "127.0.0.5"
roles = ["passwd-primary"]

[[host]]
name = "pw2"
address = "127.0.0.6"
roles = ["passwd-secondary"]

[[host]]
name = "store1"
address = "127.0.0.31"
roles = ["storage"]
[host.storage]
data_dir = "/srv/mail"
`
	prof, err := cluster.Parse([]byte(src), "t.toml", cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := FromProfile(prof, testRing(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.servers[Primary].addr != netip.MustParseAddrPort("127.0.0.5:7001") ||
		c.servers[Secondary].addr != netip.MustParseAddrPort("127.0.0.6:7001") || c.timeout != 3*time.Second {
		t.Fatalf("primary %v secondary %v timeout %v", c.servers[Primary].addr, c.servers[Secondary].addr, c.timeout)
	}
	// Without a secondary, and with the default timeout.
	src = strings.Replace(src, `roles = ["passwd-secondary"]`, `roles = ["dns"]`, 1)
	src = strings.Replace(src, "timeout = \"3s\"\n", "", 1)
	prof, err = cluster.Parse([]byte(src), "t.toml", cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := FromProfile(prof, testRing(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if c2.servers[Secondary] != nil || c2.timeout != DefaultTimeout {
		t.Fatalf("secondary %v timeout %v", c2.servers[Secondary], c2.timeout)
	}
}

// BenchmarkLookupParallel is the client's share of a lookup over loopback
// against the in-test fake server (not passwdd).
func BenchmarkLookupParallel(b *testing.B) {
	p := newFake(b, pwproto.RolePrimary)
	c, err := New(Config{Primary: p.addr(), Ring: testRing()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.LookupName(context.Background(), "juan"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
