package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"correo/internal/clustertest"
	"correo/src/cluster"
	"correo/src/directory"
)

// The GTUBE test string: rspamd rejects any message carrying it.
const gtubeString = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// TestMilterRspamd: smtpd hands every message to a real rspamd (its proxy
// worker in milter mode) from the profile's [[cluster.milter]]: GTUBE is
// refused at DATA, a clean message arrives with rspamd's headers; with
// rspamd stopped, the mx milter's on_failure "tempfail" answers 451 and
// the relay milter's "accept" queues the message unfiltered. Nothing
// acknowledged is lost.
func TestMilterRspamd(t *testing.T) {
	r := clustertest.StartRspamd(t, `good.example. 60 IN TXT "v=spf1 ip4:127.0.1.0/24 -all"`)
	addrs := []string{"127.0.0.1"}
	ports := fmt.Sprintf("submission = %d\nrelay = %d\n", clustertest.FreePort(t, addrs...), clustertest.FreePort(t, addrs...))
	milters := fmt.Sprintf("[[cluster.milter]]\nname = \"rspamd\"\naddress = \"tcp:%s\"\nroles = [\"mx\"]\ntimeout = \"1m\"\n"+
		"[[cluster.milter]]\nname = \"rspamd-out\"\naddress = \"tcp:%s\"\nroles = [\"relay\"]\ntimeout = \"1m\"\non_failure = \"accept\"\n", r.Addr(), r.Addr())
	c := clustertest.NewCluster(t, clustertest.Spec{Network: "127.0.0.0/24", TrustedNetwork: true,
		ClusterTOML: ports + "[cluster.mail_auth]\ninbound = \"record\"\n" + milters,
		Hosts:       []clustertest.HostSpec{{Name: "mx1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "mx", "relay", "storage"}}}})
	e := &env{c: c}
	e.passwd = c.StartPasswdd(t, "mx1")
	hash, err := directory.HashPassword("secret", c.Profile.Cluster.Passwd.BcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	c.AddUsers(t, directory.User{Name: "ana", Storage: "mx1"}, directory.User{Name: "bob", Storage: "mx1", Hash: hash})
	e.pdeliv = c.StartDaemon(t, "pdeliveryd", "mx1", true)
	e.smtpd = c.StartDaemon(t, "smtpd", "mx1", true)
	mx, _ := c.Profile.Listen("mx1", cluster.SvcSMTP)
	sub, _ := c.Profile.Listen("mx1", cluster.SvcSubmission)
	inbox := filepath.Join(c.Maildir("mx1", "ana"), "new")
	msg := func(from, subject, body string) string {
		return "From: <" + from + ">\nTo: <ana@correo.test>\nSubject: " + subject + "\nMessage-ID: <" + subject + "@x>\nDate: Thu, 03 Dec 2026 10:00:00 +0000\n\n" + body + "\n"
	}

	err = sendFrom(t, "127.0.1.1", mx.String(), "", "x@good.example", "ana@correo.test", msg("x@good.example", "gtube", gtubeString))
	if err == nil || !strings.HasPrefix(err.Error(), "5") {
		t.Errorf("GTUBE through rspamd: %v, want a 5xx refusal", err)
	}
	if err := sendFrom(t, "127.0.1.1", mx.String(), "", "x@good.example", "ana@correo.test", msg("x@good.example", "clean", "The usual place at one.")); err != nil {
		t.Fatalf("a clean message: %v", err)
	}
	got := waitFile(t, e, inbox)
	if !strings.Contains(got, "X-Spamd-Result:") || !strings.Contains(got, "Subject: clean") || !strings.Contains(got, "The usual place at one.") {
		t.Errorf("a clean message lacks rspamd's headers or its own content:\n%s", got)
	}

	// rspamd down: the mx's milter tempfails, the relay's lets mail pass.
	r.Proc.Stop(syscall.SIGKILL)
	err = sendFrom(t, "127.0.1.1", mx.String(), "", "x@good.example", "ana@correo.test", msg("x@good.example", "down", "hola"))
	if err == nil || !strings.HasPrefix(err.Error(), "451") {
		t.Errorf("mx mail with rspamd down: %v, want 451 (on_failure tempfail)", err)
	}
	if err := sendFrom(t, "127.0.0.1", sub.String(), "bob", "bob@correo.test", "ana@correo.test", msg("bob@correo.test", "out", "hola")); err != nil {
		t.Fatalf("relay mail with rspamd down and on_failure accept: %v", err)
	}
	got = waitFile(t, e, inbox)
	if !strings.Contains(got, "Subject: out") || strings.Contains(got, "X-Spamd-Result:") {
		t.Errorf("the unfiltered message:\n%s", got)
	}
	if !strings.Contains(e.smtpd.Log.String(), "rspamd-out") {
		t.Errorf("smtpd did not log the milter it passed over:\n%s", e.smtpd.Log.String())
	}
}
