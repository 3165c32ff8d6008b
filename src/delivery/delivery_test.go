package delivery_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/src/delivery"
	"correo/src/directory"
	"correo/src/lmtpd"
	"correo/src/pwproto"
)

// The tests deliver to real LMTP servers (package lmtpd, in process) on
// two storage hosts, st1 at 127.0.0.1 and st2 at 127.0.0.2, with users in
// a real passwdd. Each test has a cluster of its own (directory, key, free
// ports), so they run in parallel, except TestHostDown, which times
// refusals and cancellations.

type env struct {
	t    *testing.T
	c    *clustertest.Cluster
	logs *clustertest.SyncBuffer
	srv  map[string]*lmtpd.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := clustertest.NewCluster(t, clustertest.Spec{Hosts: []clustertest.HostSpec{
		{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}},
		{Name: "st2", Address: "127.0.0.2", Roles: []string{"storage"}},
	}})
	c.StartPasswdd(t, "st1")
	c.AddUsers(t,
		directory.User{Name: "ana", Storage: "st1", Aliases: []string{"anita"}},
		directory.User{Name: "bob", Storage: "st1"},
		directory.User{Name: "eva", Storage: "st2"},
		directory.User{Name: "fede", Storage: "st1", State: directory.StateDisabled},
		directory.User{Name: "dario", Storage: "st2", State: directory.StateMoving},
	)
	e := &env{t: t, c: c, logs: &clustertest.SyncBuffer{}, srv: map[string]*lmtpd.Server{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- log:\n%s", e.logs.String())
		}
	})
	return e
}

func (e *env) log() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// serve runs host's LMTP server until stop is called (or the test ends).
func (e *env) serve(host string) (stop func()) {
	t := e.t
	h, _ := e.c.Profile.Host(host)
	srv, err := lmtpd.New(lmtpd.Config{Profile: e.c.Profile, Host: h, Users: e.c.Client(t), SpoolDir: t.TempDir(), Log: e.log()})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := e.c.Profile.Listen(host, "lmtp")
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTCP(ln)
	e.srv[host] = srv
	t.Cleanup(func() { srv.Close() })
	return func() { srv.Close() }
}

func (e *env) deliverer(cfg delivery.Config) *delivery.Deliverer {
	cfg.Profile = e.c.Profile
	if cfg.Log == nil {
		cfg.Log = e.log()
	}
	d, err := delivery.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { d.Close() })
	return d
}

func (e *env) count(host, user string) int {
	ents, _ := os.ReadDir(filepath.Join(e.c.Maildir(host, user), "new"))
	return len(ents)
}

const msg = "From: x@example.org\nSubject: test\n\nhello\n"

func TestSeveralHostsOneEnvelope(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.serve("st1")
	e.serve("st2")
	d := e.deliverer(delivery.Config{Users: e.c.Client(t)})
	rcpts := []string{"ana@correo.test", "eva@correo.test", "nobody@correo.test", "bob@correo.test",
		"x@elsewhere.test", "fede@correo.test", "dario@correo.test", "anita+tag@correo.test", "ana@correo.test", "bad address"}
	res := d.Deliver(context.Background(), delivery.Envelope{From: "x@example.org", To: rcpts}, strings.NewReader(msg))
	want := []struct {
		status delivery.Status
		code   int
		enh    string
		host   string
	}{
		{delivery.Delivered, 250, "2.0.0", "st1"},
		{delivery.Delivered, 250, "2.0.0", "st2"},
		{delivery.Permanent, 550, "5.1.1", ""},
		{delivery.Delivered, 250, "2.0.0", "st1"},
		{delivery.Permanent, 550, "5.1.2", ""},
		{delivery.Permanent, 550, "5.2.1", ""},
		{delivery.Temporary, 451, "4.2.0", ""},
		{delivery.Delivered, 250, "2.0.0", "st1"},
		{delivery.Delivered, 250, "2.0.0", "st1"},
		{delivery.Permanent, 501, "5.1.3", ""},
	}
	if len(res) != len(rcpts) {
		t.Fatalf("%d results for %d recipients", len(res), len(rcpts))
	}
	for i, w := range want {
		r := res[i]
		if r.Rcpt != rcpts[i] || r.Status != w.status || r.Code != w.code || r.Enhanced != w.enh || r.Host != w.host {
			t.Errorf("result %d: %v; want %v %d %s host %q", i, r, w.status, w.code, w.enh, w.host)
		}
	}
	// ana was named three times (twice directly, once by alias): one copy.
	if e.count("st1", "ana") != 1 || e.count("st1", "bob") != 1 || e.count("st2", "eva") != 1 {
		t.Errorf("messages: ana %d bob %d eva %d", e.count("st1", "ana"), e.count("st1", "bob"), e.count("st2", "eva"))
	}
}

// TestHostDown: a host with nothing listening, one that accepts and never
// greets, and a cancelled context all give Temporary results, quickly.
func TestHostDown(t *testing.T) {
	e := newEnv(t)
	e.serve("st1")
	d := e.deliverer(delivery.Config{Users: e.c.Client(t), IOTimeout: 500 * time.Millisecond, DialTimeout: time.Second})
	env := delivery.Envelope{From: "x@example.org", To: []string{"eva@correo.test", "ana@correo.test"}}
	start := time.Now()
	res := d.Deliver(context.Background(), env, strings.NewReader(msg))
	if res[0].Status != delivery.Temporary || res[0].Enhanced != "4.4.1" || res[0].Host != "st2" || !strings.Contains(res[0].Text, "connection refused") {
		t.Errorf("host down: %v", res[0])
	}
	if res[1].Status != delivery.Delivered {
		t.Errorf("the host that is up: %v", res[1])
	}
	t.Logf("refused: %v", time.Since(start))

	// A black hole: the kernel completes the handshake, nobody answers.
	addr, _ := e.c.Profile.Listen("st2", "lmtp")
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	start = time.Now()
	res = d.Deliver(context.Background(), env, strings.NewReader(msg))
	took := time.Since(start)
	if res[0].Status != delivery.Temporary || res[1].Status != delivery.Delivered {
		t.Errorf("silent host: %v / %v", res[0], res[1])
	}
	if took > 10*time.Second {
		t.Errorf("a silent host held the delivery for %v (I/O timeout 500ms)", took)
	}
	t.Logf("silent host: %v: %v", took, res[0])

	// The caller gives up: the context ends the wait.
	d2 := e.deliverer(delivery.Config{Users: e.c.Client(t), IOTimeout: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	res = d2.Deliver(ctx, delivery.Envelope{From: "", To: []string{"eva@correo.test"}}, strings.NewReader(msg))
	if res[0].Status != delivery.Temporary || time.Since(start) > 5*time.Second {
		t.Errorf("cancelled: %v after %v", res[0], time.Since(start))
	}
}

// TestPoolReuse: consecutive deliveries share one connection; one the
// server dropped meanwhile is replaced without failing the delivery.
func TestPoolReuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stop := e.serve("st1")
	d := e.deliverer(delivery.Config{Users: e.c.Client(t)})
	env := delivery.Envelope{From: "x@example.org", To: []string{"ana@correo.test", "bob@correo.test"}}
	for i := 0; i < 5; i++ {
		if r := d.Deliver(context.Background(), env, strings.NewReader(msg)); r[0].Status != delivery.Delivered || r[1].Status != delivery.Delivered {
			t.Fatalf("delivery %d: %v", i, r)
		}
	}
	if s := d.Stats(); s.Dials != 1 || s.Reuses != 4 {
		t.Errorf("after 5 deliveries: %+v, want 1 dial and 4 reuses", s)
	}
	// The server restarts: the pooled connection is dead.
	stop()
	e.serve("st1")
	if r := d.Deliver(context.Background(), env, strings.NewReader(msg)); r[0].Status != delivery.Delivered {
		t.Fatalf("after a server restart: %v", r)
	}
	if s := d.Stats(); s.Dials != 2 {
		t.Errorf("after the restart: %+v, want a second dial", s)
	}
	if e.count("st1", "ana") != 6 {
		t.Errorf("ana has %d messages, want 6", e.count("st1", "ana"))
	}
}

// TestRedirect: without a directory every recipient goes to the fallback
// host, which names the right one; the Deliverer follows once.
func TestRedirect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.serve("st1")
	e.serve("st2")
	d := e.deliverer(delivery.Config{Fallback: "st1"})
	res := d.Deliver(context.Background(), delivery.Envelope{From: "x@example.org", To: []string{"eva@correo.test", "ana@correo.test", "nobody@correo.test"}}, strings.NewReader(msg))
	if res[0].Status != delivery.Delivered || res[0].Host != "st2" {
		t.Errorf("eva: %v", res[0])
	}
	if res[1].Status != delivery.Delivered || res[1].Host != "st1" {
		t.Errorf("ana: %v", res[1])
	}
	if res[2].Status != delivery.Permanent || res[2].Code != 550 {
		t.Errorf("nobody: %v", res[2])
	}
	if e.count("st2", "eva") != 1 {
		t.Error("eva's message did not arrive")
	}
}

// TestUnixSocket: the local host is reached through its socket.
func TestUnixSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h, _ := e.c.Profile.Host("st1")
	srv, err := lmtpd.New(lmtpd.Config{Profile: e.c.Profile, Host: h, Users: e.c.Client(t), Log: e.log()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	sock := filepath.Join(clustertest.ShortTempDir(t, "sock-"), "lmtp.sock")
	ln, err := lmtpd.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeUnix(ln)
	d := e.deliverer(delivery.Config{Users: e.c.Client(t), Local: "st1", Socket: sock})
	res := d.Deliver(context.Background(), delivery.Envelope{From: "x@example.org", To: []string{"ana@correo.test"}}, strings.NewReader(msg))
	if res[0].Status != delivery.Delivered {
		t.Fatalf("over the socket: %v", res[0])
	}
	b, _ := os.ReadDir(filepath.Join(e.c.Maildir("st1", "ana"), "new"))
	data, _ := os.ReadFile(filepath.Join(e.c.Maildir("st1", "ana"), "new", b[0].Name()))
	if !strings.Contains(string(data), "(local)") {
		t.Errorf("not delivered over the socket:\n%s", data)
	}
}

// countingResolver counts the lookups a Deliverer makes.
type countingResolver struct {
	delivery.Resolver
	n atomic.Int32
}

func (c *countingResolver) LookupAddr(ctx context.Context, key string) (pwproto.User, error) {
	c.n.Add(1)
	return c.Resolver.LookupAddr(ctx, key)
}

// TestHostHints: a recipient with a storage host hint goes there without
// a lookup; a stale hint is corrected by the storage host's "stored on"
// answer; an unknown or empty hint falls back to the lookup.
func TestHostHints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.serve("st1")
	e.serve("st2")
	users := &countingResolver{Resolver: e.c.Client(t)}
	d := e.deliverer(delivery.Config{Users: users})
	rcpts := []string{"ana@correo.test", "eva@correo.test", "bob@correo.test", "anita@correo.test"}
	hints := []string{"st1", "st1", "no-such-host", ""}
	res := d.Deliver(context.Background(), delivery.Envelope{From: "x@example.org", To: rcpts, Hosts: hints}, strings.NewReader(msg))
	for i, want := range []string{"st1", "st2", "st1", "st1"} {
		if res[i].Status != delivery.Delivered || res[i].Host != want {
			t.Errorf("%s (hint %q): %v, want delivered on %s", rcpts[i], hints[i], res[i], want)
		}
	}
	// bob's unknown host and anita's empty hint were looked up; ana and
	// eva (stale hint, redirected) were not.
	if n := users.n.Load(); n != 2 {
		t.Errorf("%d lookups, want 2", n)
	}
	// ana and her alias anita went to st1 in one transaction: one copy.
	if e.count("st1", "ana") != 1 || e.count("st2", "eva") != 1 || e.count("st1", "bob") != 1 {
		t.Errorf("messages: ana %d eva %d bob %d", e.count("st1", "ana"), e.count("st2", "eva"), e.count("st1", "bob"))
	}
}
