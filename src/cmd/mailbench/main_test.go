package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/directory"
)

// The tests build correo's programs once for the whole package; Main
// removes them when the tests end.
func TestMain(m *testing.M) { clustertest.Main(m) }

const password = "secret"

// benchCluster is one loopback host with every role mailbench loads:
// passwdd, pdeliveryd, smtpd (mx and relay), pop3d and imapd behind
// mailproxy, and nssd; users ana, bob and cid with one password.
type benchCluster struct {
	c   *clustertest.Cluster
	bin string
	dir string
}

func newBenchCluster(t *testing.T) *benchCluster {
	t.Helper()
	addrs := []string{"127.0.0.1"}
	dir := clustertest.ShortTempDir(t, "mb-")
	sock := filepath.Join(dir, "nssd.sock")
	extra := fmt.Sprintf("relay = %d\nsubmission = %d\nsubmissions = %d\n[cluster.nss]\nsocket = %q\n",
		clustertest.FreePort(t, addrs...), clustertest.FreePort(t, addrs...), clustertest.FreePort(t, addrs...), sock)
	c := clustertest.NewCluster(t, clustertest.Spec{TrustedNetwork: true, ClusterTOML: extra, LogLevel: "info",
		Hosts: []clustertest.HostSpec{{Name: "h1", Address: "127.0.0.1", TLS: true,
			Roles: []string{"passwd-primary", "mx", "relay", "storage", "mailproxy"},
			TOML:  "[host.smtpd]\nmax_connections = 100\nmax_connections_per_client = 100\n"}}})
	c.StartPasswdd(t, "h1")
	hash, err := directory.HashPassword(password, c.Profile.Cluster.Passwd.BcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	c.AddUsers(t, directory.User{Name: "ana", Storage: "h1", Hash: hash},
		directory.User{Name: "bob", Storage: "h1", Hash: hash}, directory.User{Name: "cid", Storage: "h1", Hash: hash})
	for _, d := range []string{"pdeliveryd", "smtpd", "pop3d", "imapd", "mailproxy", "nssd"} {
		c.StartDaemon(t, d, "h1", true)
	}
	return &benchCluster{c: c, bin: clustertest.Build(t, "mailbench", true), dir: dir}
}

// usersFile writes names (one a line) and returns its path.
func (b *benchCluster) usersFile(t *testing.T, names ...string) string {
	f, err := os.CreateTemp(b.dir, "users-")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(strings.Join(names, "\n") + "\n")
	f.Close()
	return f.Name()
}

// run runs mailbench with --json against the cluster's profile and
// returns its summary and exit status.
func (b *benchCluster) run(t *testing.T, args ...string) (Summary, int, string) {
	t.Helper()
	argv := append([]string{args[0], "--profile", b.c.ProfilePath, "--json", "--timeout", "20s"}, args[1:]...)
	cmd := exec.Command(b.bin, argv...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("mailbench %v: %v", args, err)
	}
	var s Summary
	if stdout.Len() > 0 {
		if err := json.Unmarshal([]byte(stdout.String()), &s); err != nil {
			t.Fatalf("mailbench %v: the JSON summary does not parse: %v\n%s\nstderr: %s", args, err, stdout.String(), stderr.String())
		}
	}
	return s, code, stderr.String()
}

// want checks a summary's counts: ok successes of kind, and failures by
// error kind.
func want(t *testing.T, what string, s Summary, code int, stderr, kind string, ok uint64, errs map[string]uint64) {
	t.Helper()
	k := s.Kinds[kind]
	var failed uint64
	for _, n := range errs {
		failed += n
	}
	bad := k.OK != ok || k.Failed != failed || s.OK != ok || s.Failed != failed || k.Ops != ok+failed || s.Ops != ok+failed
	for e, n := range errs {
		bad = bad || k.Errors[e] != n
	}
	if len(k.Errors) != len(errs) {
		bad = true
	}
	if ok > 0 && (k.Rate <= 0 || k.Latency.P50 <= 0 || k.Latency.Max < k.Latency.P99 || k.Latency.P99 < k.Latency.P50) {
		bad = true
	}
	wantCode := 0
	if ok == 0 && failed > 0 {
		wantCode = 1
	}
	if bad || code != wantCode {
		t.Errorf("%s: exit %d (want %d), kind %s: %+v; want %d ok and errors %v\nstderr: %s", what, code, wantCode, kind, k, ok, errs, stderr)
	}
}

func TestAgainstCluster(t *testing.T) {
	b := newBenchCluster(t)
	users := b.usersFile(t, "ana", "bob", "cid")

	t.Run("lmtp", func(t *testing.T) {
		s, code, stderr := b.run(t, "lmtp", "-n", "30", "--users-file", users, "--rcpts", "2", "--size", "1k:1,20k:1", "--msgs-per-session", "7", "--concurrency", "3")
		want(t, "lmtp", s, code, stderr, "lmtp", 30, nil)
	})
	t.Run("server side", func(t *testing.T) {
		s, code, stderr := b.run(t, "lmtp", "-n", "10", "--users-file", users, "--concurrency", "1", "--metrics", "profile")
		want(t, "lmtp with --metrics", s, code, stderr, "lmtp", 10, nil)
		// pdeliveryd counted what mailbench sent: one recipient each.
		lmtp, _ := b.c.Profile.Listen("h1", cluster.SvcMetricsPdeliveryd)
		found := false
		for _, f := range s.Server {
			if f.Endpoint == lmtp.String() && f.Series == `correo_lmtp_deliveries_total{result="delivered"}` {
				found = true
				if f.Delta != 10 {
					t.Errorf("pdeliveryd counted %v deliveries over the run, mailbench made 10", f.Delta)
				}
			}
		}
		if !found {
			t.Errorf("no delivered count from pdeliveryd's metrics (%s) in %+v\nstderr: %s", lmtp, s.Server, stderr)
		}
		// The endpoints pass the targets' check.
		_, code, stderr = b.run(t, "lmtp", "-n", "1", "--users-file", users, "--metrics", "192.0.2.1:9420")
		if code != 1 || !strings.Contains(stderr, "--allow-remote") {
			t.Errorf("a remote metrics endpoint: exit %d, stderr %q; want it refused naming --allow-remote", code, stderr)
		}
	})
	t.Run("smtp", func(t *testing.T) {
		s, code, stderr := b.run(t, "smtp", "-n", "20", "--users-file", users, "--rcpts", "2", "--concurrency", "2")
		want(t, "smtp pipelined", s, code, stderr, "smtp", 20, nil)
		s, code, stderr = b.run(t, "smtp", "-n", "10", "--users-file", users, "--pipelining=false", "--rate", "200", "--warmup", "20ms")
		want(t, "smtp one command at a time, open loop", s, code, stderr, "smtp", 10, nil)
		if s.Mode != "open-loop" || s.TargetRate != 200 || s.WarmupOps != 4 {
			t.Errorf("open loop at 200/s with 20 ms warm-up: mode %s, rate %g, %d warm-up ops (want 4)", s.Mode, s.TargetRate, s.WarmupOps)
		}
	})
	t.Run("submission", func(t *testing.T) {
		s, code, stderr := b.run(t, "submission", "-n", "6", "--users-file", users, "--password", password, "--insecure-skip-verify", "--concurrency", "2")
		want(t, "submission", s, code, stderr, "submission", 6, nil)
		ca := filepath.Join(b.c.Dir, "tls", "h1.crt")
		s, code, stderr = b.run(t, "submission", "-n", "3", "--users-file", users, "--password", password, "--ca", ca, "--concurrency", "1")
		want(t, "submission verifying the cluster's certificate", s, code, stderr, "submission", 3, nil)
		// The cluster's self-signed certificate is not trusted without the flag.
		s, code, stderr = b.run(t, "submission", "-n", "2", "--users-file", users, "--password", password, "--concurrency", "1")
		if code != 1 || s.OK != 0 || s.Failed != 2 {
			t.Errorf("submission to a self-signed certificate without --insecure-skip-verify: exit %d, %+v\n%s", code, s.KindSummary, stderr)
		}
	})
	t.Run("pop3", func(t *testing.T) {
		// Directory users (no --users-file): the run lists them with pwclient.
		// One worker: a mailbox takes one POP3 session at a time, and a
		// second would be refused [IN-USE].
		s, code, stderr := b.run(t, "pop3", "-n", "12", "--password", password, "--retr", "2", "--concurrency", "1")
		want(t, "pop3", s, code, stderr, "pop3", 12, nil)
		if s.Users != 3 {
			t.Errorf("directory users: %d, want 3", s.Users)
		}
		ca := filepath.Join(b.c.Dir, "tls", "h1.crt")
		s, code, stderr = b.run(t, "pop3", "-n", "3", "--password", password, "--starttls", "--ca", ca, "--concurrency", "1")
		want(t, "pop3 with STLS", s, code, stderr, "pop3", 3, nil)
		s, code, stderr = b.run(t, "pop3", "-n", "4", "--users-file", users, "--password", "wrong", "--concurrency", "1")
		want(t, "pop3 wrong password", s, code, stderr, "pop3", 0, map[string]uint64{"pop3:-ERR [AUTH]": 4})
	})
	t.Run("imap", func(t *testing.T) {
		s, code, stderr := b.run(t, "imap", "-n", "8", "--password", password, "--fetch", "3", "--idle", "10ms", "--concurrency", "2")
		want(t, "imap", s, code, stderr, "imap", 8, nil)
		s, code, stderr = b.run(t, "imap", "-n", "3", "--password", password, "--starttls", "--ca", filepath.Join(b.c.Dir, "tls", "h1.crt"), "--concurrency", "1")
		want(t, "imap with STARTTLS", s, code, stderr, "imap", 3, nil)
	})
	t.Run("passwd", func(t *testing.T) {
		s, code, stderr := b.run(t, "passwd", "-n", "300", "--concurrency", "4")
		want(t, "passwd lookups", s, code, stderr, "passwd-lookup", 300, nil)
		s, code, stderr = b.run(t, "passwd", "--auth", "-n", "10", "--password", password, "--concurrency", "2")
		want(t, "passwd auths", s, code, stderr, "passwd-auth", 10, nil)
		s, code, stderr = b.run(t, "passwd", "-n", "5", "--users-file", b.usersFile(t, "nosuchuser"), "--concurrency", "1")
		want(t, "passwd unknown user", s, code, stderr, "passwd-lookup", 0, map[string]uint64{"passwd:not-found": 5})
	})
	t.Run("unknown user", func(t *testing.T) {
		nobody := b.usersFile(t, "nosuchuser")
		s, code, stderr := b.run(t, "smtp", "-n", "5", "--users-file", nobody, "--concurrency", "1")
		want(t, "smtp to an unknown user", s, code, stderr, "smtp", 0, map[string]uint64{"5xx:550": 5})
		s, code, stderr = b.run(t, "lmtp", "-n", "5", "--users-file", nobody, "--concurrency", "1")
		if k := s.Kinds["lmtp"]; code != 1 || k.Failed != 5 || len(k.Errors) != 1 || !strings.HasPrefix(loadstatKeys(k.Errors)[0], "5xx:") {
			t.Errorf("lmtp to an unknown user: exit %d, %+v\n%s", code, k, stderr)
		}
	})
	t.Run("server down", func(t *testing.T) {
		down := "127.0.0.1:" + strconv.Itoa(clustertest.FreePort(t))
		for _, cmd := range []string{"smtp", "lmtp", "pop3", "imap"} {
			s, code, stderr := b.run(t, cmd, "-n", "5", "--users-file", users, "--target", down, "--concurrency", "2")
			want(t, cmd+" to a closed port", s, code, stderr, cmd, 0, map[string]uint64{"connection:refused": 5})
		}
	})
	t.Run("mix", func(t *testing.T) {
		s, code, stderr := b.run(t, "mix", "--users-file", users, "--password", password, "--insecure-skip-verify",
			"--duration", "1s", "--mix", "smtp=10,submission=2,pop3=4,imap=4,passwd-lookup=10", "--day", "1s", "--concurrency", "4")
		// Three users, four workers: two POP3 sessions of one user meet
		// now and then, and the second is refused [IN-USE], as it should be.
		if code != 0 || s.Failed != s.Errors["pop3:-ERR [IN-USE]"] || s.OK == 0 || s.TargetRate != 90 {
			t.Fatalf("mix: exit %d, rate %g (want 3 users × 30 a day in 1 s = 90/s), %+v\n%s", code, s.TargetRate, s.KindSummary, stderr)
		}
		var sum uint64
		for _, k := range mixKinds {
			if s.Kinds[k].OK == 0 {
				t.Errorf("mix ran no %s: %v", k, s.Kinds)
			}
			sum += s.Kinds[k].OK
		}
		if sum != s.OK {
			t.Errorf("kinds add up to %d, total %d", sum, s.OK)
		}
	})
	t.Run("nss", func(t *testing.T) {
		lib := nssModule(t, b.dir)
		sock := b.c.Profile.Cluster.NSS.Socket
		s, code, stderr := b.run(t, "nss", "-n", "200", "--users-file", users, "--nss-lib", lib, "--nss-socket", sock, "--concurrency", "2")
		want(t, "nss", s, code, stderr, "nss", 200, nil)
		s, code, stderr = b.run(t, "nss", "-n", "3", "--users-file", b.usersFile(t, "nosuchuser"), "--nss-lib", lib, "--nss-socket", sock, "--concurrency", "1")
		want(t, "nss unknown user", s, code, stderr, "nss", 0, map[string]uint64{"nss:NOTFOUND": 3})
	})
	t.Run("refuses remote targets", func(t *testing.T) {
		_, code, stderr := b.run(t, "smtp", "-n", "1", "--users-file", users, "--target", "192.0.2.1:25")
		if code != 1 || !strings.Contains(stderr, "--allow-remote") || !strings.Contains(stderr, "192.0.2.1") {
			t.Errorf("a target outside the profile's network: exit %d\n%s", code, stderr)
		}
	})
	t.Run("text summary", func(t *testing.T) {
		cmd := exec.Command(b.bin, "mix", "--profile", b.c.ProfilePath, "--password", password, "--insecure-skip-verify",
			"--duration", "2s", "--warmup", "500ms", "--day", "1s", "--concurrency", "3", "--progress", "never")
		out, err := cmd.CombinedOutput()
		for _, want := range []string{"open loop at 171/s", "passwd-lookup", "smtp", "total", "p99", "3 users"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("text summary lacks %q: %v\n%s", want, err, out)
			}
		}
		t.Logf("\n%s", out)
	})
}

func loadstatKeys(m map[string]uint64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// nssModule is $CORREO_NSS_LIB, or the module built from src/nss.
func nssModule(t *testing.T, dir string) string {
	if p := os.Getenv("CORREO_NSS_LIB"); p != "" {
		return p
	}
	testutil.NeedCommand(t, "gcc")
	out := filepath.Join(dir, "nss")
	if b, err := exec.Command("make", "-C", "../../nss", "OUT="+out).CombinedOutput(); err != nil {
		t.Fatalf("building the NSS module: %v\n%s", err, b)
	}
	return filepath.Join(out, "libnss_correo.so.2")
}
