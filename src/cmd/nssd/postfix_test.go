package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/directory"
)

// TestPostfixSocketmap runs a private Postfix as the cluster's MX with
// every table answered by nssd's socketmap (the main.cf lines the README
// gives): correo.test as a virtual mailbox domain, other.test as a relay
// domain, both cluster domains. Postfix accepts only existing users,
// refuses unknown and disabled ones at RCPT with 550, defers (4xx, never
// 5xx) while passwd is down, and delivers each recipient by LMTP straight
// to its storage host's pdeliveryd; after `correoctl mailbox move` it
// delivers to the new host without a reload.
func TestPostfixSocketmap(t *testing.T) {
	testutil.NeedRoot(t)
	run := clustertest.ShortTempDir(t, "nssrun-")
	// proxymap runs as the postfix user and must reach the socket.
	os.Chmod(run, 0o755)
	sock := filepath.Join(run, "socketmap.sock")
	c := clustertest.NewCluster(t, clustertest.Spec{
		Domains: []string{"correo.test", "other.test"},
		ClusterTOML: fmt.Sprintf("[cluster.nss]\nsocket = %q\nsocketmap = %q\n[cluster.moves]\njournal_dir = %q\n",
			filepath.Join(run, "nssd.sock"), sock, filepath.Join(run, "moves")),
		Hosts: []clustertest.HostSpec{
			{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}},
			{Name: "st2", Address: "127.0.0.2", Roles: []string{"storage"}},
		}})
	pw := c.StartPasswdd(t, "st1")
	c.AddUsers(t,
		directory.User{Name: "ana", Storage: "st1", Aliases: []string{"anita"}},
		directory.User{Name: "eva", Storage: "st2"},
		directory.User{Name: "fede", Storage: "st1", State: directory.StateDisabled},
	)
	c.StartDaemon(t, "pdeliveryd", "st1", true)
	c.StartDaemon(t, "pdeliveryd", "st2", true)
	c.StartDaemon(t, "nssd", "st1", true)
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o666 {
		t.Fatalf("socketmap socket: %v %v", st, err)
	}

	table := func(name string) string { return "proxy:socketmap:unix:" + sock + ":" + name }
	pf := clustertest.StartPostfix(t, clustertest.PostfixConfig{Main: map[string]string{
		"virtual_mailbox_domains": "correo.test",
		"virtual_mailbox_maps":    table("virtual_mailbox"),
		"virtual_alias_maps":      table("virtual_alias"),
		"relay_domains":           "other.test",
		"relay_recipient_maps":    table("relay_recipient"),
		"transport_maps":          table("transport"),
	}})

	// What Postfix sees through its own lookup client.
	postmap := testutil.NeedCommand(t, "postmap")
	for _, q := range []struct{ key, table, want string }{
		{"ana@correo.test", "transport", "lmtp:inet:[127.0.0.1]:"},
		{"eva@other.test", "transport", "lmtp:inet:[127.0.0.2]:"},
		{"anita@correo.test", "virtual_alias", "ana@correo.test"},
		{"anita+x@correo.test", "virtual_alias", "ana+x@correo.test"},
		{"ana@correo.test", "virtual_mailbox", "a/n/a/ana/Maildir/"},
	} {
		out, err := exec.Command(postmap, "-c", pf.ConfDir, "-q", q.key, "socketmap:unix:"+sock+":"+q.table).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), q.want) {
			t.Errorf("postmap -q %s %s: %q %v, want %q...", q.key, q.table, out, err, q.want)
		}
	}

	// RCPT: who is accepted, refused, deferred.
	rcpts := func(t *testing.T, want map[string]int) {
		t.Helper()
		s := clustertest.DialText(t, "tcp", pf.Addr(), 220)
		s.Cmd("EHLO test.example")
		if code, msg := s.Cmd("MAIL FROM:<sender@example.org>"); code != 250 {
			t.Fatalf("MAIL: %d %s", code, msg)
		}
		for rcpt, code := range want {
			if got, msg := s.Cmd("RCPT TO:<%s>", rcpt); got != code {
				t.Errorf("RCPT %s: %d %s, want %d", rcpt, got, msg, code)
			}
		}
		s.Cmd("QUIT")
	}
	rcpts(t, map[string]int{
		"ana@correo.test": 250, "anita@correo.test": 250, "ana+news@correo.test": 250, "eva@other.test": 250,
		"nadie@correo.test": 550, "nadie@other.test": 550, "fede@correo.test": 550,
		"../etc@correo.test": 550, "a/b@correo.test": 550,
	})

	send := func(t *testing.T, subject string, to ...string) {
		t.Helper()
		s := clustertest.DialText(t, "tcp", pf.Addr(), 220)
		s.Cmd("EHLO test.example")
		s.Cmd("MAIL FROM:<sender@example.org>")
		for _, r := range to {
			if code, msg := s.Cmd("RCPT TO:<%s>", r); code != 250 {
				t.Fatalf("RCPT %s: %d %s", r, code, msg)
			}
		}
		if code, msg := s.Cmd("DATA"); code != 354 {
			t.Fatalf("DATA: %d %s", code, msg)
		}
		s.Line("Subject: %s", subject)
		s.Line("")
		s.Line("body of %s", subject)
		if code, msg := s.Cmd("."); code != 250 {
			t.Fatalf("end of DATA: %d %s", code, msg)
		}
		s.Cmd("QUIT")
	}
	count := func(host, user, subject string) int {
		n := 0
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(c.Maildir(host, user), sub))
			for _, e := range ents {
				b, _ := os.ReadFile(filepath.Join(c.Maildir(host, user), sub, e.Name()))
				if strings.Contains(string(b), "Subject: "+subject+"\n") {
					n++
				}
			}
		}
		return n
	}
	send(t, "first", "ana@correo.test", "anita+x@correo.test", "eva@other.test")
	pf.WaitQueueEmpty(t, 60*time.Second)
	// ana and anita+x (an alias with an extension, rewritten by Postfix
	// to ana+x) are one mailbox: pdeliveryd stores one copy.
	if n := count("st1", "ana", "first"); n != 1 {
		t.Errorf("ana on st1 holds %d copies of the first message, want 1\n%s", n, pf.Log())
	}
	if lg := pf.Log(); !strings.Contains(lg, "to=<ana+x@correo.test>, orig_to=<anita+x@correo.test>") {
		t.Errorf("anita+x was not rewritten to ana+x by virtual_alias_maps:\n%s", lg)
	}
	if n := count("st2", "eva", "first"); n != 1 {
		t.Errorf("eva on st2 holds %d copies, want 1\n%s", n, pf.Log())
	}
	if lg := pf.Log(); !strings.Contains(lg, "relay=127.0.0.2[127.0.0.2]") || !strings.Contains(lg, "relay=127.0.0.1[127.0.0.1]") {
		t.Errorf("postfix did not deliver to both storage hosts by LMTP:\n%s", lg)
	}

	// The mailbox moves to st2; Postfix, not reloaded, follows it.
	correoctl := clustertest.Build(t, "correoctl", true)
	if out, err := exec.Command(correoctl, "mailbox", "move", "-profile", c.ProfilePath, "-q", "ana", "-to", "st2").CombinedOutput(); err != nil {
		t.Fatalf("correoctl mailbox move: %v\n%s", err, out)
	}
	send(t, "second", "ana@correo.test")
	pf.WaitQueueEmpty(t, 60*time.Second)
	if n := count("st2", "ana", "second"); n != 1 {
		t.Errorf("after the move, ana on st2 holds %d copies of the second message, want 1\n%s", n, pf.Log())
	}
	if n := count("st2", "ana", "first"); n != 1 {
		t.Errorf("the move did not bring ana's first messages: %d", n)
	}

	// passwd down: every recipient is deferred, none refused.
	pw.Stop(syscall.SIGKILL)
	rcpts(t, map[string]int{"ana@correo.test": 451, "nadie@correo.test": 451, "eva@other.test": 451})
}
