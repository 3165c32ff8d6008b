package nsstest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/pwadmin"
	"correo/src/pwclient"
)

// startDaemon runs a built correo daemon and waits for READY=1 on its
// notify socket, as systemd or the cluster runner would.
func startDaemon(t *testing.T, dir, bin string, args ...string) *exec.Cmd {
	t.Helper()
	sock := filepath.Join(dir, filepath.Base(bin)+fmt.Sprint(time.Now().UnixNano())+".notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	log, _ := os.Create(filepath.Join(dir, filepath.Base(bin)+"-"+args[len(args)-1]+".log"))
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited; log.Close() })
	// A daemon that exits never says READY: stop waiting at once.
	go func() {
		select {
		case <-exited:
			nc.SetReadDeadline(time.Now())
		case <-time.After(30 * time.Second):
		}
	}()
	nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 256)
	for {
		n, err := nc.Read(buf)
		if err != nil {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("%s %v never became ready: %v\n%s", bin, args, err, b)
		}
		if strings.Contains(string(buf[:n]), "READY=1") {
			return cmd
		}
	}
}

// TestFailoverThroughNSS resolves a cluster user with getent in a loop,
// through the module, nssd and passwdd, while the primary passwdd is
// killed: every answer keeps coming, from the secondary.
func TestFailoverThroughNSS(t *testing.T) {
	w := newWorld(t, correoNsswitch)
	dir := t.TempDir()
	passwdd := clustertest.Build(t, "passwdd", false)
	nssdBin := clustertest.Build(t, "nssd", false)
	w.sockDir = filepath.Join(dir, "run-correo")
	os.MkdirAll(w.sockDir, 0o755)
	os.Chmod(w.sockDir, 0o755)

	// The cache would hide the failover; keep it to a millisecond so every
	// getent reaches passwdd.
	c := clustertest.NewCluster(t, clustertest.Spec{PasswdTimeout: "2s", LogLevel: "info",
		ClusterTOML: fmt.Sprintf("[cluster.nss]\npositive_ttl = \"1ms\"\nnegative_ttl = \"1ms\"\nsocket = %q\n", filepath.Join(w.sockDir, "nssd.sock")),
		Hosts: []clustertest.HostSpec{
			{Name: "pw1", Address: "127.0.0.1", Roles: []string{"passwd-primary"}},
			{Name: "pw2", Address: "127.0.0.2", Roles: []string{"passwd-secondary"}},
			{Name: "s1", Address: "127.0.0.11", Roles: []string{"storage"}, DataDir: "/srv/mail"},
		}})
	profile, p, ring := c.ProfilePath, c.Profile, c.Ring
	primary := startDaemon(t, dir, passwdd, "-profile", profile, "-state", filepath.Join(dir, "pw1-state"), "-host", "pw1")
	startDaemon(t, dir, passwdd, "-profile", profile, "-state", filepath.Join(dir, "pw2-state"), "-host", "pw2")
	adminAddr, _ := p.Listen("pw1", cluster.SvcPasswdAdmin)
	adm, err := pwadmin.Dial(context.Background(), adminAddr.String(), ring)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserAdd, User: &directory.User{Name: "juan", UID: 5001, GID: 5000, Gecos: "Juan", Shell: "/bin/sh"}}); err != nil {
		t.Fatal(err)
	}
	adm.Close()
	pc, _ := pwclient.FromProfile(p, ring, nil)
	defer pc.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if info, err := pc.Ping(context.Background(), pwclient.Secondary); err == nil && info.Users == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("secondary never caught up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	startDaemon(t, dir, nssdBin, "-profile", profile, "-state", filepath.Join(dir, "nssd-state"), "-host", "s1")

	want := "juan:x:5001:5000:Juan:/srv/mail/j/u/a/juan:/bin/sh"
	if got := strings.TrimSpace(w.must(t, "getent passwd juan")); got != want {
		t.Fatalf("getent passwd juan = %q, want %q", got, want)
	}
	// 60 lookups, one every 50 ms, in the namespace; the primary dies in
	// the middle.
	var out string
	var runErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		out, runErr = w.run(t, `for i in $(seq 1 60); do
  s=$(date +%s%N)
  if getent passwd juan >/dev/null; then r=ok; else r=FAIL; fi
  echo "$r $(( ($(date +%s%N) - s) / 1000000 ))"
  sleep 0.05
done`)
	}()
	time.Sleep(1 * time.Second)
	primary.Process.Kill() // the cleanup reaps it
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	slowest := ""
	for _, l := range lines {
		if !strings.HasPrefix(l, "ok ") {
			t.Errorf("a lookup failed during failover: %q\n%s", l, out)
			break
		}
		if len(l) > len(slowest) || (len(l) == len(slowest) && l > slowest) {
			slowest = l
		}
	}
	if len(lines) != 60 {
		t.Fatalf("%d lookups ran, want 60", len(lines))
	}
	t.Logf("60 getent lookups across the primary's death, all answered; slowest %s ms", strings.TrimPrefix(slowest, "ok "))
}
