package main

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/directory"
)

// The relay role's tests run smtpd with roles mx+relay on 127.0.0.1,
// a DNS server and "the Internet's" MX hosts (go-smtp servers on
// 127.0.0.2 and 127.0.0.3) in the test; smtpd's remote delivery is
// pointed at them with -resolvers and -remote-port.

// outsideMX is an outside MX; received renders what it accepted as
// "<from> rcpt1,rcpt2" and the message on the next line.
type outsideMX struct{ clustertest.MX }

func (m *outsideMX) received() []string {
	var out []string
	for _, ml := range m.Mails() {
		out = append(out, "<"+ml.From+"> "+strings.Join(ml.To, ",")+"\n"+ml.Body)
	}
	return out
}

// startTestDNS serves the records (master-file lines) for src/remote's
// MX lookups.
func startTestDNS(t testing.TB, records ...string) string {
	t.Helper()
	return clustertest.StartDNS(t, clustertest.Zone(t, records...))
}

type relayEnv struct {
	*env
	good, flaky *outsideMX
	mxPort      int
}

// setupRelay starts passwdd, pdeliveryd and smtpd (mx+relay) with users
// ana (alias anita) and bob, password "secret".
func setupRelay(t *testing.T, clusterTOML string) *relayEnv {
	t.Helper()
	addrs := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	mxPort := clustertest.FreePort(t, addrs...)
	re := &relayEnv{good: &outsideMX{clustertest.MX{Domain: "mx.example.net", Rcpt: func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user at example.net"}
		}
		return nil
	}}}, flaky: &outsideMX{clustertest.MX{Domain: "mx.example.net", Data: func(n int) error {
		if n == 1 {
			return &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "busy, come back later"}
		}
		return nil
	}}}}
	re.good.Listen(t, net.JoinHostPort("127.0.0.2", strconv.Itoa(mxPort)))
	re.flaky.Listen(t, net.JoinHostPort("127.0.0.3", strconv.Itoa(mxPort)))
	dnsAddr := startTestDNS(t,
		"example.net. 60 IN MX 10 mx.example.net.", "mx.example.net. 60 IN A 127.0.0.2",
		"flaky.example. 60 IN MX 10 mx.flaky.example.", "mx.flaky.example. 60 IN A 127.0.0.3",
		"null.example. 60 IN MX 0 .",
		"down.example. 60 IN MX 10 mx.down.example.", "mx.down.example. 60 IN A 127.0.0.4",
		"sink.example. 60 IN MX 10 mx.sink.example.", "mx.sink.example. 60 IN A 127.0.0.5")
	re.mxPort = mxPort

	tlsDir := clustertest.ShortTempDir(t, "tls-")
	ports := fmt.Sprintf("relay = %d\nsubmission = %d\nsubmissions = %d\n",
		clustertest.FreePort(t, addrs...), clustertest.FreePort(t, addrs...), clustertest.FreePort(t, addrs...))
	// The cluster's network is 127.0.0.0/24: a client from 127.0.1.1 is
	// an outsider.
	c := clustertest.NewCluster(t, clustertest.Spec{Network: "127.0.0.0/24", ClusterTOML: ports + clusterTOML,
		Hosts: []clustertest.HostSpec{{Name: "mx1", Address: "127.0.0.1",
			Roles: []string{"passwd-primary", "mx", "relay", "storage"},
			TOML: "[host.smtpd]\nmax_messages_per_hour = 6\n" +
				fmt.Sprintf("[host.tls]\ncert = %q\nkey = %q\n", filepath.Join(tlsDir, "mx1.crt"), filepath.Join(tlsDir, "mx1.key"))}}})
	e := &env{c: c}
	e.passwd = c.StartPasswdd(t, "mx1")
	hash, err := directory.HashPassword("secret", c.Profile.Cluster.Passwd.BcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	c.AddUsers(t, directory.User{Name: "ana", Storage: "mx1", Hash: hash, Aliases: []string{"anita"}},
		directory.User{Name: "bob", Storage: "mx1", Hash: hash})
	e.pdeliv = c.StartDaemon(t, "pdeliveryd", "mx1", true)
	e.smtpd = c.StartDaemon(t, "smtpd", "mx1", true, "-resolvers", dnsAddr, "-remote-port", strconv.Itoa(mxPort))
	re.env = e
	return re
}

func (e *env) svcAddr(s cluster.Service) string {
	a, err := e.c.Profile.Listen("mx1", s)
	if err != nil {
		panic(err)
	}
	return a.String()
}

// waitOutside waits until m has n messages.
func (e *env) waitOutside(t *testing.T, m *outsideMX, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := m.received()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("outside MX has %d messages after 30s, want %d\nsmtpd log:\n%s", len(got), n, e.smtpd.Log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startTLS upgrades a raw client after EHLO.
func (c *smtp) startTLS() {
	c.T.Helper()
	c.Want(220, "STARTTLS")
	tc := tls.Client(c.Conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.T.Fatal(err)
	}
	c.Conn = tc
	c.TP = textproto.NewConn(tc)
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// TestRelaySubmission: raw SMTP on 587, 465 and the relay port: the
// refusals, and authenticated mail to the outside delivered once.
func TestRelaySubmission(t *testing.T) {
	e := setupRelay(t, "")
	sub := e.svcAddr(cluster.SvcSubmission)

	// Unauthenticated on 587: 530; AUTH before STARTTLS: refused.
	c := dial(t, sub)
	c.Want(250, "EHLO client.example.org")
	c.Want(530, "MAIL FROM:<ana@correo.test>")
	if code, msg := c.Cmd("AUTH PLAIN %s", plain("ana", "secret")); code/100 != 5 || !strings.Contains(msg, "TLS") {
		t.Fatalf("AUTH over plaintext: %d %s", code, msg)
	}

	// STARTTLS, a wrong password (slowed down), then the right one.
	c.startTLS()
	c.Want(250, "EHLO client.example.org")
	start := time.Now()
	c.Want(535, "AUTH PLAIN %s", plain("ana", "wrong"))
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("failed AUTH answered after %v, want the 1 s delay", d)
	}
	c.Want(235, "AUTH PLAIN %s", plain("ana", "secret"))
	// Someone else's address, and a foreign one: 553.
	c.Want(553, "MAIL FROM:<bob@correo.test>")
	c.Want(553, "MAIL FROM:<ana@example.org>")
	// Her alias is hers.
	code, msg := c.send("anita@correo.test", []string{"carol@example.net", "bob@correo.test"}, message("sub1"))
	if code != 250 {
		t.Fatalf("DATA: %d %s", code, msg)
	}
	got := e.waitOutside(t, e.good, 1)
	if !strings.HasPrefix(got[0], "<anita@correo.test> carol@example.net\n") || !strings.Contains(got[0], "Message-ID: <sub1@example.org>") {
		t.Errorf("outside MX got %q", got[0])
	}
	if !strings.Contains(got[0], "with ESMTPSA id") {
		t.Errorf("Received line does not say ESMTPSA:\n%s", got[0])
	}
	e.waitMail(t, "bob", 1)
	e.waitLog(t, e.smtpd, "listener=submission user=ana")

	// AUTH LOGIN on 465 (implicit TLS).
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.svcAddr(cluster.SvcSubmissions), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	c2 := &smtp{&clustertest.TextConn{T: t, Conn: tc, TP: textproto.NewConn(tc)}}
	c2.Expect(220)
	c2.Want(250, "EHLO client.example.org")
	c2.Want(334, "AUTH LOGIN")
	c2.Want(334, "%s", base64.StdEncoding.EncodeToString([]byte("bob@correo.test")))
	c2.Want(235, "%s", base64.StdEncoding.EncodeToString([]byte("secret")))
	if code, msg := c2.send("bob@correo.test", []string{"dave@example.net"}, message("sub2")); code != 250 {
		t.Fatalf("DATA: %d %s", code, msg)
	}
	e.waitOutside(t, e.good, 2)

	// The relay port: an outsider (127.0.1.1) must authenticate; a
	// cluster host (127.0.0.1) relays without.
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.1.1")}}
	nc, err := d.Dial("tcp", e.svcAddr(cluster.SvcRelay))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	out := &smtp{&clustertest.TextConn{T: t, Conn: nc, TP: textproto.NewConn(nc)}}
	out.Expect(220)
	out.Want(250, "EHLO outsider.example.org")
	out.Want(530, "MAIL FROM:<someone@example.org>")
	// On 587 too, an outsider without AUTH gets 530 whatever the sender.
	c3 := dial(t, sub)
	c3.Want(250, "EHLO outsider.example.org")
	c3.Want(530, "MAIL FROM:<someone@example.org>")

	in := dial(t, e.svcAddr(cluster.SvcRelay))
	in.Want(250, "EHLO mx1.correo.test")
	if code, msg := in.send("", []string{"erin@example.net"}, message("sub3")); code != 250 {
		t.Fatalf("cluster host relaying: %d %s", code, msg)
	}
	e.waitOutside(t, e.good, 3)
	e.waitQueueEmpty(t)
	if n := len(e.good.received()); n != 3 {
		t.Errorf("outside MX got %d messages, want 3 (each once)", n)
	}
	if e.queued() != 0 {
		t.Errorf("%d messages left in the queue", e.queued())
	}
}

// TestRelayRealClients: Python's smtplib (STARTTLS, LOGIN and PLAIN) and
// swaks --auth --tls.
func TestRelayRealClients(t *testing.T) {
	python := testutil.NeedCommand(t, "python3")
	swaks := testutil.NeedCommand(t, "swaks")
	e := setupRelay(t, "")
	host, port, _ := net.SplitHostPort(e.svcAddr(cluster.SvcSubmission))
	py := `
import smtplib, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def conn():
    s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30)
    s.starttls(context=ctx)
    s.ehlo("client.example.org")
    return s
msg = "From: ana@correo.test\r\nTo: frank@example.net\r\nSubject: py\r\nMessage-ID: <py-%s@example.org>\r\n\r\nhi\r\n"
s = conn()
s.user, s.password = "ana", "secret"
s.auth("LOGIN", s.auth_login, initial_response_ok=False)
s.sendmail("ana@correo.test", ["frank@example.net"], msg % "login")
try:
    s.sendmail("bob@correo.test", ["frank@example.net"], msg % "spoof")
    raise SystemExit("spoofed sender accepted")
except smtplib.SMTPSenderRefused as e:
    assert e.smtp_code == 553, e
s.quit()
s = conn()
s.login("ana", "secret")  # PLAIN, the first the server offers
s.sendmail("ana@correo.test", ["frank@example.net"], msg % "plain")
s.quit()
s = conn()
try:
    s.login("ana", "nope")
    raise SystemExit("wrong password accepted")
except smtplib.SMTPAuthenticationError as e:
    assert e.smtp_code == 535, e
s.quit()
`
	if out, err := exec.Command(python, "-c", py, host, port).CombinedOutput(); err != nil {
		t.Fatalf("python smtplib: %v\n%s", err, out)
	}
	msgFile := filepath.Join(e.c.Dir, "msg.eml")
	os.WriteFile(msgFile, []byte(clustertest.TestMessage+".\n"), 0o644)
	if out, err := exec.Command(swaks, "--server", e.svcAddr(cluster.SvcSubmission), "--tls", "--auth", "LOGIN",
		"--auth-user", "bob", "--auth-password", "secret", "--from", "bob@correo.test", "--to", "gina@example.net",
		"--data", msgFile, "--silent", "1").CombinedOutput(); err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	got := e.waitOutside(t, e.good, 3)
	all := strings.Join(got, "\n")
	for _, id := range []string{"<py-login@", "<py-plain@"} {
		if strings.Count(all, id) != 1 {
			t.Errorf("%s delivered %d times", id, strings.Count(all, id))
		}
	}
	if strings.Contains(all, "py-spoof") {
		t.Error("the spoofed message went out")
	}
	if !strings.Contains(all, "<bob@correo.test> gina@example.net") {
		t.Errorf("swaks's message missing:\n%s", all)
	}
}

// TestRelayRetriesAndBounces: 421 then accepted → delivered once; 550
// and a null MX → DSNs in the sender's Maildir; the hourly limit.
func TestRelayRetriesAndBounces(t *testing.T) {
	e := setupRelay(t, "[cluster.queue]\nretry = [\"1s\"]\nlifetime = \"1h\"\n")
	c := dial(t, e.svcAddr(cluster.SvcSubmission))
	c.Want(250, "EHLO client.example.org")
	c.startTLS()
	c.Want(250, "EHLO client.example.org")
	c.Want(235, "AUTH PLAIN %s", plain("ana", "secret"))
	for _, m := range []struct{ to, id string }{{"x@flaky.example", "flaky"}, {"nobody@example.net", "perm"}, {"y@null.example", "null"}} {
		if code, msg := c.send("ana@correo.test", []string{m.to}, message(m.id)); code != 250 {
			t.Fatalf("%s: %d %s", m.id, code, msg)
		}
	}
	got := e.waitOutside(t, e.flaky, 1)
	if !strings.Contains(got[0], "<flaky@example.org>") {
		t.Errorf("flaky MX got %q", got[0])
	}
	dsns := e.waitMail(t, "ana", 2)
	all := strings.Join(dsns, "\n")
	for _, want := range []string{"Final-Recipient: rfc822; nobody@example.net", "Diagnostic-Code: smtp; 550 5.1.1 no such user at example.net",
		"Final-Recipient: rfc822; y@null.example", "Status: 5.1.10", "Message-ID: <perm@example.org>", "Message-ID: <null@example.org>"} {
		if !strings.Contains(all, want) {
			t.Errorf("DSNs lack %q:\n%s", want, all)
		}
	}
	// The hourly limit is 6: three sent, three more pass, the seventh not.
	for i := range 3 {
		if code, msg := c.send("ana@correo.test", []string{"bob@correo.test"}, message(fmt.Sprint("lim", i))); code != 250 {
			t.Fatalf("message %d: %d %s", i, code, msg)
		}
	}
	c.Want(450, "MAIL FROM:<ana@correo.test>")
	e.waitQueueEmpty(t)
	if n := len(e.flaky.received()); n != 1 {
		t.Errorf("flaky MX got %d messages, want 1", n)
	}
}

// TestRelayUnreachableExpires: an MX that never answers (nothing listens
// on 127.0.0.4) past a short lifetime → a DSN to the local sender.
func TestRelayUnreachableExpires(t *testing.T) {
	e := setupRelay(t, "[cluster.queue]\nretry = [\"1s\"]\nlifetime = \"3s\"\n")
	c := dial(t, e.svcAddr(cluster.SvcSubmission))
	c.Want(250, "EHLO client.example.org")
	c.startTLS()
	c.Want(250, "EHLO client.example.org")
	c.Want(235, "AUTH PLAIN %s", plain("ana", "secret"))
	if code, msg := c.send("ana@correo.test", []string{"z@down.example"}, message("down")); code != 250 {
		t.Fatalf("%d %s", code, msg)
	}
	dsn := e.waitMail(t, "ana", 1)[0]
	for _, want := range []string{"Final-Recipient: rfc822; z@down.example", "Action: failed", "Status: 4.4.7", "Message-ID: <down@example.org>"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
}

// TestRelayToPostfixSink: the outside MX is Postfix's own smtp-sink
// (dumping each transaction to a file): submitted mail for sink.example
// reaches it exactly once, body intact.
func TestRelayToPostfixSink(t *testing.T) {
	sinkBin := testutil.NeedCommand(t, "smtp-sink")
	python := testutil.NeedCommand(t, "python3")
	testutil.NeedRoot(t)
	e := setupRelay(t, "")
	dump := clustertest.ShortTempDir(t, "sink-")
	os.Chmod(dump, 0o777)
	sink := exec.Command(sinkBin, "-u", "postfix", "-d", dump+"/%M.", "127.0.0.5:"+strconv.Itoa(e.mxPort), "16")
	var sinkOut strings.Builder
	sink.Stdout, sink.Stderr = &sinkOut, &sinkOut
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Process.Kill(); sink.Wait() })
	clustertest.WaitTCP(t, "127.0.0.5:"+strconv.Itoa(e.mxPort), 10*time.Second)

	script := `import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
host, port = sys.argv[1].rsplit(":", 1)
with smtplib.SMTP(host, int(port), timeout=20) as s:
    s.starttls(context=ctx)
    s.login("ana", "secret")
    s.sendmail("ana@correo.test", ["amigo@sink.example"], "From: ana@correo.test\r\nTo: amigo@sink.example\r\nMessage-ID: <sink-1@correo.test>\r\nSubject: to the sink\r\n\r\nhola sink\r\n")
print("ok")
`
	if out, err := exec.Command(python, "-c", script, e.svcAddr(cluster.SvcSubmission)).CombinedOutput(); err != nil {
		t.Fatalf("smtplib submission: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dump, "*"))
		if len(files) == 1 {
			e.waitQueueEmpty(t)
			files, _ = filepath.Glob(filepath.Join(dump, "*"))
			if len(files) != 1 {
				t.Fatalf("smtp-sink got %d transactions, want exactly 1", len(files))
			}
			b, _ := os.ReadFile(files[0])
			if !strings.Contains(string(b), "Message-ID: <sink-1@correo.test>") || !strings.Contains(string(b), "hola sink") {
				t.Fatalf("smtp-sink dump:\n%s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink got %d transactions after 30 s\nsink: %s\nsmtpd log:\n%s", len(files), sinkOut.String(), e.smtpd.Log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
