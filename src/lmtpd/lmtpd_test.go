package lmtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/src/directory"
	"correo/src/mailbox"
)

const body = "From: a@example.org\nTo: juan@correo.test\nSubject: hi\n\nline one\n.leading dot\n\nlast line\n"

// TestMixedResultsOneTransaction sends one transaction whose recipients
// meet every RCPT answer, then checks that the two deliverable ones share
// one file (hard link) with the shared headers.
func TestMixedResultsOneTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clustertest.Spec{})
	e.users(
		directory.User{Name: "ana", Storage: "st1"},
		directory.User{Name: "bob", Storage: "st1", Aliases: []string{"roberto"}},
		directory.User{Name: "carla", Storage: "st1", Quota: 100},
		directory.User{Name: "dario", Storage: "st1", State: directory.StateMoving},
		directory.User{Name: "eva", Storage: "st2"},
		directory.User{Name: "fede", Storage: "st1", State: directory.StateDisabled},
	)
	// carla is already over her 100 bytes.
	if _, err := mailbox.New(e.c.Maildir("st1", "carla")).Deliver(strings.NewReader(strings.Repeat("x", 200))); err != nil {
		t.Fatal(err)
	}
	_, addr, _ := e.serve("st1", Limits{})
	c := dialLMTP(t, "tcp", addr)
	caps := c.lhlo()
	for _, want := range []string{"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE"} {
		if !strings.Contains(caps, want) {
			t.Errorf("LHLO does not advertise %s: %q", want, caps)
		}
	}
	c.Line("MAIL FROM:<sender@example.org>")
	c.Expect(250)
	cases := []struct {
		rcpt string
		want string // code and enhanced code, or a regexp of the whole reply
	}{
		{"ana@correo.test", "250 2.0.0"},
		{"Roberto+lists@CORREO.test", "250 2.0.0"},
		{"nobody@correo.test", "550 5.1.1"},
		{"carla@correo.test", "552 5.2.2"},
		{"dario@correo.test", "451 4.2.0"},
		{"eva@correo.test", `451 4\.3\.0 <eva> is stored on st2, not here`},
		{"fede@correo.test", "550 5.2.1"},
		{"ana@elsewhere.test", "550 5.1.2"},
		{"..@correo.test", "550 5.1.1"},
		{`"a/b"@correo.test`, "550 5.1.1"},
		{`"../../etc"@correo.test`, "550 5.1.1"},
		{`"a b"@correo.test`, "501 5.1.3"},
	}
	for _, tc := range cases {
		code, msg := c.Cmd("RCPT TO:<%s>", tc.rcpt)
		got := fmt.Sprintf("%d %s", code, msg)
		if !regexp.MustCompile("^" + tc.want).MatchString(got) {
			t.Errorf("RCPT %s: %q, want %s", tc.rcpt, got, tc.want)
		}
	}
	replies := c.data(body, 2)
	for _, r := range replies {
		if !strings.HasPrefix(r, "250 2.0.0") {
			t.Errorf("DATA reply %q", r)
		}
	}
	c.Cmd("QUIT")

	anaMsg, anaFi := readOnly(t, e.c.Maildir("st1", "ana"))
	bobMsg, bobFi := readOnly(t, e.c.Maildir("st1", "bob"))
	if !os.SameFile(anaFi, bobFi) {
		t.Error("two recipients on one host: want one file hard-linked into both Maildirs")
	}
	if anaMsg != bobMsg {
		t.Error("contents differ")
	}
	h, b := headerBlock(anaMsg)
	if !strings.HasPrefix(h, "Return-Path: <sender@example.org>\nReceived: from tester.example (127.0.0.1)\n\tby st1.correo.test (correo pdeliveryd) with LMTP id ") {
		t.Errorf("headers of a shared delivery:\n%s", h)
	}
	if strings.Contains(h, "Delivered-To") || strings.Contains(h, "for <") {
		t.Errorf("a file shared by several recipients names one of them:\n%s", h)
	}
	_, origBody := headerBlock(body)
	if b != origBody {
		t.Errorf("body changed: %q, want %q", b, origBody)
	}
	for _, u := range []string{"carla", "dario", "fede"} {
		n := len(files(t, e.c.Maildir("st1", u), "new"))
		if u == "carla" {
			n-- // her earlier message
		}
		if n != 0 {
			t.Errorf("%s got a message", u)
		}
	}
	// Nothing was created for the names that are not users.
	ents, _ := os.ReadDir(e.c.DataDir("st1"))
	for _, en := range ents {
		if en.Name() != "a" && en.Name() != "b" && en.Name() != "c" {
			t.Errorf("unexpected directory %s in the data dir", en.Name())
		}
	}
	// One log line per recipient outcome, all with the same trace id.
	logs := e.logs.String()
	m := regexp.MustCompile(`with LMTP id ([a-z0-9]+)`).FindStringSubmatch(h)
	if m == nil || strings.Count(logs, "trace="+m[1]) != len(cases) {
		t.Errorf("want %d log lines with the trace id %v:\n%s", len(cases), m, logs)
	}
}

// TestSingleRecipientHeaders checks the per-recipient headers, the reuse of
// smtpd's trace id, CRLF → LF and dot-unstuffing.
func TestSingleRecipientHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clustertest.Spec{})
	e.users(directory.User{Name: "juan", Storage: "st1", Aliases: []string{"jperez"}})
	_, addr, sock := e.serve("st1", Limits{})
	msg := "X-Correo-Trace: abcdefgh12345678\r\n" + strings.ReplaceAll(body, "\n", "\r\n")
	c := dialLMTP(t, "tcp", addr)
	c.lhlo()
	c.Line("MAIL FROM:<>")
	c.Expect(250)
	c.Line("RCPT TO:<jperez+x@correo.test>")
	c.Expect(250)
	r := c.data(msg, 1)
	if !strings.HasPrefix(r[0], "250 2.0.0 <jperez+x@correo.test> delivered to juan (abcdefgh12345678)") {
		t.Errorf("DATA: %q", r[0])
	}
	got, _ := readOnly(t, e.c.Maildir("st1", "juan"))
	h, b := headerBlock(got)
	lines := scanLines(h)
	if lines[0] != "Return-Path: <>" || lines[1] != "Delivered-To: juan@correo.test" ||
		lines[2] != "Received: from tester.example (127.0.0.1)" ||
		lines[3] != "\tby st1.correo.test (correo pdeliveryd) with LMTP id abcdefgh12345678" ||
		lines[4] != "\tfor <jperez+x@correo.test>;" || !strings.HasPrefix(lines[5], "\t") ||
		lines[6] != "X-Correo-Trace: abcdefgh12345678" {
		t.Errorf("headers:\n%s", h)
	}
	if _, err := time.Parse(time.RFC1123Z, strings.TrimSpace(lines[5])); err != nil {
		t.Errorf("Received date: %v", err)
	}
	if _, wantBody := headerBlock(body); b != wantBody {
		t.Errorf("body %q, want %q", b, wantBody)
	}
	// The outcome is logged after the reply is sent: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(e.logs.String(), "trace=abcdefgh12345678"); {
		if time.Now().After(deadline) {
			t.Error("the log line does not carry smtpd's trace id")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Over the Unix socket: the client is "local"; a forged or odd trace
	// header is not reused.
	c = dialLMTP(t, "unix", sock)
	c.lhlo()
	c.Line("MAIL FROM:<a@example.org>")
	c.Expect(250)
	c.Line("RCPT TO:<juan@correo.test>")
	c.Expect(250)
	r = c.data("X-Correo-Trace: bad id;rm -rf\n\nbody\n", 1)
	if !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("DATA: %q", r[0])
	}
	names := files(t, e.c.Maildir("st1", "juan"), "new")
	var second string
	for _, n := range names {
		b, _ := os.ReadFile(filepath.Join(e.c.Maildir("st1", "juan"), "new", n))
		if strings.Contains(string(b), "bad id") {
			second = string(b)
		}
	}
	if !strings.Contains(second, "Received: from tester.example (local)") || strings.Contains(second, "id bad") {
		t.Errorf("second message:\n%s", second)
	}
}

// TestQuotaAtData: the quota is checked again with the real size.
func TestQuotaAtData(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clustertest.Spec{})
	e.users(directory.User{Name: "gus", Storage: "st1", Quota: 5000}, directory.User{Name: "ana", Storage: "st1"})
	_, addr, _ := e.serve("st1", Limits{})
	c := dialLMTP(t, "tcp", addr)
	c.lhlo()
	// SIZE= announces too much: refused at RCPT.
	c.Line("MAIL FROM:<a@example.org> SIZE=9000")
	c.Expect(250)
	if code, msg := c.Cmd("RCPT TO:<gus@correo.test>"); code != 552 || !strings.HasPrefix(msg, "5.2.2") {
		t.Errorf("RCPT with SIZE over quota: %d %s", code, msg)
	}
	c.Cmd("RSET")
	c.Line("MAIL FROM:<a@example.org>")
	c.Expect(250)
	c.Line("RCPT TO:<gus@correo.test>")
	c.Expect(250)
	c.Line("RCPT TO:<ana@correo.test>")
	c.Expect(250)
	r := c.data("Subject: big\n\n"+strings.Repeat("0123456789\n", 600), 2)
	if !strings.HasPrefix(r[0], "552 5.2.2") || !strings.HasPrefix(r[1], "250 2.0.0") {
		t.Errorf("replies %q", r)
	}
	if n := len(files(t, e.c.Maildir("st1", "gus"), "new")); n != 0 {
		t.Errorf("gus got %d messages over quota", n)
	}
	// ana alone: her copy carries her own headers.
	m, _ := readOnly(t, e.c.Maildir("st1", "ana"))
	if !strings.Contains(m, "Delivered-To: ana@correo.test") {
		t.Errorf("ana's message:\n%s", m[:200])
	}
	// A small message still fits gus's quota; the next one no longer does
	// (usage is counted from the Maildir, then kept up to date).
	c.Line("MAIL FROM:<a@example.org>")
	c.Expect(250)
	c.Line("RCPT TO:<gus@correo.test>")
	c.Expect(250)
	if r := c.data("Subject: small\n\n"+strings.Repeat("x", 3000)+"\n", 1); !strings.HasPrefix(r[0], "250") {
		t.Errorf("small message: %q", r)
	}
	c.Line("MAIL FROM:<a@example.org>")
	c.Expect(250)
	c.Line("RCPT TO:<gus@correo.test>")
	c.Expect(250)
	if r := c.data("Subject: small\n\n"+strings.Repeat("x", 3000)+"\n", 1); !strings.HasPrefix(r[0], "552 5.2.2") {
		t.Errorf("second small message: %q", r)
	}
}

// TestQuotaCountsFolders: mail the user keeps in folders (IMAP's Sent,
// Archive...) counts toward the quota, as imapd's QUOTA shows it.
func TestQuotaCountsFolders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clustertest.Spec{})
	e.users(directory.User{Name: "ivo", Storage: "st1", Quota: 5000})
	sent := filepath.Join(e.c.Maildir("st1", "ivo"), ".Sent")
	if _, err := mailbox.New(sent).Deliver(strings.NewReader("Subject: sent\n\n" + strings.Repeat("s", 4000) + "\n")); err != nil {
		t.Fatal(err)
	}
	_, addr, _ := e.serve("st1", Limits{})
	c := dialLMTP(t, "tcp", addr)
	c.lhlo()
	c.Line("MAIL FROM:<a@example.org>")
	c.Expect(250)
	c.Line("RCPT TO:<ivo@correo.test>")
	c.Expect(250)
	if r := c.data("Subject: in\n\n"+strings.Repeat("x", 2000)+"\n", 1); !strings.HasPrefix(r[0], "552 5.2.2") {
		t.Errorf("a message that the folders' usage puts over quota: %q", r)
	}
}

// TestPasswdDown: no passwd server answers → 451 4.4.3, never 5xx.
func TestPasswdDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clustertest.Spec{})
	e.users(directory.User{Name: "ana", Storage: "st1"})
	_, addr, _ := e.serve("st1", Limits{})
	e.pw.Stop(syscall.SIGKILL)
	c := dialLMTP(t, "tcp", addr)
	c.lhlo()
	c.Line("MAIL FROM:<a@example.org>")
	c.Expect(250)
	code, msg := c.Cmd("RCPT TO:<ana@correo.test>")
	if code != 451 || !strings.HasPrefix(msg, "4.4.3") {
		t.Errorf("RCPT with passwd down: %d %s", code, msg)
	}
}

// TestWriteErrors: a mailbox that cannot be written gets 452 4.3.1 and
// nothing in new/, while another recipient of the same message is served.
func TestWriteErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clustertest.Spec{})
	e.users(directory.User{Name: "ana", Storage: "st1"}, directory.User{Name: "bob", Storage: "st1"}, directory.User{Name: "ben", Storage: "st1"})
	// A file where bob's home directory should be: no mkdir can get
	// past it, whoever runs the test (root ignores permission bits).
	bobHome := filepath.Dir(e.c.Maildir("st1", "bob"))
	os.MkdirAll(filepath.Dir(bobHome), 0o755)
	os.WriteFile(bobHome, []byte("in the way"), 0o644)
	// ben's Maildir exists but new/ is read-only: only stops non-root.
	_, addr, _ := e.serve("st1", Limits{})
	c := dialLMTP(t, "tcp", addr)
	c.lhlo()
	c.Line("MAIL FROM:<a@example.org>")
	c.Expect(250)
	for _, u := range []string{"bob", "ana"} {
		c.Line("RCPT TO:<%s@correo.test>", u)
		c.Expect(250)
	}
	r := c.data(body, 2)
	if !strings.HasPrefix(r[0], "452 4.3.1") || !strings.Contains(r[0], "not a directory") || !strings.HasPrefix(r[1], "250 2.0.0") {
		t.Errorf("replies %q", r)
	}
	readOnly(t, e.c.Maildir("st1", "ana"))
	// Alone, bob gets the same answer.
	c.Line("MAIL FROM:<a@example.org>")
	c.Expect(250)
	c.Line("RCPT TO:<bob@correo.test>")
	c.Expect(250)
	if r := c.data(body, 1); !strings.HasPrefix(r[0], "452 4.3.1") {
		t.Errorf("reply %q", r)
	}
	if os.Geteuid() != 0 {
		ben := e.c.Maildir("st1", "ben")
		mailbox.New(ben).Deliver(strings.NewReader("x"))
		os.Chmod(filepath.Join(ben, "tmp"), 0o500)
		defer os.Chmod(filepath.Join(ben, "tmp"), 0o700)
		c.Line("MAIL FROM:<a@example.org>")
		c.Expect(250)
		c.Line("RCPT TO:<ben@correo.test>")
		c.Expect(250)
		if r := c.data(body, 1); !strings.HasPrefix(r[0], "452 4.3.1") {
			t.Errorf("unwritable tmp/: %q", r)
		}
	}
}

// TestOutsideNetworkRefused: the profile's network is 127.0.0.0/28; a
// client at 127.0.0.100 is outside and gets 554 5.7.1 instead of a
// greeting.
func TestOutsideNetworkRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clustertest.Spec{Network: "127.0.0.0/28"})
	_, addr, _ := e.serve("st1", Limits{})
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.100")}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 512)
	n, _ := conn.Read(b)
	if !strings.HasPrefix(string(b[:n]), "554 5.7.1 ") || !strings.Contains(string(b[:n]), "127.0.0.100 is outside the cluster network") {
		t.Errorf("greeting for an outsider: %q", b[:n])
	}
	if n, err := conn.Read(b); err == nil {
		t.Errorf("connection left open after refusal: %q", b[:n])
	}
	// An insider is greeted.
	dialLMTP(t, "tcp", addr)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.logs.String(), "refused a connection from outside the cluster network"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Error("the refusal is not logged")
			break
		}
	}
}

// TestBadInput: garbage, over-long lines, bad addresses and oversize
// messages get the protocol's errors and change nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clustertest.Spec{})
	e.users(directory.User{Name: "ana", Storage: "st1"})
	_, addr, _ := e.serve("st1", Limits{MaxMessageBytes: 64 << 10, MaxLineLength: 4096})
	ana := e.c.Maildir("st1", "ana")

	t.Run("garbage", func(t *testing.T) {
		c := dialLMTP(t, "tcp", addr)
		c.Conn.Write([]byte("\x00\xff\xfe garbage\r\nHELO x\r\nEHLO x\r\nMAIL FROM:<a@b.c>\r\n\x16\x03\x01\x02\x00\r\n"))
		seen := 0
		for {
			c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			code, _, err := c.TP.ReadResponse(0)
			if err != nil && code == 0 {
				break // closed after too many errors
			}
			if code < 500 {
				t.Errorf("garbage got %d", code)
			}
			seen++
		}
		if seen < 4 {
			t.Errorf("%d replies to garbage", seen)
		}
	})
	t.Run("long command line", func(t *testing.T) {
		c := dialLMTP(t, "tcp", addr)
		c.lhlo()
		// The server answers 500 and hangs up while the rest of the line is
		// still unread, which makes the kernel reset the connection: on a
		// loaded machine the reset can overtake the reply. Either is the
		// protocol's refusal; a 2xx or a silent open connection is not.
		_, werr := c.Conn.Write([]byte("MAIL FROM:<" + strings.Repeat("a", 10000) + "@example.org>\r\n"))
		c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		code, msg, rerr := c.TP.ReadResponse(0)
		switch {
		case werr == nil && rerr == nil:
			if code != 500 || !strings.Contains(msg, "Too long line") {
				t.Errorf("over-long command: %d %s", code, msg)
			}
		case isReset(werr) || isReset(rerr) || errors.Is(rerr, io.EOF):
			// Refused by closing the connection.
		default:
			t.Errorf("over-long command: write %v, read %d %q %v", werr, code, msg, rerr)
		}
	})
	t.Run("long line in data", func(t *testing.T) {
		c := dialLMTP(t, "tcp", addr)
		c.lhlo()
		c.Line("MAIL FROM:<a@example.org>")
		c.Expect(250)
		c.Line("RCPT TO:<ana@correo.test>")
		c.Expect(250)
		r := c.data("Subject: x\n\n"+strings.Repeat("y", 8000)+"\n", 1)
		if !strings.HasPrefix(r[0], "500 5.5.2") {
			t.Errorf("over-long line in DATA: %q", r)
		}
		if n := len(files(t, ana, "new")) + len(files(t, ana, "tmp")); n != 0 {
			t.Errorf("%d files left", n)
		}
	})
	t.Run("addresses", func(t *testing.T) {
		c := dialLMTP(t, "tcp", addr)
		c.lhlo()
		if code, _ := c.Cmd("MAIL FROM:<a b@example.org>"); code != 501 {
			t.Errorf("MAIL with a space: %d", code)
		}
		if code, msg := c.Cmd("MAIL FROM:<\"x>y\"@example.org>"); code != 501 {
			t.Errorf("MAIL with '>': %d %s", code, msg)
		}
		c.Line("MAIL FROM:<a@example.org>")
		c.Expect(250)
		for _, rcpt := range []string{"../../etc/passwd@correo.test", "a/b@correo.test", ".hidden@correo.test",
			"-rf@correo.test", "ANA/../ana@correo.test", "ana\x00@correo.test", "ana@correo.test/..", "@correo.test"} {
			code, msg := c.Cmd("RCPT TO:<%s>", rcpt)
			if code < 500 {
				t.Errorf("RCPT %q: %d %s", rcpt, code, msg)
			}
		}
	})
	t.Run("oversize", func(t *testing.T) {
		c := dialLMTP(t, "tcp", addr)
		c.lhlo()
		if code, msg := c.Cmd("MAIL FROM:<a@example.org> SIZE=100000"); code != 552 {
			t.Errorf("SIZE over the limit: %d %s", code, msg)
		}
		c.Line("MAIL FROM:<a@example.org>")
		c.Expect(250)
		c.Line("RCPT TO:<ana@correo.test>")
		c.Expect(250)
		r := c.data(strings.Repeat("0123456789abcdef\n", 5000), 1)
		if !strings.HasPrefix(r[0], "552 5.3.4") {
			t.Errorf("oversize DATA: %q", r)
		}
		if n := len(files(t, ana, "new")); n != 0 {
			t.Errorf("%d files in new/", n)
		}
		// The session goes on.
		c.Line("NOOP")
		c.Expect(250)
	})
}

// TestTimeouts: an idle client is dropped with 421; a client trickling
// its message is cut at the data timeout and nothing is stored.
func TestTimeouts(t *testing.T) {
	e := newEnv(t, clustertest.Spec{})
	e.users(directory.User{Name: "ana", Storage: "st1"})
	_, addr, _ := e.serve("st1", Limits{IdleTimeout: 300 * time.Millisecond, DataTimeout: 1200 * time.Millisecond})
	c := dialLMTP(t, "tcp", addr)
	c.lhlo()
	time.Sleep(600 * time.Millisecond)
	if code, msg := c.Reply(); code != 421 || !strings.Contains(msg, "Idle timeout") {
		t.Errorf("idle client: %d %s", code, msg)
	}

	c = dialLMTP(t, "tcp", addr)
	c.lhlo()
	c.Line("MAIL FROM:<a@example.org>")
	c.Expect(250)
	c.Line("RCPT TO:<ana@correo.test>")
	c.Expect(250)
	c.Line("DATA")
	c.Expect(354)
	start := time.Now()
	for time.Since(start) < 3*time.Second {
		if _, err := c.Conn.Write([]byte("slow line\r\n")); err != nil {
			break
		}
		time.Sleep(200 * time.Millisecond) // each read within the idle timeout
	}
	c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var all bytes.Buffer
	b := make([]byte, 4096)
	for {
		n, err := c.Conn.Read(b)
		all.Write(b[:n])
		if err != nil {
			break
		}
	}
	if !strings.Contains(all.String(), "451 4.4.2") {
		t.Errorf("trickling client got %q", all.String())
	}
	ana := e.c.Maildir("st1", "ana")
	if n := len(files(t, ana, "new")) + len(files(t, ana, "tmp")); n != 0 {
		t.Errorf("%d files stored for a message never completed", n)
	}
}

// TestLargeMessageSpool: a message bigger than the memory spool goes
// through a spool file and arrives intact.
func TestLargeMessageSpool(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clustertest.Spec{})
	e.users(directory.User{Name: "ana", Storage: "st1"}, directory.User{Name: "bob", Storage: "st1"})
	_, addr, _ := e.serve("st1", Limits{})
	var big strings.Builder
	big.WriteString("Subject: big\n\n")
	for i := 0; big.Len() < 3*memSpool; i++ {
		fmt.Fprintf(&big, "line %d %s\n", i, strings.Repeat("z", i%200))
	}
	c := dialLMTP(t, "tcp", addr)
	c.lhlo()
	c.Line("MAIL FROM:<a@example.org>")
	c.Expect(250)
	c.Line("RCPT TO:<ana@correo.test>")
	c.Expect(250)
	c.Line("RCPT TO:<bob@correo.test>")
	c.Expect(250)
	for _, r := range c.data(big.String(), 2) {
		if !strings.HasPrefix(r, "250") {
			t.Fatalf("reply %q", r)
		}
	}
	m, _ := readOnly(t, e.c.Maildir("st1", "bob"))
	if _, b := headerBlock(m); b != strings.SplitN(big.String(), "\n\n", 2)[1] {
		t.Error("large message changed on the way")
	}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// TestBDAT: a pipelined transaction with BDAT LAST (CHUNKING, as
// src/lmtpclient sends one recipient's message) stores the bytes as sent:
// a leading dot is not unstuffed, and the headers are those DATA gets. An
// unknown recipient is refused at RCPT and BDAT then gets one refusal.
func TestBDAT(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clustertest.Spec{})
	e.users(directory.User{Name: "juan", Storage: "st1"})
	_, addr, _ := e.serve("st1", Limits{})
	msg := "X-Correo-Trace: bdatbdat12345678\r\nSubject: chunk\r\n\r\n.one leading dot\r\n..two\r\n"
	c := dialLMTP(t, "tcp", addr)
	if caps := c.lhlo(); !strings.Contains(caps, "CHUNKING") {
		t.Fatalf("LHLO does not offer CHUNKING:\n%s", caps)
	}
	c.Conn.Write([]byte(fmt.Sprintf("MAIL FROM:<a@example.org>\r\nRCPT TO:<juan@correo.test>\r\nBDAT %d LAST\r\n%s", len(msg), msg)))
	c.Expect(250)
	c.Expect(250)
	if r := c.Expect(250); !strings.Contains(r, "<juan@correo.test> delivered to juan (bdatbdat12345678)") {
		t.Errorf("BDAT reply %q", r)
	}
	got, _ := readOnly(t, e.c.Maildir("st1", "juan"))
	h, b := headerBlock(got)
	if b != ".one leading dot\n..two\n" || !strings.Contains(h, "with LMTP id bdatbdat12345678") || !strings.Contains(h, "Subject: chunk") {
		t.Errorf("stored message:\n%s", got)
	}
	c.Conn.Write([]byte(fmt.Sprintf("MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@correo.test>\r\nBDAT %d LAST\r\n%s", len(msg), msg)))
	c.Expect(250)
	c.Expect(550)
	if code, text := c.Reply(); code < 500 {
		t.Errorf("BDAT with no recipient: %d %s", code, text)
	}
	// The session goes on.
	if code, text := c.Cmd("RSET"); code != 250 {
		t.Errorf("RSET: %d %s", code, text)
	}
	if n := len(files(t, e.c.Maildir("st1", "juan"), "new")); n != 1 {
		t.Errorf("juan has %d messages, want 1", n)
	}
}

// TestFrozenMailbox: a Maildir frozen for a move (its MovingMarker) takes
// nothing: 451 4.2.0 for that recipient alone, even when passwd still
// says active, and the mover's Gate.Wait returns once the write ends.
func TestFrozenMailbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clustertest.Spec{})
	e.users(directory.User{Name: "fia", Storage: "st1"}, directory.User{Name: "ana", Storage: "st1"})
	srv, addr, _ := e.serve("st1", Limits{})
	root := e.c.Maildir("st1", "fia")
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, mailbox.MovingMarker), []byte("frozen\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := dialLMTP(t, "tcp", addr)
	c.lhlo()
	c.Line("MAIL FROM:<a@example.org>")
	c.Expect(250)
	c.Line("RCPT TO:<fia@correo.test>")
	c.Expect(250)
	c.Line("RCPT TO:<ana@correo.test>")
	c.Expect(250)
	r := c.data("Subject: frozen\n\nhola\n", 2)
	if !strings.HasPrefix(r[0], "451 4.2.0") || !strings.HasPrefix(r[1], "250 2.0.0") {
		t.Errorf("replies %q, want 451 4.2.0 for the frozen mailbox and 250 for the other", r)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 {
		t.Errorf("the frozen Maildir holds %v, want only the marker", entries)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.cfg.Gate.Wait(ctx, "fia"); err != nil {
		t.Errorf("the gate still counts a write after DATA ended: %v", err)
	}
}
