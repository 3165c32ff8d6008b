package mailmove

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/mailbox"
	"correo/src/mailtree"
)

// The tests run both storage hosts' servers in process on a profile of
// two storage hosts, st1 (127.0.0.1) and st2 (127.0.0.2), each with a
// data directory of its own, and drive them with a Mover over a fake
// passwd directory. Every test has its own cluster (directory, key,
// ports), so they run in parallel. Each cluster takes 11 of the 1000
// ports clustertest.FreePort hands out per test process, which bounds
// -count (a single run uses about half).

type testEnv struct {
	t     *testing.T
	c     *clustertest.Cluster
	dir   *fakeDir
	gates map[string]*mailbox.Gate
	logs  *clustertest.SyncBuffer
	// offset moves the servers' clock (Config.Now) forward, for Sweep.
	offset atomic.Int64

	mu      sync.Mutex
	servers map[string]*Server
}

type envOpts struct {
	// ClusterTOML is added to the profile's [cluster] (e.g. moves policy).
	ClusterTOML string
	// handshake shortens the servers' handshake timeout.
	handshake time.Duration
}

func newEnv(t *testing.T, o envOpts) *testEnv {
	t.Helper()
	c := clustertest.NewCluster(t, clustertest.Spec{
		Hosts: []clustertest.HostSpec{
			{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}},
			{Name: "st2", Address: "127.0.0.2", Roles: []string{"storage"}},
		},
		ClusterTOML: o.ClusterTOML,
	})
	e := &testEnv{t: t, c: c, dir: newFakeDir(), logs: &clustertest.SyncBuffer{},
		gates: map[string]*mailbox.Gate{"st1": new(mailbox.Gate), "st2": new(mailbox.Gate)}, servers: map[string]*Server{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- mailmove log:\n%s", e.logs.String())
		}
	})
	for _, h := range []string{"st1", "st2"} {
		e.start(h, o.handshake)
	}
	return e
}

// start runs a fresh Server for host on its profile address (again, after
// a stop).
func (e *testEnv) start(host string, handshake time.Duration) *Server {
	t := e.t
	t.Helper()
	h, err := e.c.Profile.Host(host)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("host", host)
	srv, err := New(Config{Profile: e.c.Profile, Host: h, Ring: e.c.Ring, Gate: e.gates[host], Log: log,
		Now: func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	if handshake > 0 {
		srv.handshake = handshake
	}
	addr, err := e.c.Profile.Listen(host, cluster.SvcMailboxMove)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e.mu.Lock()
	e.servers[host] = srv
	e.mu.Unlock()
	return srv
}

func (e *testEnv) server(host string) *Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.servers[host]
}

func (e *testEnv) addr(host string) string {
	a, err := e.c.Profile.Listen(host, cluster.SvcMailboxMove)
	if err != nil {
		e.t.Fatal(err)
	}
	return a.String()
}

// dial connects to host's server as correoctl does.
func (e *testEnv) dial(host string) *Client {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, e.addr(host), e.c.Ring)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func (e *testEnv) mover() *Mover {
	return &Mover{Profile: e.c.Profile, Ring: e.c.Ring, Dir: e.dir, JournalDir: filepath.Join(e.c.Dir, "journal"),
		Note: func(format string, a ...any) { fmt.Fprintf(e.logs, "note: "+format+"\n", a...) }}
}

func (e *testEnv) maildir(host, user string) string { return e.c.Maildir(host, user) }

func (e *testEnv) stage(host, user string) string { return e.server(host).stagePath(user) }

func (e *testEnv) outRecord(host, user string) string {
	return filepath.Join(e.server(host).movesDir(), "out", user)
}

// fakeDir is the passwd directory: user → storage host and state. fail,
// if set, is asked before each Set and may refuse it (a passwd server
// down), to test what the Mover does when passwd fails.
type fakeDir struct {
	mu    sync.Mutex
	users map[string]dirUser
	fail  func(name string, state directory.State, storage string) bool
	sets  []string
}

type dirUser struct {
	Storage string
	State   directory.State
}

func newFakeDir() *fakeDir { return &fakeDir{users: map[string]dirUser{}} }

func (d *fakeDir) add(name, storage string, state directory.State) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users[name] = dirUser{storage, state}
}

func (d *fakeDir) get(name string) dirUser {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.users[name]
}

// failNext makes the next n Sets that match fail.
func (d *fakeDir) failNext(n int, match func(state directory.State, storage string) bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fail = func(_ string, state directory.State, storage string) bool {
		if n > 0 && match(state, storage) {
			n--
			return true
		}
		return false
	}
}

func (d *fakeDir) User(ctx context.Context, name string) (string, directory.State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	u, ok := d.users[name]
	if !ok {
		return "", 0, fmt.Errorf("no user %s", name)
	}
	return u.Storage, u.State, nil
}

func (d *fakeDir) Set(ctx context.Context, name string, state directory.State, storage string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil && d.fail(name, state, storage) {
		return errors.New("passwd unavailable (test)")
	}
	u, ok := d.users[name]
	if !ok {
		return fmt.Errorf("no user %s", name)
	}
	u.State = state
	if storage != "" {
		u.Storage = storage
	}
	d.users[name] = u
	d.sets = append(d.sets, fmt.Sprintf("%s %s %s", name, state, storage))
	return nil
}

// writeFile creates path (and its parents) with the given contents, mode
// and mtime, which the move must keep.
func writeFile(t *testing.T, path, body string, mode os.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// fillMaildir gives user a mailbox such as the servers leave: INBOX with
// read, flagged and new messages (one larger than a transfer chunk), two
// Maildir++ folders, UID lists and keywords, plus what a move must not
// copy: a message still in tmp/ and the lock files. It returns how many
// regular files the move must copy.
func fillMaildir(t *testing.T, root string) int {
	t.Helper()
	base := time.Date(2023, 11, 14, 22, 13, 20, 123456789, time.UTC)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Hour) }
	for _, d := range []string{"cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp", ".Archive.2024/cur", ".Archive.2024/new", ".Archive.2024/tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	big := strings.Repeat("0123456789abcdef", (chunkSize+chunkSize/2)/16) // two data frames
	files := []struct {
		path, body string
		mode       os.FileMode
	}{
		{"cur/1700000000.M1P1.st1,S=40,W=42:2,FS", "From: a@example.org\r\nSubject: one\r\n\r\nhi\r\n", 0o600},
		{"cur/1700000001.M2P1.st1,S=41,W=43:2,", "From: b@example.org\r\nSubject: two\r\n\r\nho\r\n", 0o640},
		{"cur/1700000002.M3P1.st1,S=" + fmt.Sprint(len(big)) + ":2,RS", big, 0o600},
		{"new/1700000003.M4P1.st1,S=12", "unread mail\n", 0o600},
		{"correo-uidlist", "correo-uidlist 1 V1700000000 N5 M7 G1 F0\n1 1700000000.M1P1.st1\n2 1700000001.M2P1.st1\n", 0o600},
		{"correo-keywords", "a $Junk\nb project\n", 0o600},
		{".Sent/cur/1700000100.M5P1.st1,S=20:2,S", "From: me\r\n\r\nsent\r\n", 0o600},
		{".Sent/correo-uidlist", "correo-uidlist 1 V1700000100 N2 M1 G1 F0\n1 1700000100.M5P1.st1\n", 0o600},
		{".Sent/maildirfolder", "", 0o600},
		{".Archive.2024/cur/1600000000.M6P1.st1,S=9:2,abS", "archived\n", 0o444},
		{".Archive.2024/maildirfolder", "", 0o600},
	}
	for i, f := range files {
		writeFile(t, filepath.Join(root, filepath.FromSlash(f.path)), f.body, f.mode, at(i))
	}
	// Not part of the mailbox: a delivery in progress and per-host locks.
	writeFile(t, filepath.Join(root, "tmp", "1700000200.M7P1.st1"), "half a mess", 0o600, at(20))
	writeFile(t, filepath.Join(root, pop3Lock), "", 0o600, at(21))
	writeFile(t, filepath.Join(root, mailstoreLock), "", 0o600, at(22))
	writeFile(t, filepath.Join(root, ".Sent", mailstoreLock), "", 0o600, at(23))
	if err := os.Chmod(filepath.Join(root, ".Archive.2024"), 0o750); err != nil {
		t.Fatal(err)
	}
	// And one the way pdeliveryd writes it.
	if _, err := mailbox.New(root).Deliver(strings.NewReader("From: c@example.org\r\n\r\ndelivered\r\n")); err != nil {
		t.Fatal(err)
	}
	return len(files) + 1
}

// tree is what a move must keep of a Maildir: its manifest (names, kinds,
// sizes, mtimes, modes) and every file's contents.
type tree struct {
	m        *mailtree.Manifest
	contents map[string][]byte
}

func snapshot(t *testing.T, root string) tree {
	t.Helper()
	m, err := mailtree.Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	tr := tree{m: m, contents: map[string][]byte{}}
	for _, e := range m.Entries {
		if e.Dir {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(e.Path)))
		if err != nil {
			t.Fatal(err)
		}
		tr.contents[e.Path] = b
	}
	return tr
}

func (tr tree) files() int { return len(tr.contents) }

// sameTree fails unless root holds exactly want.
func sameTree(t *testing.T, want tree, root string) {
	t.Helper()
	got := snapshot(t, root)
	if err := mailtree.Verify(want.m, got.m); err != nil {
		t.Fatalf("%s differs from the source: %v", root, err)
	}
	for p, b := range want.contents {
		if !bytes.Equal(got.contents[p], b) {
			t.Errorf("%s/%s: contents differ from the source's (%d bytes, want %d)", root, p, len(got.contents[p]), len(b))
		}
	}
}

// listAll is every path under dir with its kind, to show that a refused
// request created nothing.
func listAll(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %v", p, d.Type()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func marker(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, mailbox.MovingMarker))
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// eventually polls cond until it holds or the deadline (generous: the
// machine is shared) passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
