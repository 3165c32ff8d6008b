package pwserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"correo/internal/clustertest"
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

func newTestCluster(t *testing.T, withSecondary bool) *testCluster {
	t.Helper()
	hosts := []clustertest.HostSpec{{Name: "pw1", Address: "127.0.0.1", Roles: []string{"passwd-primary"}}}
	if withSecondary {
		hosts = append(hosts, clustertest.HostSpec{Name: "pw2", Address: "127.0.0.2", Roles: []string{"passwd-secondary"}})
	}
	hosts = append(hosts,
		clustertest.HostSpec{Name: "s1", Address: "127.0.0.11", Roles: []string{"storage"}, DataDir: "/srv/s1"},
		clustertest.HostSpec{Name: "s2", Address: "127.0.0.12", Roles: []string{"storage"}, DataDir: "/srv/s2"})
	c := clustertest.NewCluster(t, clustertest.Spec{Domains: []string{"correo.test", "other.test"}, PasswdTimeout: "2s", LogLevel: "info", Hosts: hosts})
	tc := &testCluster{t: t, dir: c.Dir, profile: c.Profile, ring: c.Ring, nodes: map[string]*node{}}
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
