package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/src/directory"
	"correo/src/nss/nsstest"
)

// sendmailLocal are the sendmail.mc lines README's "Sendmail with
// pdelivery" documents, with the test's paths: the binary built for the
// test, its profile and its pdeliveryd socket (a host uses the defaults).
func sendmailLocal(bin, profile, socket string) []string {
	return []string{
		"define(`LOCAL_MAILER_PATH', `" + bin + "')dnl",
		"define(`LOCAL_MAILER_ARGS', `pdelivery -profile " + profile + " -socket " + socket + " -f $g -d $u')dnl",
		"MODIFY_MAILER_FLAGS(`LOCAL', `-w')dnl",
	}
}

// TestSendmailLocalMailer runs a private Sendmail (Debian's, unpacked,
// internal/clustertest/sendmail.go) with pdelivery as its local mailer
// against passwdd, nssd and pdeliveryd, and checks that each of
// pdelivery's exit codes becomes the Sendmail behaviour it should:
// delivered; unknown user (67) and over quota (69) bounced to the sender
// (a cluster user, so the DSN lands in her Maildir); passwd down (75)
// queued, and delivered by the next queue run once passwd is back.
// Sendmail's getpwnam reaches the cluster's users through libnss_correo
// and nssd, as on a host, so a passwd outage is also one for Sendmail.
func TestSendmailLocalMailer(t *testing.T) {
	lib := nsstest.NeedLib(t)
	nssDir := clustertest.ShortTempDir(t, "nss-")
	os.Chmod(nssDir, 0o755)
	c := clustertest.NewCluster(t, clustertest.Spec{
		Hosts:       []clustertest.HostSpec{{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}}},
		ClusterTOML: fmt.Sprintf("[cluster.nss]\nsocket = %q\n", filepath.Join(nssDir, "nssd.sock")),
	})
	bin := clustertest.Build(t, "pdelivery", true)
	pw := c.StartPasswdd(t, "st1")
	c.AddUsers(t,
		directory.User{Name: "ana", Storage: "st1"},
		directory.User{Name: "eva", Storage: "st1"},
		directory.User{Name: "gus", Storage: "st1", Quota: 10},
		directory.User{Name: "ivan", Storage: "st1"},
	)
	c.StartDaemon(t, "pdeliveryd", "st1", true)
	c.StartDaemon(t, "nssd", "st1", true)
	socket := filepath.Join(c.StateDir("st1", "pdeliveryd"), "lmtp.sock")
	sm := clustertest.NewSendmail(t, clustertest.SendmailConfig{
		Local:        sendmailLocal(bin, c.ProfilePath, socket),
		Domains:      c.Profile.Cluster.Domains,
		NSSLib:       lib,
		NSSSocketDir: nssDir,
	})
	mlocal := sm.Mailer(t, "local")
	t.Logf("Mlocal:\n%s", mlocal)
	if !strings.Contains(mlocal, "P="+bin+",") || !strings.Contains(mlocal, "A=pdelivery -profile "+c.ProfilePath) {
		t.Fatalf("the local mailer is not pdelivery:\n%s", mlocal)
	}

	send := func(t *testing.T, to, subject string) (int, string) {
		t.Helper()
		msg := "From: eva@correo.test\nTo: " + to + "\nSubject: " + subject + "\n\nsent through Sendmail\n"
		// -odi: deliver before exiting; -oem: errors are mailed back to
		// the sender, as for mail from the network.
		return sm.Run(t, msg, "-odi", "-oi", "-oem", "-f", "eva@correo.test", to)
	}
	bounces := func() []string {
		var out []string
		for _, m := range messages(t, c.Maildir("st1", "eva")) {
			if strings.Contains(m, "MAILER-DAEMON") {
				out = append(out, m)
			}
		}
		return out
	}

	t.Run("delivered", func(t *testing.T) {
		if code, out := send(t, "ana", "hola"); code != 0 {
			t.Fatalf("sendmail: exit %d\n%s", code, out)
		}
		got := messages(t, c.Maildir("st1", "ana"))
		if len(got) != 1 || !strings.Contains(got[0], "Subject: hola\n") || !strings.Contains(got[0], "Return-Path: <eva@correo.test>\n") ||
			!strings.Contains(got[0], "Delivered-To: ana@correo.test\n") {
			t.Fatalf("ana's Maildir: %q", got)
		}
	})
	t.Run("unknown user bounces", func(t *testing.T) {
		code, out := send(t, "nadie@correo.test", "a nadie")
		b := bounces()
		if len(b) != 1 || !strings.Contains(b[0], "nadie") || !strings.Contains(b[0], "Status: 5.1.1") ||
			!strings.Contains(b[0], "Diagnostic-Code: X-Unix; 67") || !strings.HasPrefix(b[0], "Return-Path: <>\n") {
			t.Fatalf("sendmail exit %d\n%s\nbounces in eva's Maildir: %q", code, out, b)
		}
		if q := sm.QueueFiles(t); len(q) != 0 {
			t.Errorf("queued, not bounced: %v", q)
		}
	})
	t.Run("over quota bounces", func(t *testing.T) {
		code, out := send(t, "gus", "a gus")
		b := bounces()
		if len(b) != 2 || !strings.Contains(b[1], "gus") || !strings.Contains(b[1], "Action: failed") ||
			!strings.Contains(b[1], "Diagnostic-Code: X-Unix; 69") {
			t.Fatalf("sendmail exit %d\n%s\nbounces in eva's Maildir: %q", code, out, b)
		}
		if q := sm.QueueFiles(t); len(q) != 0 {
			t.Errorf("queued, not bounced: %v", q)
		}
	})
	t.Run("passwd down queues", func(t *testing.T) {
		pw.Stop(syscall.SIGKILL)
		// ivan was never looked up: nssd has no cached answer for him.
		code, out := send(t, "ivan", "a ivan")
		if q := sm.QueueFiles(t); len(q) != 1 {
			t.Fatalf("sendmail exit %d\n%s\nqueue: %v, bounces: %q", code, out, q, bounces())
		}
		if n := len(bounces()); n != 2 {
			t.Errorf("%d bounces, want still 2", n)
		}
		if _, listing := sm.Run(t, "", "-bp"); !strings.Contains(listing, "ivan") || !strings.Contains(listing, "Deferred") {
			t.Errorf("sendmail -bp:\n%s", listing)
		}
		c.StartPasswdd(t, "st1")
		// Sendmail retries at every queue run; the test runs them itself, a
		// few times: a passwdd just restarted may still miss a lookup.
		for i := 0; i < 5 && len(sm.QueueFiles(t)) > 0; i++ {
			if code, out := sm.Run(t, "", "-q"); code != 0 {
				t.Errorf("sendmail -q: exit %d\n%s", code, out)
			}
			if len(sm.QueueFiles(t)) > 0 {
				time.Sleep(time.Second)
			}
		}
		if q := sm.QueueFiles(t); len(q) != 0 {
			t.Errorf("still queued after passwd is back: %v", q)
		}
		if got := messages(t, c.Maildir("st1", "ivan")); len(got) != 1 || !strings.Contains(got[0], "Subject: a ivan\n") {
			t.Errorf("ivan's Maildir: %q", got)
		}
	})
}
