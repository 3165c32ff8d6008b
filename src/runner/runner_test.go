package runner

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/logging"
)

// freePort finds a port free for both TCP and UDP on loopback.
func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", l.Addr().String())
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// devRunner is the dev profile moved to free ports and a temporary state
// directory, so the test never collides with a running `make dev`.
func devRunner(t *testing.T) *Runner {
	t.Helper()
	testutil.NeedCommand(t, "nsd")
	testutil.NeedCommand(t, "rsyslogd")
	p, err := cluster.LoadDefault(cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p.Cluster.KeyFile = filepath.Join(dir, "cluster.key")
	p.Cluster.Ports.DNS = freePort(t)
	p.Cluster.Ports.Syslog = freePort(t)
	var logs bytes.Buffer
	r := &Runner{Profile: p, StateDir: filepath.Join(dir, "state"), BinDir: filepath.Join(dir, "bin"),
		Log: slog.New(slog.NewTextHandler(&logs, nil))}
	t.Cleanup(func() {
		r.Down()
		if t.Failed() {
			t.Logf("runner log:\n%s", logs.String())
		}
	})
	return r
}

func TestDevClusterDNSAndLoghost(t *testing.T) {
	r := devRunner(t)
	if err := r.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := r.Profile
	dnsAddr, _ := p.Listen("dev", cluster.SvcDNS)

	// The real NSD answers from the zone generated from the profile.
	c := &dns.Client{Timeout: 2 * time.Second}
	ask := func(name string, qtype uint16) []dns.RR {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		in, _, err := c.Exchange(m, dnsAddr.String())
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		if !in.Authoritative || in.Rcode != dns.RcodeSuccess {
			t.Fatalf("query %s: rcode %s aa %v", name, dns.RcodeToString[in.Rcode], in.Authoritative)
		}
		return in.Answer
	}
	mx := ask("correo.test.", dns.TypeMX)
	if len(mx) != 1 || mx[0].(*dns.MX).Mx != "dev.correo.test." {
		t.Errorf("MX correo.test = %v", mx)
	}
	for _, pool := range []string{"mx", "relay", "pop", "dev"} {
		a := ask(pool+".correo.test.", dns.TypeA)
		if len(a) != 1 || a[0].(*dns.A).A.String() != "127.0.0.1" {
			t.Errorf("A %s = %v", pool, a)
		}
	}

	// The loghost files lines per sending host, over UDP and over TCP.
	syslogAddr, _ := p.Listen("dev", cluster.SvcSyslog)
	for _, network := range []string{"udp", "tcp"} {
		l, err := logging.New(logging.Config{Target: "syslog", Network: network, Address: syslogAddr.String(),
			AppName: "runnertest", Hostname: "host-" + network})
		if err != nil {
			t.Fatal(err)
		}
		ctx := logging.WithTrace(context.Background(), "trace"+network)
		// UDP may be dropped before imudp binds; repeat until it lands.
		file := filepath.Join(r.LoghostDir(), "hosts", "host-"+network+".log")
		deadline := time.Now().Add(15 * time.Second)
		for {
			l.InfoContext(ctx, "delivered", "user", "juan", "via", network)
			time.Sleep(200 * time.Millisecond)
			b, _ := os.ReadFile(file)
			if bytes.Contains(b, []byte(`trace="trace`+network+`"`)) && bytes.Contains(b, []byte("user=juan")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: line never reached %s; got %q", network, file, b)
			}
		}
		l.Close()
	}
	all, _ := os.ReadFile(filepath.Join(r.LoghostDir(), "all.log"))
	if !bytes.Contains(all, []byte("host-udp")) || !bytes.Contains(all, []byte("host-tcp")) {
		t.Errorf("combined log lacks a host:\n%s", all)
	}

	// A forged host name must not choose a file outside the log directory.
	conn, err := net.Dial("udp", syslogAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		conn.Write([]byte("<14>1 2026-01-01T00:00:00Z ../../evil app - - - escape attempt"))
	}
	conn.Close()
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(r.StateDir, "evil.log")); err == nil {
		t.Error("a forged HOSTNAME wrote outside the loghost directory")
	}
}

func TestDownStopsEverythingAndLeftoversAreKilled(t *testing.T) {
	r := devRunner(t)
	if err := r.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	var pids []int
	for _, p := range r.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	r.mu.Unlock()
	if len(pids) != 2 {
		t.Fatalf("want nsd and rsyslogd, got %d processes", len(pids))
	}
	// Simulate a runner killed without cleaning up: forget the processes
	// but keep the pid file; the next Up must stop them first.
	r.mu.Lock()
	r.procs = nil
	r.mu.Unlock()
	r2 := &Runner{Profile: r.Profile, StateDir: r.StateDir, BinDir: r.BinDir, Log: r.Log}
	if err := r2.Up(context.Background()); err != nil {
		t.Fatalf("second Up with leftovers running: %v", err)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("leftover pid %d still running", pid)
		}
	}
	r2.mu.Lock()
	var pids2 []int
	for _, p := range r2.procs {
		pids2 = append(pids2, p.cmd.Process.Pid)
	}
	r2.mu.Unlock()
	r2.Down()
	for _, pid := range pids2 {
		if alive(pid) {
			t.Errorf("pid %d still running after Down", pid)
		}
	}
	if _, err := os.Stat(filepath.Join(r.StateDir, "runner.pids")); err == nil {
		t.Error("runner.pids left after Down")
	}
}

func alive(pid int) bool {
	// A stopped child stays a zombie until reaped; count only live ones.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z" && syscall.Kill(pid, 0) == nil
}

func TestPlanRefusesNonLocalProfile(t *testing.T) {
	p, err := cluster.Load("../../hosts/example.toml", cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Profile: p, StateDir: t.TempDir()}
	if _, _, err := r.Plan(); err == nil || !strings.Contains(err.Error(), "--netns") {
		t.Fatalf("Plan on example.toml: %v", err)
	}
}

func TestPlanStartsBuiltDaemonsOncePerHost(t *testing.T) {
	testutil.NeedCommand(t, "nsd")
	testutil.NeedCommand(t, "rsyslogd")
	p, _ := cluster.LoadDefault(cluster.Options{SkipFiles: true})
	bin := t.TempDir()
	for _, prog := range []string{"smtpd", "passwdd"} {
		os.WriteFile(filepath.Join(bin, prog), []byte("#!/bin/sh\n"), 0o755)
	}
	r := &Runner{Profile: p, StateDir: t.TempDir(), BinDir: bin, ProfilePath: "hosts/dev.toml"}
	specs, missing, err := r.Plan()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range specs {
		names = append(names, s.Name)
	}
	// smtpd serves both mx and relay on the dev host: one process.
	if strings.Join(names, ",") != "nsd,rsyslogd,passwdd,smtpd" {
		t.Errorf("planned %v", names)
	}
	if len(missing) != 5 {
		t.Errorf("missing = %v, want pdeliveryd, pop3d, imapd, mailproxy, nssd", missing)
	}
	for _, s := range specs {
		// The dev host is also a storage host: smtpd reaches its
		// pdeliveryd through the socket in that daemon's state directory.
		if s.Name == "smtpd" && strings.Join(s.Argv[1:], " ") != "-host dev -state "+filepath.Join(r.StateDir, "dev", "smtpd")+" -profile hosts/dev.toml"+
			" -lmtp-socket "+filepath.Join(r.StateDir, "dev", "pdeliveryd", "lmtp.sock") {
			t.Errorf("smtpd argv = %v", s.Argv)
		}
	}
}
