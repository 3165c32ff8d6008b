package lmtpd

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"correo/internal/clustertest"
	"correo/src/dedup"
	"correo/src/directory"
)

// The tests run the LMTP server in process against a real passwdd
// process, on a two-storage-host profile: st1 (127.0.0.1, also the
// passwd primary) and st2 (127.0.0.2). Each test has a cluster of its own
// (directory, key, free ports), so they run in parallel, except those
// that measure time.

type testEnv struct {
	t    *testing.T
	c    *clustertest.Cluster
	pw   *clustertest.Proc
	logs *clustertest.SyncBuffer
	// keys, when set before serve, turns delivery keys on (with the
	// cluster's ring).
	keys *dedup.Store
}

func newEnv(t *testing.T, spec clustertest.Spec) *testEnv {
	t.Helper()
	if len(spec.Hosts) == 0 {
		spec.Hosts = []clustertest.HostSpec{
			{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}},
			{Name: "st2", Address: "127.0.0.2", Roles: []string{"storage"}},
		}
	}
	c := clustertest.NewCluster(t, spec)
	e := &testEnv{t: t, c: c, logs: &clustertest.SyncBuffer{}}
	e.pw = c.StartPasswdd(t, "st1")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- lmtpd log:\n%s", e.logs.String())
		}
	})
	return e
}

func (e *testEnv) users(us ...directory.User) { e.c.AddUsers(e.t, us...) }

// serve starts an in-process server for host on its profile address and
// on a Unix socket; it returns the TCP address and the socket path.
func (e *testEnv) serve(host string, lim Limits) (*Server, string, string) {
	t := e.t
	t.Helper()
	h, err := e.c.Profile.Host(host)
	if err != nil {
		t.Fatal(err)
	}
	spool := clustertest.ShortTempDir(t, "spool-")
	cfg := Config{Profile: e.c.Profile, Host: h, Users: e.c.Client(t), SpoolDir: spool, Limits: lim,
		Log: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if e.keys != nil {
		cfg.Ring, cfg.Keys = e.c.Ring, e.keys
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := e.c.Profile.Listen(host, "lmtp")
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(spool, "lmtp.sock")
	uln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTCP(ln)
	go srv.ServeUnix(uln)
	t.Cleanup(func() { srv.Close() })
	return srv, addr.String(), sock
}

// client is a raw LMTP client: tests need to see every reply line and
// send what a well-behaved client never would.
type client struct{ *clustertest.TextConn }

func dialLMTP(t *testing.T, network, addr string) *client {
	t.Helper()
	return &client{clustertest.DialText(t, network, addr, 220)}
}

func (c *client) lhlo() string {
	c.T.Helper()
	c.Line("LHLO tester.example")
	return c.Expect(250)
}

// data sends DATA and the message (LF or CRLF line ends; dot-stuffed
// here) and returns one reply per accepted recipient.
func (c *client) data(msg string, n int) []string {
	c.T.Helper()
	c.Line("DATA")
	c.Expect(354)
	w := c.TP.DotWriter()
	if _, err := w.Write([]byte(msg)); err != nil {
		c.T.Fatal(err)
	}
	if err := w.Close(); err != nil {
		c.T.Fatal(err)
	}
	var out []string
	for i := 0; i < n; i++ {
		code, text := c.Reply()
		out = append(out, fmt.Sprintf("%d %s", code, text))
	}
	return out
}

// files lists the names in a Maildir subdirectory (none if it does not
// exist).
func files(t *testing.T, maildir, sub string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(maildir, sub))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// readOnly returns the one message in new/ of maildir.
func readOnly(t *testing.T, maildir string) (string, os.FileInfo) {
	t.Helper()
	names := files(t, maildir, "new")
	if len(names) != 1 {
		t.Fatalf("%s/new holds %d files (%v), want 1", maildir, len(names), names)
	}
	p := filepath.Join(maildir, "new", names[0])
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	return string(b), fi
}

// headerBlock splits a stored message at the first empty line.
func headerBlock(msg string) (string, string) {
	h, b, _ := strings.Cut(msg, "\n\n")
	return h, b
}

func scanLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
