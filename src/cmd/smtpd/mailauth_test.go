package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	netsmtp "net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/dkimkeys"
	"correo/src/mailauth"
)

// quoted splits a TXT value into 255-byte character-strings.
func quoted(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, fmt.Sprintf("%q", s[:255]))
		s = s[255:]
	}
	return strings.Join(append(parts, fmt.Sprintf("%q", s)), " ")
}

// sendFrom submits one message from a given source address, optionally
// with AUTH PLAIN; it returns the DATA reply's error (nil: 250).
func sendFrom(t *testing.T, src, addr, user, from, to, msg string) error {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := netsmtp.NewClient(nc, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if user != "" {
		if err := c.Auth(netsmtp.PlainAuth("", user, "secret", "127.0.0.1")); err != nil {
			t.Fatalf("AUTH: %v", err)
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	w.Write([]byte(strings.ReplaceAll(msg, "\n", "\r\n")))
	return w.Close()
}

// waitFile waits for the one message in dir and returns it.
func waitFile(t *testing.T, e *env, dir string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ents, _ := os.ReadDir(dir)
		if len(ents) == 1 {
			b, err := os.ReadFile(filepath.Join(dir, ents[0].Name()))
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(dir, ents[0].Name()))
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d messages after 30s, want 1\nsmtpd log:\n%s", dir, len(ents), e.smtpd.Log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMailAuthentication: the mx checks SPF, DKIM and DMARC of mail from
// outside against a real DNS server (refusing p=reject failures, filing
// p=quarantine failures in Junk, replacing a forged Authentication-
// Results), and the relay signs its users' mail with the cluster's
// Ed25519 and RSA keys, which verify against the published records.
func TestMailAuthentication(t *testing.T) {
	keyDir := clustertest.ShortTempDir(t, "dkim-")
	f := &dkimkeys.File{}
	recs, err := dkimkeys.New(f, keyDir, "correo.test", time.Now(), -1)
	if err != nil {
		t.Fatal(err)
	}
	f.Keys = recs
	records := filepath.Join(keyDir, "dkim.toml")
	if err := f.Save(records); err != nil {
		t.Fatal(err)
	}
	zone := []string{
		`good.example. 60 IN TXT "v=spf1 ip4:127.0.1.0/24 -all"`,
		`_dmarc.good.example. 60 IN TXT "v=DMARC1; p=reject"`,
		`reject.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.reject.example. 60 IN TXT "v=DMARC1; p=reject"`,
		`quar.example. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.quar.example. 60 IN TXT "v=DMARC1; p=quarantine"`,
		`correo.test. 60 IN TXT "v=spf1 ip4:127.0.0.0/24 -all"`,
		`_dmarc.correo.test. 60 IN TXT "v=DMARC1; p=reject"`,
	}
	for _, r := range recs {
		zone = append(zone, r.Selector+"._domainkey.correo.test. 60 IN TXT "+quoted(r.TXT()))
	}
	dnsAddr := startTestDNS(t, zone...)
	addrs := []string{"127.0.0.1"}
	ports := fmt.Sprintf("submission = %d\nrelay = %d\n", clustertest.FreePort(t, addrs...), clustertest.FreePort(t, addrs...))
	c := clustertest.NewCluster(t, clustertest.Spec{Network: "127.0.0.0/24", TrustedNetwork: true,
		ClusterTOML: ports + fmt.Sprintf("[cluster.mail_auth]\nauthserv_id = \"mx.correo.test\"\ndkim_records = %q\ndkim_key_dir = %q\n", records, keyDir),
		Hosts:       []clustertest.HostSpec{{Name: "mx1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "mx", "relay", "storage"}}}})
	e := &env{c: c}
	e.passwd = c.StartPasswdd(t, "mx1")
	hash, err := directory.HashPassword("secret", c.Profile.Cluster.Passwd.BcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	c.AddUsers(t, directory.User{Name: "ana", Storage: "mx1"}, directory.User{Name: "bob", Storage: "mx1", Hash: hash})
	e.pdeliv = c.StartDaemon(t, "pdeliveryd", "mx1", true)
	e.smtpd = c.StartDaemon(t, "smtpd", "mx1", true, "-resolvers", dnsAddr)
	mx, _ := c.Profile.Listen("mx1", cluster.SvcSMTP)
	sub, _ := c.Profile.Listen("mx1", cluster.SvcSubmission)
	inbox := filepath.Join(c.Maildir("mx1", "ana"), "new")
	junk := filepath.Join(c.Maildir("mx1", "ana"), ".Junk", "new")
	msg := func(from, subject string) string {
		return "From: <" + from + ">\nTo: <ana@correo.test>\nSubject: " + subject + "\nMessage-ID: <" + subject + "@x>\nDate: Thu, 03 Dec 2026 10:00:00 +0000\n\nhola\n"
	}

	// A sender that passes SPF, aligned with From: DMARC passes. The
	// Authentication-Results it forged under our id is gone; ours is on top.
	forged := "Authentication-Results: mx.correo.test; dmarc=pass header.from=reject.example\n" + msg("x@good.example", "good")
	if err := sendFrom(t, "127.0.1.1", mx.String(), "", "x@good.example", "ana@correo.test", forged); err != nil {
		t.Fatalf("aligned mail refused: %v", err)
	}
	got := waitFile(t, e, inbox)
	if !strings.Contains(got, "Authentication-Results: mx.correo.test;") || !strings.Contains(got, "spf=pass") || !strings.Contains(got, "dmarc=pass") {
		t.Errorf("no Authentication-Results with spf=pass dmarc=pass:\n%s", got)
	}
	if strings.Contains(got, "header.from=reject.example") {
		t.Errorf("the forged Authentication-Results survived:\n%s", got)
	}

	// p=reject and the check fails: 550 5.7.1 at the end of DATA.
	err = sendFrom(t, "127.0.1.1", mx.String(), "", "x@reject.example", "ana@correo.test", msg("x@reject.example", "forged"))
	if err == nil || !strings.HasPrefix(err.Error(), "550") || !strings.Contains(err.Error(), "5.7.1 Message refused by the DMARC policy of reject.example") {
		t.Errorf("a DMARC p=reject failure: %v, want 550 5.7.1", err)
	}
	// A forged From at the cluster's own p=reject domain, from outside.
	err = sendFrom(t, "127.0.1.1", mx.String(), "", "x@good.example", "ana@correo.test", msg("bob@correo.test", "spoof"))
	if err == nil || !strings.HasPrefix(err.Error(), "550") || !strings.Contains(err.Error(), "5.7.1 Message refused by the DMARC policy of correo.test") {
		t.Errorf("a forged From: the cluster's own domain: %v, want 550 5.7.1", err)
	}

	// p=quarantine: accepted, filed in Junk.
	if err := sendFrom(t, "127.0.1.1", mx.String(), "", "x@quar.example", "ana@correo.test", msg("x@quar.example", "quar")); err != nil {
		t.Fatalf("a DMARC p=quarantine failure refused: %v", err)
	}
	got = waitFile(t, e, junk)
	if !strings.Contains(got, "Subject: quar") || !strings.Contains(got, "dmarc=fail") {
		t.Errorf("the quarantined message:\n%s", got)
	}
	if ents, _ := os.ReadDir(inbox); len(ents) != 0 {
		t.Errorf("INBOX got %d messages, want the quarantined one in Junk only", len(ents))
	}

	// A user's mail is signed with both keys, and verifies.
	if err := sendFrom(t, "127.0.0.1", sub.String(), "bob", "bob@correo.test", "ana@correo.test", msg("bob@correo.test", "signed")); err != nil {
		t.Fatalf("submission: %v", err)
	}
	got = waitFile(t, e, inbox)
	if n := strings.Count(got, "DKIM-Signature:"); n != 2 {
		t.Fatalf("%d DKIM signatures, want 2 (Ed25519 and RSA):\n%s", n, got)
	}
	if strings.Contains(got, "Authentication-Results: mx.correo.test") {
		t.Errorf("the cluster's own mail was checked as if from outside:\n%s", got)
	}
	v := &mailauth.Verifier{AuthServID: "test", Resolver: mailauth.NewResolver(dnsAddr)}
	res, err := v.Check(context.Background(), mailauth.Input{ClientIP: netip.MustParseAddr("127.0.0.1"), Helo: "mx1.correo.test",
		MailFrom: "bob@correo.test", Message: strings.NewReader(strings.ReplaceAll(got, "\n", "\r\n"))})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.DKIM) != 2 || res.DKIM[0].Result != "pass" || res.DKIM[1].Result != "pass" || !res.Aligned {
		t.Errorf("the signatures do not verify: %+v\n%s", res.DKIM, got)
	}
	// A changed body breaks them.
	res, _ = v.Check(context.Background(), mailauth.Input{ClientIP: netip.MustParseAddr("127.0.0.1"), Helo: "mx1.correo.test",
		MailFrom: "bob@correo.test", Message: strings.NewReader(strings.ReplaceAll(strings.Replace(got, "hola", "adios", 1), "\n", "\r\n"))})
	for _, d := range res.DKIM {
		if d.Result == "pass" {
			t.Errorf("a signature passes on a changed body: %+v", d)
		}
	}
}
