package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/mailbox"
)

// The whole path with real processes and real clients: passwdd on
// 127.0.0.1, pop3d on two storage hosts (127.0.0.31 and 127.0.0.32, the
// same port), mailproxy on 127.0.0.30 with TLS; ana lives on st1, bob on
// st2. Clients: Python's poplib, curl, fetchmail.

const (
	password = "benchpw"
	pwHash   = "$6$saltsalt$dM/CtIoV3c1qmNuOWB4n7dKEkbOLye48ygRmj2kwQpO9x9IIWuBkU4RJNTovcWUBtqp0AmbZ2WtYb.n39znnR."
)

type env struct {
	c        *clustertest.Cluster
	pw       *clustertest.Proc
	st1, px  *clustertest.Proc
	pop3     string // proxy, plain (STLS)
	pop3s    string // proxy, implicit TLS
	messages map[string][]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := clustertest.NewCluster(t, clustertest.Spec{PasswdTimeout: "5s", Hosts: []clustertest.HostSpec{
		{Name: "pw", Address: "127.0.0.1", Roles: []string{"passwd-primary"}},
		{Name: "px", Address: "127.0.0.30", Roles: []string{"mailproxy"}, TLS: true, TOML: "[host.mailproxy]\nfail_delay = \"50ms\"\n"},
		{Name: "st1", Address: "127.0.0.31", Roles: []string{"storage"}},
		{Name: "st2", Address: "127.0.0.32", Roles: []string{"storage"}},
	}})
	e := &env{c: c, messages: map[string][]string{}}
	e.pw = c.StartPasswdd(t, "pw")
	c.AddUsers(t,
		directory.User{Name: "ana", Storage: "st1", Hash: pwHash},
		directory.User{Name: "bob", Storage: "st2", Hash: pwHash})
	for _, u := range []struct{ name, host string }{{"ana", "st1"}, {"bob", "st2"}} {
		md := mailbox.New(c.Maildir(u.host, u.name))
		for i := 0; i < 3; i++ {
			m := strings.Replace(clustertest.TestMessage, "Subject: interop test", fmt.Sprintf("Subject: %s %d", u.name, i), 1)
			if _, err := md.Deliver(strings.NewReader(m)); err != nil {
				t.Fatal(err)
			}
			e.messages[u.name] = append(e.messages[u.name], m)
		}
	}
	e.st1 = c.StartDaemon(t, "pop3d", "st1", true)
	c.StartDaemon(t, "pop3d", "st2", true)
	e.px = c.StartDaemon(t, "mailproxy", "px", true)
	a, _ := c.Profile.Listen("px", cluster.SvcPOP3)
	s, _ := c.Profile.Listen("px", cluster.SvcPOP3S)
	e.pop3, e.pop3s = a.String(), s.String()
	return e
}

// has reports whether want (LF line ends, as delivered) is among got.
func has(got []string, want string) bool {
	for _, g := range got {
		if g == want {
			return true
		}
	}
	return false
}

const pyFetch = `
import poplib, ssl, sys, json
mode, host, port, user, pw = sys.argv[1:6]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
if mode == "ssl":
    p = poplib.POP3_SSL(host, int(port), context=ctx)
else:
    p = poplib.POP3(host, int(port)); p.stls(context=ctx)
p.user(user); p.pass_(pw)
n, size = p.stat()
out = []
for i in range(1, n + 1):
    resp, lines, octets = p.retr(i)
    out.append(b"\n".join(lines).decode() + "\n")
uidl = p.uidl()[1]
p.quit()
json.dump({"n": n, "size": size, "msgs": out, "uidl": len(uidl)}, sys.stdout)
`

func TestRealClients(t *testing.T) {
	python := testutil.NeedCommand(t, "python3")
	curl := testutil.NeedCommand(t, "curl")
	fetchmail := testutil.NeedCommand(t, "fetchmail")
	e := newEnv(t)
	host, port, _ := net.SplitHostPort(e.pop3)
	_, sport, _ := net.SplitHostPort(e.pop3s)

	// poplib: STLS on 110 for ana (st1), implicit TLS on 995 for bob (st2).
	for _, r := range []struct{ mode, port, user string }{{"stls", port, "ana"}, {"ssl", sport, "bob"}} {
		out, err := exec.Command(python, "-c", pyFetch, r.mode, host, r.port, r.user, password).CombinedOutput()
		if err != nil {
			t.Fatalf("poplib %s %s: %v\n%s", r.mode, r.user, err, out)
		}
		var got struct {
			N    int
			Msgs []string
		}
		if err := json.Unmarshal(out, &got); err != nil || got.N != 3 {
			t.Fatalf("poplib %s: %v\n%s", r.mode, err, out)
		}
		// Deliveries within one second have no fixed order: compare as sets.
		seen := map[string]bool{}
		for i, m := range got.Msgs {
			if !has(e.messages[r.user], m) || seen[m] {
				t.Fatalf("poplib %s: message %d of %s differs from what was delivered:\n%q", r.mode, i, r.user, m)
			}
			seen[m] = true
		}
	}

	// curl: pop3:// with STLS required, and pop3s://; message 2 of each.
	for _, r := range []struct{ url, user string }{{"pop3://" + e.pop3 + "/2", "ana"}, {"pop3s://" + e.pop3s + "/2", "bob"}} {
		out, err := exec.Command(curl, "-sS", "--ssl-reqd", "-k", "-u", r.user+":"+password, r.url).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", r.url, err, out)
		}
		if got := strings.ReplaceAll(string(out), "\r\n", "\n"); !has(e.messages[r.user], got) {
			t.Fatalf("curl %s fetched %q, which was not delivered", r.url, got)
		}
	}

	// fetchmail: everything of ana over STLS into files via an MDA, kept.
	dir := t.TempDir()
	rc := filepath.Join(dir, "fetchmailrc")
	os.WriteFile(rc, []byte(fmt.Sprintf("poll %s service %s protocol pop3 user ana password %q sslproto 'TLS1.2+' no sslcertck keep mda \"/bin/sh -c 'cat > %s/msg.$$'\"\n",
		host, port, password, dir)), 0o600)
	out, err := exec.Command(fetchmail, "-f", rc, "--nosyslog", "-N", "-i", filepath.Join(dir, "ids")).CombinedOutput()
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "msg.*"))
	if len(files) != 3 {
		t.Fatalf("fetchmail delivered %d messages, want 3\n%s", len(files), out)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		// fetchmail prepends its own Received header; the rest is ours.
		ok := false
		for _, m := range e.messages["ana"] {
			ok = ok || strings.HasSuffix(string(b), m)
		}
		if !ok {
			t.Fatalf("fetchmail got %q, not what was delivered", b)
		}
	}
	if !strings.Contains(e.px.Log.String(), `user=bob`) || !strings.Contains(e.px.Log.String(), "127.0.0.32") {
		t.Fatal("the proxy's session log does not name bob's backend")
	}
}

type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialTLS(t *testing.T, addr string) *client {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	cl.expect("+OK")
	return cl
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	l, err := c.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q (%v), want %q...", l, err, prefix)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	fmt.Fprintf(c.c, "%s\r\n", line)
	return c.expect(prefix)
}

func TestProxyFailures(t *testing.T) {
	e := newEnv(t)

	// Unknown user and wrong password: the same words.
	c := dialTLS(t, e.pop3s)
	c.cmd("USER ana", "+OK")
	wrong := c.cmd("PASS nope", "-ERR")
	c.cmd("USER ghost", "+OK")
	unknown := c.cmd("PASS nope", "-ERR")
	if wrong != unknown {
		t.Fatalf("wrong password %q, unknown user %q", wrong, unknown)
	}
	// Plain text before TLS is refused on 110.
	pc, err := net.Dial("tcp", e.pop3)
	if err != nil {
		t.Fatal(err)
	}
	p := &client{t: t, c: pc, br: bufio.NewReader(pc)}
	p.expect("+OK")
	p.cmd("USER ana", "-ERR [AUTH]")
	p.cmd("STAT", "-ERR")
	pc.Close()

	// Two sessions on one mailbox through the proxy.
	a := dialTLS(t, e.pop3s)
	a.cmd("AUTH PLAIN "+plain("ana"), "+OK")
	b := dialTLS(t, e.pop3s)
	b.cmd("USER ana", "+OK")
	b.cmd("PASS "+password, "-ERR [IN-USE]")

	// The backend dies mid-session: a clean close, nothing deleted.
	a.cmd("DELE 1", "+OK")
	e.st1.Signal(syscall.SIGKILL)
	<-e.st1.Done()
	a.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(a.c, "STAT\r\n")
	if l, err := a.br.ReadString('\n'); err == nil {
		t.Fatalf("after the backend died the client read %q", l)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the client was left hanging after the backend died")
	}
	// Backend down: [SYS/TEMP].
	b = dialTLS(t, e.pop3s)
	b.cmd("USER ana", "+OK")
	b.cmd("PASS "+password, "-ERR [SYS/TEMP]")
	e.st1 = e.c.StartDaemon(t, "pop3d", "st1", true)
	b = dialTLS(t, e.pop3s)
	b.cmd("AUTH PLAIN "+plain("ana"), "+OK")
	b.cmd("STAT", "+OK 3 ")
	b.cmd("QUIT", "+OK")

	// Garbage and limits before login.
	g := dialTLS(t, e.pop3s)
	g.cmd("AUTH PLAIN ###", "-ERR")
	g.cmd("RETR 1", "-ERR")
	fmt.Fprintf(g.c, "%s\r\n", strings.Repeat("A", 4000))
	g.expect("-ERR Line too long")

	// passwdd down: [SYS/TEMP].
	e.pw.Stop(syscall.SIGTERM)
	d := dialTLS(t, e.pop3s)
	d.cmd("USER bob", "+OK")
	d.cmd("PASS "+password, "-ERR [SYS/TEMP]")
}

func plain(user string) string {
	return strings.TrimSpace(fmt.Sprintf("%s", encodePlain(user, password)))
}
