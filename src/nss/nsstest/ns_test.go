package nsstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"correo/internal/testutil"
	"correo/src/nssd"
	"correo/src/nssd/nssdtest"
)

// nsWorld is a private view of the machine for NSS tests: inside
// `unshare -m`, an nsswitch.conf is bind-mounted over /etc/nsswitch.conf,
// the module appears in /usr/lib/x86_64-linux-gnu through an overlay
// (which setuid programs see too: they ignore LD_LIBRARY_PATH), and /run
// is a fresh tmpfs whose /run/correo is the test nssd's socket directory,
// so the module's built-in socket path works. The machine's own /etc,
// /usr and /run are never written.
type nsWorld struct {
	dir      string
	nsswitch string
	modDir   string
	sockDir  string // bind-mounted on /run/correo; "" for none
	passwd   string // bind-mounted on /etc/passwd; "" for the real one
}

func newWorld(t testing.TB, nsswitch string) *nsWorld {
	t.Helper()
	testutil.NeedRoot(t)
	testutil.NeedCommand(t, "unshare")
	lib := NeedLib(t)
	w := &nsWorld{dir: t.TempDir()}
	w.modDir = filepath.Join(w.dir, "lib")
	w.nsswitch = filepath.Join(w.dir, "nsswitch.conf")
	if err := os.MkdirAll(w.modDir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(lib)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.modDir, "libnss_correo.so.2"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.nsswitch, []byte(nsswitch), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

const correoNsswitch = "passwd: files correo\ngroup: files correo\nshadow: files\n"

// serve starts an in-process nssd whose socket appears as
// /run/correo/nssd.sock inside the world.
func (w *nsWorld) serve(t *testing.T, users ...nssd.Passwd) *nssdtest.Agent {
	t.Helper()
	w.sockDir = filepath.Join(w.dir, "run-correo")
	if err := os.MkdirAll(w.sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(w.sockDir, 0o755)
	a, err := nssdtest.StartAt(filepath.Join(w.sockDir, "nssd.sock"), nssdtest.NewSource(users...), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return a
}

// run executes script (sh) inside the world and returns its stdout.
func (w *nsWorld) run(t testing.TB, script string, env ...string) (string, error) {
	t.Helper()
	prelude := `set -eu
mount --bind "$W_NSSWITCH" /etc/nsswitch.conf
mount -t overlay overlay -o lowerdir="$W_MODDIR":/usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir /run/correo
if [ -n "$W_SOCKDIR" ]; then mount --bind "$W_SOCKDIR" /run/correo; fi
if [ -n "$W_PASSWD" ]; then mount --bind "$W_PASSWD" /etc/passwd; fi
`
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", prelude+script)
	cmd.Env = append(os.Environ(), "W_NSSWITCH="+w.nsswitch, "W_MODDIR="+w.modDir, "W_SOCKDIR="+w.sockDir,
		"W_PASSWD="+w.passwd, "CORREO_NSS_SOCKET=")
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return out.String(), fmt.Errorf("%v; stderr: %s", err, errb.String())
		}
		return out.String(), nil
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("namespace script hung:\n%s\nstderr: %s", script, errb.String())
		return "", nil
	}
}

func (w *nsWorld) must(t testing.TB, script string, env ...string) string {
	t.Helper()
	out, err := w.run(t, script, env...)
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return out
}

// The system's own tools resolve cluster users and groups through the
// module, with local files first.
func TestSystemTools(t *testing.T) {
	w := newWorld(t, correoNsswitch)
	users := append([]nssd.Passwd{juan, ana}, nssdtest.Generated(700)...)
	w.serve(t, users...)

	line := "juan:x:5001:5000:Juan Pérez:/var/mail/j/u/a/juan:/usr/sbin/nologin\n"
	if got := w.must(t, "getent passwd juan"); got != line {
		t.Errorf("getent passwd juan = %q, want %q", got, line)
	}
	if got := w.must(t, "getent passwd 5001"); got != line {
		t.Errorf("getent passwd 5001 = %q", got)
	}
	// correo-staff lists juan as a member; correo is his primary group.
	if got := w.must(t, "id juan"); got != "uid=5001(juan) gid=5000(correo) groups=5000(correo),5001(correo-staff)\n" {
		t.Errorf("id juan = %q", got)
	}
	all := w.must(t, "getent passwd")
	if !strings.HasPrefix(all, "root:x:0:0:") {
		t.Errorf("getent passwd does not start with files' root: %.60q", all)
	}
	for _, u := range users {
		if !strings.Contains(all, "\n"+u.Name+":x:") {
			t.Fatalf("getent passwd misses %s (enumerated %d lines)", u.Name, strings.Count(all, "\n"))
		}
	}
	t.Logf("getent passwd: %d lines (files, then %d cluster users)", strings.Count(all, "\n"), len(users))
	if got := w.must(t, "getent group correo"); got != "correo:x:5000:\n" {
		t.Errorf("getent group correo = %q", got)
	}
	if got := w.must(t, "getent group 5001"); got != "correo-staff:x:5001:juan,ana\n" {
		t.Errorf("getent group 5001 = %q", got)
	}
	if got := w.must(t, "getent group | grep correo"); got != "correo:x:5000:\ncorreo-staff:x:5001:juan,ana\n" {
		t.Errorf("getent group | grep correo = %q", got)
	}
	// Owners of files show by name.
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, nil, 0o644)
	os.Chown(f, 5001, 5000)
	if got := w.must(t, "stat -c %U:%G "+f); got != "juan:correo\n" {
		t.Errorf("stat owner = %q", got)
	}
	// Unknown names: getent's exit status 2 ("not found").
	if _, err := w.run(t, "getent passwd nadie"); err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Errorf("getent passwd nadie: %v", err)
	}
}

// With nssd stopped (or never started) local files still answer, and
// cluster names fail at once instead of hanging.
func TestSystemToolsWithoutNSSD(t *testing.T) {
	w := newWorld(t, correoNsswitch)
	a := w.serve(t, juan)
	w.must(t, "getent passwd juan")
	a.Stop()
	start := time.Now()
	if got := w.must(t, "getent passwd root"); !strings.HasPrefix(got, "root:x:0:0:") {
		t.Errorf("getent passwd root = %q", got)
	}
	if _, err := w.run(t, "getent passwd juan"); err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Errorf("getent passwd juan without nssd: %v", err)
	}
	if _, err := w.run(t, "id juan"); err == nil {
		t.Error("id juan succeeded without nssd")
	}
	if d := time.Since(start); d > hangLimit*3 {
		t.Errorf("three commands without nssd took %v: something waited", d)
	}
}

// A setuid program ignores CORREO_NSS_SOCKET (secure_getenv under
// AT_SECURE) and uses the built-in /run/correo/nssd.sock; the same
// program without the setuid bit obeys it.
func TestSetuidIgnoresSocketOverride(t *testing.T) {
	w := newWorld(t, correoNsswitch)
	w.serve(t, juan)
	testutil.NeedCommand(t, "setpriv")
	// Programs nobody can reach: a fresh 0755 directory.
	dir, err := os.MkdirTemp("", "correo-setuid-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	bin, err := CompileC(dir, "lookup")
	if err != nil {
		t.Fatal(err)
	}
	suid := bin + "-suid"
	data, _ := os.ReadFile(bin)
	os.WriteFile(suid, data, 0o755)
	if err := os.Chmod(suid, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := "setpriv --reuid=65534 --regid=65534 --clear-groups "
	env := "CORREO_NSS_SOCKET=/nonexistent/nssd.sock "
	if got := w.must(t, env+asNobody+suid+" juan"); got != "5001\n" {
		t.Errorf("setuid program with CORREO_NSS_SOCKET set: %q, want 5001 (override ignored)", got)
	}
	if got := w.must(t, env+asNobody+bin+" juan"); got != "none\n" {
		t.Errorf("plain program with CORREO_NSS_SOCKET=/nonexistent: %q, want none (override honoured)", got)
	}
	if got := w.must(t, asNobody+bin+" juan"); got != "5001\n" {
		t.Errorf("plain program as nobody: %q, want 5001 (socket 0666 in a 0755 directory)", got)
	}
}

// A process resolves, forks (with another thread resolving and an
// enumeration open), and every child resolves again and exits in time.
func TestForkChildResolves(t *testing.T) {
	w := newWorld(t, correoNsswitch)
	w.serve(t, append([]nssd.Passwd{juan}, nssdtest.Generated(400)...)...)
	bin, err := CompileC(t.TempDir(), "forktest")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out := w.must(t, bin+" juan 50")
	if out != "ok 50 forks\n" {
		t.Errorf("forktest: %q", out)
	}
	t.Logf("50 forks, each child resolving and enumerating: %v", time.Since(start).Round(time.Millisecond))
}

// The module under valgrind's memcheck: no invalid access, no leak, over
// many rounds of every entry point.
func TestValgrind(t *testing.T) {
	vg := testutil.NeedCommand(t, "valgrind")
	m := module(t)
	agent(t, juan, ana)
	bin, err := CompileC(t.TempDir(), "exercise")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vg, "--quiet", "--error-exitcode=1", "--leak-check=full", "--show-leak-kinds=definite,indirect",
		"--errors-for-leak-kinds=definite,indirect", "--track-fds=no", bin, m.Path, "40")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("valgrind: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "40 rounds, 0 failures") {
		t.Errorf("exercise output: %s", out)
	}
}
