package imap

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/proxyproto"
	"correo/src/ticket"
	"correo/src/tlsconf"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

// The tests run the server in process against a real passwdd process, on
// a profile with two storage hosts (st1 on 127.0.0.1, also the passwd
// primary, with TLS; st2 on 127.0.0.2) and a proxy host on 127.0.0.30,
// the only address allowed to send PROXY headers.

const (
	password = "benchpw"
	pwHash   = "$6$saltsalt$dM/CtIoV3c1qmNuOWB4n7dKEkbOLye48ygRmj2kwQpO9x9IIWuBkU4RJNTovcWUBtqp0AmbZ2WtYb.n39znnR."
)

type env struct {
	t    *testing.T
	c    *clustertest.Cluster
	srv  *Server
	addr string
	logs *clustertest.SyncBuffer
}

func newEnv(t *testing.T) *env { return newEnvSpec(t, false) }

// newEnvSpec with trusted: the profile's trusted_network, so real clients
// log in without TLS.
func newEnvSpec(t *testing.T, trusted bool) *env {
	t.Helper()
	c := clustertest.NewCluster(t, clustertest.Spec{PasswdTimeout: "5s", TrustedNetwork: trusted, Hosts: []clustertest.HostSpec{
		{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}, TLS: true},
		{Name: "st2", Address: "127.0.0.2", Roles: []string{"storage"}},
		{Name: "px", Address: "127.0.0.30", Roles: []string{"mailproxy"}},
	}})
	c.StartPasswdd(t, "st1")
	c.AddUsers(t,
		directory.User{Name: "ana", Storage: "st1", Hash: pwHash},
		directory.User{Name: "eva", Storage: "st2", Hash: pwHash},
		directory.User{Name: "dario", Storage: "st1", Hash: pwHash, State: directory.StateMoving},
		directory.User{Name: "rosa", Storage: "st1", Hash: pwHash, Quota: 8 << 10},
	)
	h, _ := c.Profile.Host("st1")
	tc, err := tlsconf.ServerConfig(c.Profile, h)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := keyfile.Load(c.Profile.Cluster.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	tickets, _ := ticket.New(ring)
	e := &env{t: t, c: c, logs: &clustertest.SyncBuffer{}}
	e.srv, err = New(Config{Profile: c.Profile, Host: h, Users: c.Client(t), TLS: tc, Tickets: tickets,
		Log:    slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Limits: Limits{MaxBadCommands: 8}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.Serve(ln)
	e.addr = ln.Addr().String()
	t.Cleanup(func() {
		e.srv.Close()
		if t.Failed() {
			t.Logf("--- imap log:\n%s", e.logs.String())
		}
	})
	return e
}

type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dial connects from the given local address (empty: any), sends a PROXY
// header when proxyClient is valid, and reads the greeting.
func (e *env) dial(from string, proxyClient netip.AddrPort, tlsFlag bool) *client {
	t := e.t
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	cl.expect("* OK [CAPABILITY IMAP4rev2 ")
	if proxyClient.IsValid() {
		b, _ := proxyproto.Header{Source: proxyClient, Dest: netip.MustParseAddrPort(e.addr), UniqueID: "testtrace", TLS: tlsFlag}.Encode()
		c.Write(b)
	}
	return cl
}

// proxied looks like the IMAP proxy relaying a TLS client.
func (e *env) proxied() *client {
	return e.dial("127.0.0.30", netip.MustParseAddrPort("198.51.100.7:40000"), true)
}

func (c *client) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading a reply: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *client) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want %q...", l, prefix)
	}
	return l
}

func (c *client) send(line string) {
	fmt.Fprintf(c.c, "%s\r\n", line)
}

// cmd sends a command and returns its untagged lines, checking that the
// tagged answer starts with want.
func (c *client) cmd(tag, line, want string) []string {
	c.t.Helper()
	c.send(tag + " " + line)
	var untagged []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" "+want) {
				c.t.Fatalf("%s: got %q, want %q...", line, l, tag+" "+want)
			}
			return untagged
		}
		untagged = append(untagged, l)
	}
}

func (c *client) closed() bool {
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c.br)
	return err == nil || !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestLoginPaths(t *testing.T) {
	e := newEnv(t)
	plain := base64.StdEncoding.EncodeToString([]byte("\x00ana\x00" + password))
	tests := []struct {
		name, line, want string
	}{
		{"login", `LOGIN ana ` + password, "OK [CAPABILITY IMAP4rev2 "},
		{"login quoted", `LOGIN "ana" "` + password + `"`, "OK"},
		{"login literal+", "LOGIN {3+}\r\nana " + password, "OK"},
		{"wrong password", `LOGIN ana wrong`, "NO [AUTHENTICATIONFAILED]"},
		{"unknown user", `LOGIN nadie ` + password, "NO [AUTHENTICATIONFAILED]"},
		{"bad user name", `LOGIN ../etc ` + password, "NO [AUTHENTICATIONFAILED]"},
		{"stored elsewhere", `LOGIN eva ` + password, "NO [UNAVAILABLE] Your mailbox is on st2"},
		{"being moved", `LOGIN dario ` + password, "NO [UNAVAILABLE] Your mailbox is being moved"},
		{"sasl-ir", "AUTHENTICATE PLAIN " + plain, "OK"},
		{"sasl-ir authzid other", "AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("eva\x00ana\x00"+password)), "NO [AUTHENTICATIONFAILED]"},
		{"sasl not base64", "AUTHENTICATE PLAIN !!!", "BAD"},
		{"other mechanism", "AUTHENTICATE CRAM-MD5", "NO"},
		{"login missing password", "LOGIN ana", "BAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.proxied()
			c.t = t
			c.cmd("a1", tt.line, tt.want)
		})
	}
	// AUTHENTICATE without an initial response: the continuation, then
	// the response; "*" cancels.
	c := e.proxied()
	c.send("a1 AUTHENTICATE PLAIN")
	c.expect("+")
	c.send("*")
	c.expect("a1 BAD")
	c.send("a2 AUTHENTICATE PLAIN")
	c.expect("+")
	c.send(plain)
	c.expect("a2 OK")
	c.cmd("a3", "LOGIN ana "+password, "BAD")
	if !strings.Contains(e.logs.String(), "trace=testtrace") {
		t.Error("the proxy's trace id is not in the session log")
	}
}

// A direct client without TLS may not send a password; after STARTTLS it
// may.
func TestPlaintextNeedsTLS(t *testing.T) {
	e := newEnv(t)
	c := e.dial("", netip.AddrPort{}, false)
	caps := c.cmd("a1", "CAPABILITY", "OK")
	if len(caps) != 1 || !strings.Contains(caps[0], "LOGINDISABLED") || !strings.Contains(caps[0], "STARTTLS") || strings.Contains(caps[0], "AUTH=PLAIN") {
		t.Fatalf("CAPABILITY without TLS: %q", caps)
	}
	c.cmd("a2", "LOGIN ana "+password, "NO [PRIVACYREQUIRED]")
	c.send("a3 STARTTLS")
	c.expect("a3 OK")
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.c, c.br = tc, bufio.NewReader(tc)
	caps = c.cmd("a4", "CAPABILITY", "OK")
	if !strings.Contains(caps[0], "AUTH=PLAIN") || strings.Contains(caps[0], "STARTTLS") {
		t.Fatalf("CAPABILITY after STARTTLS: %q", caps)
	}
	c.cmd("a5", "LOGIN ana "+password, "OK")
	c.cmd("a6", "STARTTLS", "BAD")

	// Plaintext pipelined after STARTTLS is refused, not read as if
	// protected.
	c2 := e.dial("", netip.AddrPort{}, false)
	c2.send("b1 STARTTLS\r\nb2 LOGIN ana " + password)
	c2.expect("b1 BAD")
	if !c2.closed() {
		t.Fatal("the session survived a command injected after STARTTLS")
	}
}

// Hostile and wrong-state input gets the protocol's answer; the session
// stays usable until the bad-command limit.
func TestHostileInput(t *testing.T) {
	e := newEnv(t)
	c := e.proxied()
	c.cmd("a1", "SELECT INBOX", "BAD")
	c.cmd("a2", "FROBNICATE", "BAD")
	// A gigabyte literal before login is refused without a byte sent.
	c.send("a3 LOGIN ana {1073741824}")
	c.expect("a3 BAD [TOOBIG]")
	// Before login a literal is a password at most, never a message.
	c.send("a3b LOGIN ana {100000}")
	c.expect("a3b NO")
	c.cmd("a4", "NOOP", "OK")
	c.cmd("a5", "UID NOOP", "BAD")
	c.cmd("a6", "ID NIL", "OK")
	c.cmd("a7", "LOGIN ana "+password, "OK")
	c.cmd("a8", "ENABLE IMAP4rev2 FOO", "OK")
	ns := c.cmd("a9", "NAMESPACE", "OK")
	if len(ns) != 1 || ns[0] != `* NAMESPACE (("" "/")) NIL NIL` {
		t.Fatalf("NAMESPACE: %q", ns)
	}
	// An over-long line: BAD, then the session goes on.
	c.send("b1 NOOP " + strings.Repeat("x", 200<<10))
	c.expect("b1 BAD")
	c.cmd("b2", "NOOP", "OK")
	// Past the limit of bad commands the server says BYE and closes.
	for i := 0; i < 10; i++ {
		c.send(fmt.Sprintf("c%d BOGUS", i))
	}
	if !c.closed() {
		t.Fatal("the session survived more bad commands than the limit")
	}
	c3 := e.proxied()
	c3.cmd("d1", "LOGOUT", "OK")
	if !c3.closed() {
		t.Fatal("the connection stayed open after LOGOUT")
	}
}

// A PROXY header from an address that is not a proxy host is refused.
func TestProxyHeaderOnlyFromProxies(t *testing.T) {
	e := newEnv(t)
	c := e.dial("127.0.0.1", netip.MustParseAddrPort("198.51.100.7:40000"), true)
	c.expect("* BYE")
	if !c.closed() {
		t.Fatal("a forged PROXY header kept the session")
	}
}
