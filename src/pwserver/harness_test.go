package pwserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/pwadmin"
	"correo/src/pwclient"
)

// testCluster is a primary on 127.0.0.1 and a secondary on 127.0.0.2,
// sharing ports as real hosts would, with two storage hosts.
type testCluster struct {
	t       *testing.T
	dir     string
	profile *cluster.Profile
	ring    *keyfile.Ring
	nodes   map[string]*node
	// authWorkers, when set, is the verifier count of servers started
	// from now on (default: one per core).
	authWorkers int
}

type node struct {
	srv    *Server
	store  *directory.Store
	udp    []*net.UDPConn
	ln     net.Listener
	cancel context.CancelFunc
	done   chan struct{}
}

func freePorts(t *testing.T, addrs ...string) (udp, tcp int) {
	t.Helper()
	pick := func(network string) int {
		for i := 0; i < 100; i++ {
			var port int
			if network == "udp" {
				c, err := net.ListenPacket("udp", addrs[0]+":0")
				if err != nil {
					t.Fatal(err)
				}
				port = c.LocalAddr().(*net.UDPAddr).Port
				c.Close()
			} else {
				l, err := net.Listen("tcp", addrs[0]+":0")
				if err != nil {
					t.Fatal(err)
				}
				port = l.Addr().(*net.TCPAddr).Port
				l.Close()
			}
			ok := true
			for _, a := range addrs[1:] {
				var err error
				if network == "udp" {
					var c net.PacketConn
					if c, err = net.ListenPacket("udp", fmt.Sprintf("%s:%d", a, port)); err == nil {
						c.Close()
					}
				} else {
					var l net.Listener
					if l, err = net.Listen("tcp", fmt.Sprintf("%s:%d", a, port)); err == nil {
						l.Close()
					}
				}
				ok = ok && err == nil
			}
			if ok {
				return port
			}
		}
		t.Fatal("no free port")
		return 0
	}
	return pick("udp"), pick("tcp")
}

func newTestCluster(t *testing.T, withSecondary bool) *testCluster {
	t.Helper()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "cluster.key")
	ring, err := keyfile.Create(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	udp, tcp := freePorts(t, "127.0.0.1", "127.0.0.2")
	secondary := ""
	if withSecondary {
		secondary = "[[host]]\nname = \"pw2\"\naddress = \"127.0.0.2\"\nroles = [\"passwd-secondary\"]\n"
	}
	src := fmt.Sprintf(`[cluster]
name = "t"
domains = ["correo.test", "other.test"]
network = "127.0.0.0/8"
key_file = %q
layout = "first3"
placement = "letters"
[cluster.passwd]
udp_port = %d
tcp_port = %d
timeout = "2s"
# Test users: bcrypt's minimum cost (a cost-10 check takes over a
# second under -race on a slow machine).
bcrypt_cost = 4

[[host]]
name = "pw1"
address = "127.0.0.1"
roles = ["passwd-primary"]
%s
[[host]]
name = "s1"
address = "127.0.0.11"
roles = ["storage"]
[host.storage]
data_dir = "/srv/s1"

[[host]]
name = "s2"
address = "127.0.0.12"
roles = ["storage"]
[host.storage]
data_dir = "/srv/s2"
`, keyPath, udp, tcp, secondary)
	p, err := cluster.Parse([]byte(src), "test.toml", cluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{t: t, dir: dir, profile: p, ring: ring, nodes: map[string]*node{}}
	tc.start("pw1")
	if withSecondary {
		tc.start("pw2")
	}
	t.Cleanup(func() {
		for name := range tc.nodes {
			tc.stop(name)
		}
	})
	return tc
}

func quietLog() *slog.Logger {
	if os.Getenv("CORREO_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (tc *testCluster) start(name string) *node {
	t := tc.t
	t.Helper()
	h, _ := tc.profile.Host(name)
	stateDir := filepath.Join(tc.dir, name)
	store, err := directory.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Profile: tc.profile, Host: h, Store: store, StateDir: stateDir, Ring: tc.ring, Log: quietLog(),
		UserPolicy:   LimitPolicy{MaxFailures: 3, Window: time.Minute, Lockout: time.Minute, MaxLockout: time.Minute, MaxEntries: 1000},
		SourcePolicy: LimitPolicy{MaxFailures: 100, Window: time.Minute, Lockout: time.Minute, MaxLockout: time.Minute, MaxEntries: 1000},
		AuthWorkers:  tc.authWorkers})
	if err != nil {
		t.Fatal(err)
	}
	ua, _ := tc.profile.Listen(name, cluster.SvcPasswd)
	ta, _ := tc.profile.Listen(name, cluster.SvcPasswdAdmin)
	ucs, err := ListenUDP(ua, 2)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", ta.String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{srv: srv, store: store, udp: ucs, ln: ln, cancel: cancel, done: make(chan struct{})}
	go srv.ServeUDP(ucs...)
	go srv.ServeAdmin(ln)
	go func() {
		defer close(n.done)
		if srv.Role() == Secondary {
			pa, _ := tc.profile.Listen("pw1", cluster.SvcPasswdAdmin)
			srv.FollowPrimary(ctx, pa.String())
		}
	}()
	tc.nodes[name] = n
	return n
}

func (tc *testCluster) stop(name string) {
	n := tc.nodes[name]
	if n == nil {
		return
	}
	n.cancel()
	for _, c := range n.udp {
		c.Close()
	}
	n.ln.Close()
	<-n.done
	n.store.Close()
	delete(tc.nodes, name)
}

func (tc *testCluster) admin(host string) *pwadmin.Client {
	tc.t.Helper()
	a, _ := tc.profile.Listen(host, cluster.SvcPasswdAdmin)
	c, err := pwadmin.Dial(context.Background(), a.String(), tc.ring)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { c.Close() })
	return c
}

func (tc *testCluster) client() *pwclient.Client {
	tc.t.Helper()
	c, err := pwclient.FromProfile(tc.profile, tc.ring, quietLog())
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.t.Cleanup(func() { c.Close() })
	return c
}

func (tc *testCluster) addUser(c *pwadmin.Client, name string, uid uint32, password string, aliases ...string) {
	tc.t.Helper()
	_, err := c.Do(pwadmin.Request{Op: pwadmin.OpUserAdd, Password: password,
		User: &directory.User{Name: name, UID: uid, GID: 5000, Gecos: "User " + name, Shell: "/usr/sbin/nologin", Aliases: aliases}})
	if err != nil {
		tc.t.Fatalf("adding %s: %v", name, err)
	}
}

// eventually retries f until it succeeds or the (generous) deadline passes.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
