package netns

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/pwadmin"
	"correo/src/pwclient"
	"correo/src/runner"
)

// prefix names this test process's namespaces and links, so two runs of
// the suite (two sessions, a developer and CI) cannot trip over each
// other; it stays short because link names have 15 bytes.
var prefix = fmt.Sprintf("t%04x", os.Getpid()&0xffff)

// bootExample builds the programs and boots hosts/example.toml in
// namespaces named with a test prefix, torn down at the end.
func bootExample(t *testing.T) *runner.Runner {
	t.Helper()
	return bootExampleWith(t, nil, nil)
}

// bootExampleWith lets a scenario adjust the profile (e.g. a short retry
// ladder) before the cluster boots.
func bootExampleWith(t *testing.T, adjust func(*cluster.Profile), zones map[string]string) *runner.Runner {
	t.Helper()
	testutil.NeedRoot(t)
	for _, c := range []string{"ip", "nsd", "rsyslogd", "unshare"} {
		testutil.NeedCommand(t, c)
	}
	dir := t.TempDir()
	bin := clustertest.BuildAll(t, false)
	p, err := cluster.Load("../../hosts/example.toml", cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	// Test users' hashes are not what these scenarios check: bcrypt's
	// minimum cost keeps logins quick on a loaded machine.
	p.Cluster.Passwd.BcryptCost = 4
	if adjust != nil {
		adjust(p)
	}
	var logs bytes.Buffer
	r := &runner.Runner{Profile: p, StateDir: filepath.Join(dir, "state"), BinDir: bin,
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Netns: &runner.Netns{Prefix: prefix}, ReadyTimeout: 30 * time.Second,
		ExtraZones: zones}
	t.Cleanup(func() {
		r.Down()
		if t.Failed() {
			t.Logf("runner log:\n%s", logs.String())
			filepath.Walk(r.StateDir, func(path string, info os.FileInfo, err error) error {
				if err == nil && strings.HasSuffix(path, ".log") && !info.IsDir() {
					b, _ := os.ReadFile(path)
					if len(b) > 3000 {
						b = b[len(b)-3000:]
					}
					t.Logf("--- %s:\n%s", path, b)
				}
				return nil
			})
		}
	})
	if err := r.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestExampleClusterBoots boots the example cluster and checks what the
// paper's design rests on: the DNS pools as the Internet sees them, the
// password service replicated between two hosts, delivery from an MX host
// to the user's storage host, and every host logging to the loghost.
func TestExampleClusterBoots(t *testing.T) {
	r := bootExample(t)
	p := r.Profile

	// From outside: the MX records and the round-robin pools.
	var mx []string
	var pop []string
	err := runner.InNetns(r.Netns.Name("outside"), func() error {
		c := &dns.Client{Timeout: 2 * time.Second}
		ask := func(name string, qt uint16) []dns.RR {
			m := new(dns.Msg)
			m.SetQuestion(name, qt)
			in, _, err := c.Exchange(m, "10.77.0.2:53")
			if err != nil {
				t.Fatalf("DNS %s from outside: %v", name, err)
			}
			return in.Answer
		}
		for _, rr := range ask("correo.example.", dns.TypeMX) {
			mx = append(mx, rr.(*dns.MX).Mx)
		}
		for _, rr := range ask("pop.correo.example.", dns.TypeA) {
			pop = append(pop, rr.(*dns.A).A.String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(mx)
	sort.Strings(pop)
	if strings.Join(mx, ",") != "mx1.correo.example.,mx2.correo.example." || strings.Join(pop, ",") != "10.77.0.10,10.77.0.11" {
		t.Fatalf("outside sees MX %v and pop %v", mx, pop)
	}

	ring, err := keyfile.Load(p.Cluster.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	// An operator on mx1 adds users on the primary (pw1); letters
	// placement puts juan on store1 and zoe on store3.
	err = runner.InNetns(r.Netns.Name("mx1"), func() error {
		a, _ := p.Listen("pw1", cluster.SvcPasswdAdmin)
		adm, err := pwadmin.Dial(context.Background(), a.String(), ring)
		if err != nil {
			return err
		}
		defer adm.Close()
		for _, n := range []string{"juan", "zoe"} {
			if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserAdd, User: &directory.User{Name: n}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The secondary must hold the users too: pw2 follows pw1 across hosts.
	err = runner.InNetns(r.Netns.Name("mx1"), func() error {
		pc, err := pwclient.FromProfile(p, ring, nil)
		if err != nil {
			return err
		}
		defer pc.Close()
		deadline := time.Now().Add(15 * time.Second)
		for {
			if info, err := pc.Ping(context.Background(), pwclient.Secondary); err == nil && info.Users == 2 {
				return nil
			}
			if time.Now().After(deadline) {
				t.Fatal("pw2 never replicated the users from pw1")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatal(err)
	}

	// mx1 delivers with pdelivery, run as a process in mx1's namespace:
	// passwdd names each user's storage host, LMTP carries the message
	// across the namespaces. (A process, not InNetns: src/delivery dials
	// from several goroutines, and only the calling thread is inside.)
	bin := filepath.Dir(r.BinDir + "/")
	for _, user := range []string{"juan", "zoe"} {
		cmd := exec.Command("ip", "netns", "exec", r.Netns.Name("mx1"), filepath.Join(bin, "pdelivery"),
			"-profile", r.ProfilePath, "-f", "a@b.example", "-d", user+"@correo.example")
		cmd.Stdin = strings.NewReader("From: a@b.example\nTo: " + user + "@correo.example\nSubject: across namespaces\nMessage-ID: <ns-" + user + "@b.example>\n\nhola\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pdelivery to %s from mx1: %v\n%s", user, err, out)
		}
	}
	for _, user := range []string{"juan", "zoe"} {
		var stored string
		runner.InNetns(r.Netns.Name("mx1"), func() error {
			pc, err := pwclient.FromProfile(p, ring, nil)
			if err != nil {
				return err
			}
			defer pc.Close()
			u, err := pc.LookupName(context.Background(), user)
			stored = u.Storage
			return err
		})
		h, err := p.Host(stored)
		if err != nil {
			t.Fatalf("%s has storage host %q: %v", user, stored, err)
		}
		md, _ := p.LayoutScheme().MaildirPath(h.Storage.DataDir, user)
		entries, _ := os.ReadDir(filepath.Join(md, "new"))
		if len(entries) != 1 {
			t.Errorf("%s: %d messages in %s, want 1", user, len(entries), md)
		}
	}

	// Every daemon logs to the central loghost, one file per host.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var missing []string
		for _, h := range []string{"pw1", "pw2", "store1", "store2", "store3", "ns1"} {
			if _, err := os.Stat(filepath.Join(r.LoghostDir(), "hosts", h+".log")); err != nil {
				missing = append(missing, h)
			}
		}
		all, _ := os.ReadFile(filepath.Join(r.LoghostDir(), "all.log"))
		// pdeliveryd logs one "delivered" line per recipient, with its host.
		if len(missing) == 0 && bytes.Count(all, []byte(`pdeliveryd`)) > 0 && bytes.Count(all, []byte(`msg="delivered"`)) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the loghost has no file for %v; all.log:\n%s", missing, all)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestTeardownLeavesNothing boots and stops the cluster, then checks no
// namespace or link of the run remains.
func TestTeardownLeavesNothing(t *testing.T) {
	r := bootExample(t)
	r.Down()
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), prefix+"-") {
		t.Fatalf("namespaces left after Down:\n%s", out)
	}
	if err := exec.Command("ip", "link", "show", prefix+"br").Run(); err == nil {
		t.Fatal("bridge left after Down")
	}
}
