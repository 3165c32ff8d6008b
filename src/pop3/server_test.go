package pop3

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/mailbox"
	"correo/src/proxyproto"
	"correo/src/ticket"
	"correo/src/tlsconf"
)

// The tests run the server in process against a real passwdd process, on
// a profile with two storage hosts (st1 on 127.0.0.1, also the passwd
// primary, with TLS; st2 on 127.0.0.2) and a mailproxy host on
// 127.0.0.30, the only address allowed to send PROXY headers. Clients
// that should be treated like the proxy connect from 127.0.0.30 and send
// a header, as mailproxy does.

// Password is every test user's password; hash is its SHA-512-crypt
// (made with `openssl passwd -6 -salt saltsalt benchpw`).
const (
	password = "benchpw"
	pwHash   = "$6$saltsalt$dM/CtIoV3c1qmNuOWB4n7dKEkbOLye48ygRmj2kwQpO9x9IIWuBkU4RJNTovcWUBtqp0AmbZ2WtYb.n39znnR."
)

type env struct {
	t       *testing.T
	tickets *ticket.Sealer
	c       *clustertest.Cluster
	srv     *Server
	addr    string
	logs    *clustertest.SyncBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	// Unknown users cost passwdd a bcrypt (timing equaliser), slow under -race.
	c := clustertest.NewCluster(t, clustertest.Spec{PasswdTimeout: "5s", Hosts: []clustertest.HostSpec{
		{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}, TLS: true},
		{Name: "st2", Address: "127.0.0.2", Roles: []string{"storage"}},
		{Name: "px", Address: "127.0.0.30", Roles: []string{"mailproxy"}},
	}})
	c.StartPasswdd(t, "st1")
	c.AddUsers(t,
		directory.User{Name: "ana", Storage: "st1", Hash: pwHash},
		directory.User{Name: "bob", Storage: "st1", Hash: pwHash},
		directory.User{Name: "eva", Storage: "st2", Hash: pwHash},
		directory.User{Name: "dario", Storage: "st1", Hash: pwHash, State: directory.StateMoving},
	)
	h, _ := c.Profile.Host("st1")
	tc, err := tlsconf.ServerConfig(c.Profile, h)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, c: c, logs: &clustertest.SyncBuffer{}}
	ring, err := keyfile.Load(c.Profile.Cluster.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	e.tickets, _ = ticket.New(ring)
	e.srv, err = New(Config{Profile: c.Profile, Host: h, Users: c.Client(t), TLS: tc, Tickets: e.tickets,
		Log:    slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Limits: Limits{MaxBadCommands: 5}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Profile.Listen("st1", "pop3_backend")
	ln, err := net.Listen("tcp", a.String())
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.Serve(ln)
	e.addr = a.String()
	t.Cleanup(func() {
		e.srv.Close()
		if t.Failed() {
			t.Logf("--- pop3 log:\n%s", e.logs.String())
		}
	})
	return e
}

// deliver writes n messages into user's Maildir and returns them.
func (e *env) deliver(user string, msgs ...string) []mailbox.Delivered {
	md := mailbox.New(e.c.Maildir("st1", user))
	var out []mailbox.Delivered
	for _, m := range msgs {
		d, err := md.Deliver(strings.NewReader(m))
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dial connects from the given local address (empty: any), sends a PROXY
// header when client is valid, and reads the greeting.
func (e *env) dial(from string, proxyClient netip.AddrPort) *client {
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
	if proxyClient.IsValid() {
		dst := netip.MustParseAddrPort(e.addr)
		b, _ := proxyproto.Header{Source: proxyClient, Dest: dst, UniqueID: "testtrace"}.Encode()
		c.Write(b)
	}
	cl.expect("+OK")
	return cl
}

// proxied is a client that looks like mailproxy.
func (e *env) proxied() *client {
	return e.dial("127.0.0.30", netip.MustParseAddrPort("198.51.100.7:40000"))
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

func (c *client) cmd(line, prefix string) string {
	c.t.Helper()
	fmt.Fprintf(c.c, "%s\r\n", line)
	return c.expect(prefix)
}

// multi reads a multi-line body after its +OK, undoing dot-stuffing.
func (c *client) multi() []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		if l == "." {
			return out
		}
		out = append(out, strings.TrimPrefix(l, "."))
	}
}

func (c *client) login(user string) {
	c.t.Helper()
	c.cmd("USER "+user, "+OK")
	c.cmd("PASS "+password, "+OK")
}

// closed reports whether the server closes the connection (after
// whatever it still had to say).
func (c *client) closed() bool {
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c.br)
	// A reset counts: closing with unread input (an over-long line) makes
	// the kernel send RST instead of FIN.
	return err == nil || !errors.Is(err, os.ErrDeadlineExceeded)
}

// msg11K is a message of about 11 KB with some lines needing dot-stuffing.
func msg11K(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: a@example.org\nTo: ana@correo.test\nSubject: message %d\n\n", i)
	for b.Len() < 11*1024 {
		b.WriteString("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\n")
		if b.Len()%7 == 0 {
			b.WriteString(".dot line\n")
		}
	}
	return b.String()
}

func TestBigMailbox(t *testing.T) {
	e := newEnv(t)
	const n = 2000
	msgs := make([]string, n)
	for i := range msgs {
		msgs[i] = msg11K(i)
	}
	e.deliver("ana", msgs...)

	c := e.proxied()
	c.login("ana")
	st := strings.Fields(c.cmd("STAT", "+OK"))
	var total int64
	for _, m := range msgs {
		total += int64(len(m) + strings.Count(m, "\n"))
	}
	if st[1] != strconv.Itoa(n) || st[2] != strconv.FormatInt(total, 10) {
		t.Fatalf("STAT %v, want %d %d", st, n, total)
	}
	c.cmd("LIST", "+OK")
	list := c.multi()
	if len(list) != n {
		t.Fatalf("LIST has %d entries", len(list))
	}
	// LIST sizes are what RETR then sends (without dot-stuffing), and
	// RETR sends what was delivered. Within one second the order of
	// deliveries is not kept, so the subject says which message it is.
	for _, i := range []int{1, 2, 999, n} {
		f := strings.Fields(list[i-1])
		c.cmd(fmt.Sprintf("RETR %d", i), "+OK")
		lines := c.multi()
		body := strings.Join(lines, "\r\n") + "\r\n"
		if f[1] != strconv.Itoa(len(body)) {
			t.Fatalf("LIST says %s octets for %d, RETR sent %d", f[1], i, len(body))
		}
		k, err := strconv.Atoi(strings.TrimPrefix(lines[2], "Subject: message "))
		if err != nil {
			t.Fatalf("message %d: third line %q", i, lines[2])
		}
		if want := strings.ReplaceAll(msgs[k], "\n", "\r\n"); body != want {
			t.Fatalf("message %d differs from what was delivered", i)
		}
	}
	c.cmd("UIDL", "+OK")
	uidls := c.multi()
	seen := map[string]bool{}
	for _, u := range uidls {
		id := strings.Fields(u)[1]
		if len(id) > 70 || seen[id] {
			t.Fatalf("UIDL %q too long or repeated", id)
		}
		seen[id] = true
	}
	// DELE then RSET restores; a dropped connection deletes nothing.
	for i := 1; i <= 10; i++ {
		c.cmd(fmt.Sprintf("DELE %d", i), "+OK")
	}
	c.cmd("RETR 3", "-ERR")
	c.cmd("DELE 3", "-ERR")
	c.cmd("STAT", fmt.Sprintf("+OK %d ", n-10))
	c.cmd("RSET", "+OK")
	c.cmd("STAT", fmt.Sprintf("+OK %d ", n))
	c.cmd("DELE 5", "+OK")
	c.c.Close()

	// The server notices the dropped connection when it reads EOF, a
	// moment after the close: until then the mailbox is [IN-USE].
	for start := time.Now(); ; {
		c = e.proxied()
		c.cmd("USER ana", "+OK")
		fmt.Fprintf(c.c, "PASS %s\r\n", password)
		if l := c.line(); strings.HasPrefix(l, "+OK") {
			break
		} else if !strings.Contains(l, "[IN-USE]") || time.Since(start) > 20*time.Second {
			t.Fatalf("login after a dropped session: %q", l)
		}
		c.c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	c.cmd("STAT", fmt.Sprintf("+OK %d ", n))
	c.cmd("UIDL", "+OK")
	if again := c.multi(); strings.Join(again, ",") != strings.Join(uidls, ",") {
		t.Fatal("UIDLs changed between sessions")
	}
	// DELE then QUIT removes exactly those.
	del := map[int]bool{1: true, 2: true, 500: true, 1999: true, n: true}
	for i := range del {
		c.cmd(fmt.Sprintf("DELE %d", i), "+OK")
	}
	c.cmd("QUIT", "+OK")
	c = e.proxied()
	c.login("ana")
	c.cmd("UIDL", "+OK")
	left := c.multi()
	var want []string
	for i, u := range uidls {
		if !del[i+1] {
			want = append(want, strings.Fields(u)[1])
		}
	}
	var got []string
	for _, u := range left {
		got = append(got, strings.Fields(u)[1])
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after QUIT %d messages left, want %d (or a different set)", len(got), len(want))
	}
	c.cmd("QUIT", "+OK")
	names, _ := os.ReadDir(filepath.Join(e.c.Maildir("st1", "ana"), "cur"))
	if len(names) != n-len(del) {
		t.Fatalf("%d files in cur/, want %d", len(names), n-len(del))
	}
	if !strings.Contains(e.logs.String(), "client=198.51.100.7:40000") {
		t.Fatal("the log does not show the real client address from the PROXY header")
	}
}

func TestRetrTopDotStuffing(t *testing.T) {
	e := newEnv(t)
	e.deliver("bob", clustertest.TestMessage)
	c := e.proxied()
	c.login("bob")
	fmt.Fprintf(c.c, "RETR 1\r\n")
	c.expect("+OK")
	var raw bytes.Buffer
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == ".\r\n" {
			break
		}
		raw.WriteString(l)
	}
	want := strings.ReplaceAll(clustertest.TestMessage, "\n", "\r\n")
	want = strings.ReplaceAll(want, "\r\n.", "\r\n..")
	if raw.String() != want {
		t.Fatalf("RETR sent\n%q\nwant\n%q", raw.String(), want)
	}
	c.cmd("TOP 1 2", "+OK")
	top := c.multi()
	hdrs := strings.Count(strings.SplitN(clustertest.TestMessage, "\n\n", 2)[0], "\n") + 1
	if len(top) != hdrs+1+2 || top[hdrs+1] != "Hola," || top[hdrs+2] != "." {
		t.Fatalf("TOP 1 2: %q", top)
	}
	c.cmd("TOP 1 0", "+OK")
	if top := c.multi(); len(top) != hdrs+1 {
		t.Fatalf("TOP 1 0: %d lines", len(top))
	}
	c.cmd("QUIT", "+OK")
}

func TestInUse(t *testing.T) {
	e := newEnv(t)
	e.deliver("ana", "Subject: x\n\nhi\n")
	a := e.proxied()
	a.login("ana")
	b := e.proxied()
	b.cmd("USER ana", "+OK")
	b.cmd("PASS "+password, "-ERR [IN-USE]")
	a.cmd("QUIT", "+OK")
	a.closed()
	b.cmd("AUTH PLAIN "+EncodePlain("ana", password), "+OK")
	b.cmd("STAT", "+OK 1 ")
}

func TestProtocolErrors(t *testing.T) {
	e := newEnv(t)
	e.deliver("ana", "Subject: x\n\nhi\n", "Subject: y\n\nho\n")
	c := e.proxied()
	c.cmd("RETR 1", "-ERR")
	c.cmd("\x01\x02garbage", "-ERR")
	c.cmd("PASS x", "-ERR")
	c.cmd("AUTH PLAIN !!!notbase64", "-ERR")
	c.cmd("USER ana", "+OK")
	c.cmd("PASS wrong", "-ERR [AUTH]")
	// After five bad commands the session ends.
	if !c.closed() {
		t.Fatal("session survives too many bad commands")
	}

	c = e.proxied()
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd("====", "-ERR")
	c.cmd("AUTH PLAIN", "+ ")
	c.cmd("*", "-ERR")
	c.cmd("USER nobody-here", "+OK")
	c.cmd("PASS "+password, "-ERR [AUTH] Authentication failed.")
	c.cmd("USER eva", "+OK")
	c.cmd("PASS "+password, "-ERR [SYS/PERM]") // stored on st2
	c.login("ana")
	for _, bad := range []string{"RETR 3", "DELE 0", "LIST 99", "TOP 1 -1", "RETR x"} {
		c.cmd(bad, "-ERR")
	}
	c.cmd("USER ana", "-ERR") // 6th bad command ends the session
	if !c.closed() {
		t.Fatal("session survives too many bad commands")
	}

	c = e.proxied()
	c.cmd("USER dario", "+OK")
	c.cmd("PASS "+password, "-ERR [SYS/TEMP]") // being moved
	fmt.Fprintf(c.c, "USER %s\r\n", strings.Repeat("x", 5000))
	c.expect("-ERR Line too long")
	if !c.closed() {
		t.Fatal("over-long line did not end the session")
	}
	// Nothing was deleted by any of this.
	c = e.proxied()
	c.login("ana")
	c.cmd("STAT", "+OK 2 ")
}

func TestProxyHeaderOnlyFromProxies(t *testing.T) {
	e := newEnv(t)
	c := e.dial("127.0.0.1", netip.MustParseAddrPort("203.0.113.9:1234"))
	c.expect("-ERR [SYS/PERM] PROXY")
	if !c.closed() {
		t.Fatal("connection stays open after a refused PROXY header")
	}
	if !strings.Contains(e.logs.String(), "refused a PROXY header") {
		t.Fatal("refusal not logged")
	}
}

// A direct client on an untrusted network must use STLS before any
// password goes over the wire.
func TestPlaintextNeedsTLS(t *testing.T) {
	e := newEnv(t)
	e.deliver("ana", "Subject: x\n\nhi\n")
	c := e.dial("127.0.0.1", netip.AddrPort{})
	c.cmd("CAPA", "+OK")
	capa := strings.Join(c.multi(), " ")
	if strings.Contains(capa, "USER") || !strings.Contains(capa, "STLS") {
		t.Fatalf("CAPA before TLS: %s", capa)
	}
	c.cmd("USER ana", "-ERR [AUTH]")
	c.cmd("STLS", "+OK")
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.c, c.br = tc, bufio.NewReader(tc)
	c.login("ana")
	c.cmd("STAT", "+OK 1 ")
	c.cmd("QUIT", "+OK")
}

// dialTicket connects like mailproxy, with a login ticket in the PROXY
// header.
func (e *env) dialTicket(tk []byte) *client {
	t := e.t
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.30")}}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	b, _ := proxyproto.Header{Source: ticketClient, Dest: netip.MustParseAddrPort(e.addr), UniqueID: "tickettrace", Ticket: tk}.Encode()
	c.Write(b)
	cl.expect("+OK")
	return cl
}

var ticketClient = netip.MustParseAddrPort("198.51.100.8:40001")

// TestLoginTicket: a login that arrives with mailproxy's ticket for its
// user is not checked again; a ticket for another user, a forged one, a
// replayed one or one for another client address gets the full password
// check.
func TestLoginTicket(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	good, _ := e.tickets.Seal("ana", ticketClient, now)
	c := e.dialTicket(good)
	c.cmd("USER ana", "+OK")
	c.cmd("PASS not-the-password", "+OK") // the proxy vouched for it
	c.cmd("QUIT", "+OK")

	bad := map[string][]byte{}
	bad["other user"], _ = e.tickets.Seal("bob", ticketClient, now)
	bad["replayed"] = good
	bad["other client"], _ = e.tickets.Seal("ana", netip.MustParseAddrPort("198.51.100.9:1"), now)
	forged := append([]byte(nil), good...)
	forged[len(forged)-1] ^= 1
	bad["forged"] = forged
	for name, tk := range bad {
		c := e.dialTicket(tk)
		c.cmd("USER ana", "+OK")
		if got := c.cmd("PASS not-the-password", "-ERR"); !strings.Contains(got, "[AUTH]") {
			t.Errorf("%s ticket: %q", name, got)
		}
		c.cmd("QUIT", "+OK")
	}
	// With the right password the full check still lets the user in.
	other, _ := e.tickets.Seal("bob", ticketClient, now)
	c = e.dialTicket(other)
	c.login("ana")
	c.cmd("QUIT", "+OK")
}
