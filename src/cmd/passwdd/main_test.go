package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/pwadmin"
	"correo/src/pwclient"
)

// These tests run the real passwdd binary as separate processes, the way
// a cluster host does, and kill them the hard way.

func TestMain(m *testing.M) { clustertest.Main(m) }

// passwdd is the daemon's binary: under the race detector for tests, as
// shipped for benchmarks (which measure it).
func passwdd(t testing.TB) string {
	_, bench := t.(*testing.B)
	return clustertest.Build(t, "passwdd", !bench)
}

// correoctl is the operator's command, as shipped.
func correoctl(t testing.TB) string { return clustertest.Build(t, "correoctl", false) }

type env struct {
	t       testing.TB
	dir     string
	profile string
	p       *cluster.Profile
	ring    *keyfile.Ring
	procs   map[string]*exec.Cmd
	logs    map[string]*bytes.Buffer
}

func newEnv(t testing.TB) *env {
	c := clustertest.NewCluster(t, clustertest.Spec{Placement: "least-users", PasswdTimeout: "2s", LogLevel: "info", Hosts: []clustertest.HostSpec{
		{Name: "pw1", Address: "127.0.0.1", Roles: []string{"passwd-primary"}},
		{Name: "pw2", Address: "127.0.0.2", Roles: []string{"passwd-secondary"}},
		{Name: "s1", Address: "127.0.0.11", Roles: []string{"storage"}, DataDir: "/srv/mail"},
	}})
	e := &env{t: t, dir: c.Dir, profile: c.ProfilePath, p: c.Profile, ring: c.Ring, procs: map[string]*exec.Cmd{}, logs: map[string]*bytes.Buffer{}}
	t.Cleanup(func() {
		for h := range e.procs {
			e.kill(h, syscall.SIGKILL)
		}
		if t.Failed() {
			for h, l := range e.logs {
				t.Logf("--- %s log:\n%s", h, l.String())
			}
		}
	})
	return e
}

// start runs passwdd for host and waits for its READY=1 on a notify
// socket, as systemd or the cluster runner would.
func (e *env) start(host string) {
	e.t.Helper()
	sock := filepath.Join(e.dir, host+".notify")
	os.Remove(sock)
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		e.t.Fatal(err)
	}
	defer nc.Close()
	cmd := exec.Command(passwdd(e.t), "-profile", e.profile, "-host", host, "-state", filepath.Join(e.dir, host))
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	if e.logs[host] == nil {
		e.logs[host] = &bytes.Buffer{}
	}
	cmd.Stdout, cmd.Stderr = e.logs[host], e.logs[host]
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.procs[host] = cmd
	nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 256)
	for {
		n, err := nc.Read(buf)
		if err != nil {
			e.t.Fatalf("%s never became ready: %v\n%s", host, err, e.logs[host])
		}
		if strings.Contains(string(buf[:n]), "READY=1") {
			return
		}
	}
}

func (e *env) kill(host string, sig syscall.Signal) {
	cmd := e.procs[host]
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	cmd.Wait()
	delete(e.procs, host)
}

func (e *env) admin() *pwadmin.Client {
	e.t.Helper()
	a, _ := e.p.Listen("pw1", cluster.SvcPasswdAdmin)
	c, err := pwadmin.Dial(context.Background(), a.String(), e.ring)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) importUsers(c *pwadmin.Client, users []directory.User, replace bool) error {
	if _, err := c.Do(pwadmin.Request{Op: pwadmin.OpImportBegin, Replace: replace}); err != nil {
		return err
	}
	for i := 0; i < len(users); i += 10000 {
		if _, err := c.Do(pwadmin.Request{Op: pwadmin.OpImportChunk, Chunk: pwadmin.UsersChunk(users[i:min(i+10000, len(users))])}); err != nil {
			return err
		}
	}
	_, err := c.Do(pwadmin.Request{Op: pwadmin.OpImportCommit})
	return err
}

func makeUsers(prefix string, n int, uid0 uint32) []directory.User {
	us := make([]directory.User, n)
	for i := range us {
		us[i] = directory.User{Name: fmt.Sprintf("%s%d", prefix, i), UID: uid0 + uint32(i), GID: 5000, Shell: "/usr/sbin/nologin"}
	}
	return us
}

func TestRefusesReadableKey(t *testing.T) {
	e := newEnv(t)
	os.Chmod(e.p.Cluster.KeyFile, 0o644)
	out, err := exec.Command(passwdd(e.t), "-profile", e.profile, "-host", "pw1", "-state", filepath.Join(e.dir, "pw1")).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "chmod 640") {
		t.Fatalf("passwdd with a world-readable key: %v\n%s", err, out)
	}
	os.Chmod(e.p.Cluster.KeyFile, 0o600)
	out, err = exec.Command(passwdd(e.t), "-profile", e.profile, "-host", "s1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "passwdd serves") {
		t.Fatalf("passwdd on a storage host: %v\n%s", err, out)
	}
	os.Remove(e.p.Cluster.KeyFile)
	out, err = exec.Command(passwdd(e.t), "-profile", e.profile, "-host", "pw1", "-state", filepath.Join(e.dir, "pw1")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "does not exist") {
		t.Fatalf("passwdd without a key: %v\n%s", err, out)
	}
}

func TestFailoverAndCatchUp(t *testing.T) {
	e := newEnv(t)
	e.start("pw1")
	e.start("pw2")
	adm := e.admin()
	if err := e.importUsers(adm, makeUsers("user", 1000, 10000), false); err != nil {
		t.Fatal(err)
	}
	// Changes made just before the kill must be on the secondary.
	for i, name := range []string{"late1", "late2"} {
		if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserAdd, User: &directory.User{Name: name, UID: uint32(20001 + i), GID: 5000}}); err != nil {
			t.Fatal(err)
		}
	}
	adm.Close()
	pc, err := pwclient.FromProfile(e.p, e.ring, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx := context.Background()
	// Let the secondary catch up before the primary dies.
	deadline := time.Now().Add(15 * time.Second)
	for {
		pi, err1 := pc.Ping(ctx, pwclient.Primary)
		si, err2 := pc.Ping(ctx, pwclient.Secondary)
		if err1 == nil && err2 == nil && pi.Epoch == si.Epoch && pi.Seq == si.Seq && si.Users == 1002 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("secondary did not catch up: %+v %v / %+v %v", pi, err1, si, err2)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := pc.LookupName(ctx, "user5"); err != nil {
		t.Fatal(err)
	}

	e.kill("pw1", syscall.SIGKILL)
	start := time.Now()
	u, err := pc.LookupName(ctx, "late2")
	took := time.Since(start)
	if err != nil || u.Name != "late2" {
		t.Fatalf("lookup after the primary died: %+v, %v", u, err)
	}
	// Failover timeout (2 s) plus a generous margin for a loaded CI box.
	if took > 6*time.Second {
		t.Errorf("failover took %v", took)
	}
	t.Logf("first answer after killing the primary: %v", took)
	// Lookups keep working through the secondary.
	for i := 0; i < 50; i++ {
		if _, err := pc.LookupName(ctx, fmt.Sprintf("user%d", i)); err != nil {
			t.Fatalf("lookup %d on the secondary: %v", i, err)
		}
	}
	if pc.Current() != pwclient.Secondary {
		t.Fatalf("client is on %v, want the secondary", pc.Current())
	}

	// The primary comes back: the client returns to it.
	e.start("pw1")
	deadline = time.Now().Add(15 * time.Second)
	for pc.Current() != pwclient.Primary {
		if time.Now().After(deadline) {
			t.Fatal("client never returned to the restarted primary")
		}
		pc.LookupName(ctx, "user1")
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := pc.LookupName(ctx, "late1"); err != nil {
		t.Fatalf("restarted primary lost a user: %v", err)
	}

	// A primary that hangs (or whose host vanished) sends no ICMP: the
	// client must notice by the timeout alone.
	e.procs["pw1"].Process.Signal(syscall.SIGSTOP)
	start = time.Now()
	if _, err := pc.LookupName(ctx, "user7"); err != nil {
		t.Fatalf("lookup with the primary hung: %v", err)
	}
	took = time.Since(start)
	t.Logf("first answer with the primary hung: %v (timeout 2s)", took)
	if took > 6*time.Second {
		t.Errorf("failover on a hung primary took %v", took)
	}
	e.procs["pw1"].Process.Signal(syscall.SIGCONT)
	deadline = time.Now().Add(15 * time.Second)
	for pc.Current() != pwclient.Primary {
		if time.Now().After(deadline) {
			t.Fatal("client never returned to the resumed primary")
		}
		pc.LookupName(ctx, "user1")
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKill9DuringImport kills the primary at several moments of a large
// import: after restart the directory holds the old set or the new one.
func TestKill9DuringImport(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 50_000
	}
	oldSet := makeUsers("old", 1000, 10000)
	newSet := makeUsers("new", n, 100000)
	for _, delay := range []time.Duration{0, 50 * time.Millisecond, 200 * time.Millisecond, 600 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			e := newEnv(t)
			e.start("pw1")
			adm := e.admin()
			if err := e.importUsers(adm, oldSet, true); err != nil {
				t.Fatal(err)
			}
			if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpImportBegin, Replace: true}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(newSet); i += 10000 {
				if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpImportChunk, Chunk: pwadmin.UsersChunk(newSet[i:min(i+10000, len(newSet))])}); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() {
				_, err := adm.Do(pwadmin.Request{Op: pwadmin.OpImportCommit})
				done <- err
			}()
			time.Sleep(delay)
			e.kill("pw1", syscall.SIGKILL)
			committed := <-done == nil
			adm.Close()

			e.start("pw1")
			pc, err := pwclient.FromProfile(e.p, e.ring, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			info, err := pc.Ping(context.Background(), pwclient.Primary)
			if err != nil {
				t.Fatal(err)
			}
			_, oldErr := pc.LookupName(context.Background(), "old7")
			_, newErr := pc.LookupName(context.Background(), "new7")
			switch {
			case info.Users == uint64(len(oldSet)) && oldErr == nil && newErr != nil:
				if committed {
					t.Fatal("import was acknowledged but the old set came back")
				}
				t.Logf("killed after %v: old set", delay)
			case info.Users == uint64(len(newSet)) && newErr == nil && oldErr != nil:
				t.Logf("killed after %v: new set", delay)
			default:
				t.Fatalf("killed after %v: a mix: %d users, old7 %v, new7 %v", delay, info.Users, oldErr, newErr)
			}
		})
	}
}
