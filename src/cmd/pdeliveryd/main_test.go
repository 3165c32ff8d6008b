package main

import (
	"bytes"
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
	"correo/src/cluster"
	"correo/src/directory"
)

// These tests run the real pdeliveryd binary as a process, the way a
// storage host does, with a real passwdd, and kill it the hard way.

func setup(t *testing.T) *clustertest.Cluster {
	t.Helper()
	c := clustertest.NewCluster(t, clustertest.Spec{Hosts: []clustertest.HostSpec{
		{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}},
	}})
	c.StartPasswdd(t, "st1")
	c.AddUsers(t, directory.User{Name: "ana", Storage: "st1"}, directory.User{Name: "bob", Storage: "st1"})
	return c
}

func lmtpAddr(c *clustertest.Cluster) string {
	a, _ := c.Profile.Listen("st1", cluster.SvcLMTP)
	return a.String()
}

// conn is a raw LMTP connection.
type conn struct{ *clustertest.TextConn }

func dial(t *testing.T, addr string) *conn {
	t.Helper()
	return &conn{clustertest.DialText(t, "tcp", addr, 220)}
}

// start begins a transaction for rcpts up to the 354.
func (c *conn) start(rcpts ...string) {
	c.T.Helper()
	c.Want(250, "LHLO test.example")
	c.Want(250, "MAIL FROM:<x@example.org>")
	for _, r := range rcpts {
		c.Want(250, "RCPT TO:<%s>", r)
	}
	c.Want(354, "DATA")
}

// rest reads whatever the server still sends until the connection ends.
func (c *conn) rest() string {
	c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := c.Conn.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

func entries(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestKill9DuringData: pdeliveryd killed while receiving a message leaves
// nothing in new/ (nor tmp/), and the client never sees a 250. Killed
// right after the final dot, whatever the client saw is true: a 250 means
// the message is in new/, complete.
func TestKill9DuringData(t *testing.T) {
	c := setup(t)
	ana := c.Maildir("st1", "ana")
	p := c.StartDaemon(t, "pdeliveryd", "st1", true)
	l := dial(t, lmtpAddr(c))
	l.start("ana@correo.test", "bob@correo.test")
	l.Conn.Write([]byte("Subject: interrupted\r\n\r\n" + strings.Repeat("half a message\r\n", 20000)))
	time.Sleep(200 * time.Millisecond)
	p.Signal(syscall.SIGKILL)
	<-p.Done()
	if got := l.rest(); strings.Contains(got, "250") {
		t.Errorf("client saw %q after the kill", got)
	}
	for _, d := range []string{"new", "tmp", "cur"} {
		if n := entries(filepath.Join(ana, d)); len(n) != 0 {
			t.Errorf("%s/ holds %v after a kill during DATA", d, n)
		}
	}

	body := "Subject: complete\n\n" + strings.Repeat("a complete message\n", 5000)
	for i := 0; i < 6; i++ {
		p := c.StartDaemon(t, "pdeliveryd", "st1", true)
		l := dial(t, lmtpAddr(c))
		l.start("ana@correo.test")
		w := l.TP.DotWriter()
		w.Write([]byte(body))
		w.Close()
		time.Sleep(time.Duration(i) * time.Millisecond)
		p.Signal(syscall.SIGKILL)
		<-p.Done()
		saw250 := strings.HasPrefix(l.rest(), "250")
		names := entries(filepath.Join(ana, "new"))
		if saw250 && len(names) == 0 {
			t.Fatalf("attempt %d: 250 seen but nothing in new/", i)
		}
		for _, n := range names {
			b, _ := os.ReadFile(filepath.Join(ana, "new", n))
			if !strings.HasSuffix(string(b), body) {
				t.Fatalf("attempt %d: %s in new/ is incomplete (%d bytes)", i, n, len(b))
			}
			os.Remove(filepath.Join(ana, "new", n))
		}
		t.Logf("attempt %d: 250 seen %v, files %d", i, saw250, len(names))
	}
}

// TestDiskFullAndReadOnly runs pdeliveryd in a mount namespace whose
// mail directory is a 256 KiB tmpfs: a message that does not fit gets
// 452 4.3.1 with nothing in new/ or tmp/, one that fits is delivered;
// after a remount read-only every delivery gets 452 4.3.1.
func TestDiskFullAndReadOnly(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedCommand(t, "unshare")
	nsenter := testutil.NeedCommand(t, "nsenter")
	c := setup(t)
	data := c.DataDir("st1")
	os.MkdirAll(data, 0o755)
	bin := clustertest.Build(t, "pdeliveryd", true)
	argv := []string{"unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs -o size=256k correo-test "$DATA" && exec "$@"`, "sh",
		bin, "-profile", c.ProfilePath, "-host", "st1", "-state", c.StateDir("st1", "pdeliveryd")}
	p := clustertest.StartNotify(t, "pdeliveryd-tmpfs", argv, []string{"DATA=" + data})
	// The tmpfs is only visible inside the namespace: look through the
	// process's root.
	inside := func(path string) string { return fmt.Sprintf("/proc/%d/root%s", p.Cmd.Process.Pid, path) }
	ana := c.Maildir("st1", "ana")

	send := func(size int, rcpts ...string) []string {
		l := dial(t, lmtpAddr(c))
		l.start(rcpts...)
		w := l.TP.DotWriter()
		fmt.Fprintf(w, "Subject: %d bytes\n\n%s", size, strings.Repeat(strings.Repeat("x", 99)+"\n", size/100+1))
		w.Close()
		var out []string
		for range rcpts {
			code, msg, _ := l.TP.ReadResponse(0)
			out = append(out, fmt.Sprintf("%d %s", code, msg))
		}
		l.Want(221, "QUIT")
		return out
	}
	if r := send(512<<10, "ana@correo.test"); !strings.HasPrefix(r[0], "452 4.3.1") || !strings.Contains(r[0], "no space left on device") {
		t.Errorf("message larger than the disk: %q", r)
	}
	for _, d := range []string{"new", "tmp"} {
		if n := entries(inside(filepath.Join(ana, d))); len(n) != 0 {
			t.Errorf("%s/ holds %v after a full disk", d, n)
		}
	}
	if r := send(10<<10, "ana@correo.test", "bob@correo.test"); !strings.HasPrefix(r[0], "250") || !strings.HasPrefix(r[1], "250") {
		t.Errorf("message that fits: %q", r)
	}
	if n := entries(inside(filepath.Join(ana, "new"))); len(n) != 1 {
		t.Errorf("new/ holds %v, want one message", n)
	}
	// Fill the rest of the disk with several recipients' worth.
	if r := send(300<<10, "bob@correo.test"); !strings.HasPrefix(r[0], "452 4.3.1") {
		t.Errorf("second large message: %q", r)
	}
	if out, err := exec.Command(nsenter, "-t", fmt.Sprint(p.Cmd.Process.Pid), "-m", "mount", "-o", "remount,ro", data).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v\n%s", err, out)
	}
	if r := send(100, "ana@correo.test"); !strings.HasPrefix(r[0], "452 4.3.1") || !strings.Contains(r[0], "read-only file system") {
		t.Errorf("read-only file system: %q", r)
	}
	if n := entries(inside(filepath.Join(ana, "new"))); len(n) != 1 {
		t.Errorf("new/ holds %v, want the one earlier message", n)
	}
}

// TestPostfixLMTPTransport: a private Postfix hands mail for the cluster
// domain to pdeliveryd over LMTP (virtual_transport = lmtp:inet:...);
// swaks sends it; Python's mailbox.Maildir reads back the same body.
func TestPostfixLMTPTransport(t *testing.T) {
	testutil.NeedRoot(t)
	swaks := testutil.NeedCommand(t, "swaks")
	python := testutil.NeedCommand(t, "python3")
	c := setup(t)
	c.StartDaemon(t, "pdeliveryd", "st1", true)
	pf := clustertest.StartPostfix(t, clustertest.PostfixConfig{Main: map[string]string{
		"virtual_mailbox_domains": "correo.test",
		"virtual_transport":       "lmtp:inet:" + lmtpAddr(c),
	}})
	msgFile := filepath.Join(c.Dir, "msg.eml")
	// swaks sends the file as DATA; ending it with the "." line keeps it
	// from adding a line break of its own.
	os.WriteFile(msgFile, []byte(clustertest.TestMessage+".\n"), 0o644)
	out, err := exec.Command(swaks, "--server", pf.Addr(), "--from", "sender@example.org", "--to", "ana@correo.test,bob@correo.test",
		"--data", msgFile, "--silent", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	pf.WaitQueueEmpty(t, 60*time.Second)
	for _, u := range []string{"ana", "bob"} {
		msgs := clustertest.ReadMaildir(t, python, c.Maildir("st1", u))
		if len(msgs) != 1 {
			t.Fatalf("%s: %d messages, want 1\n%s", u, len(msgs), pf.Log())
		}
		if msgs[0].Body != clustertest.TestBody {
			t.Errorf("%s: body changed on the way:\n%q\nwant\n%q", u, msgs[0].Body, clustertest.TestBody)
		}
		if !strings.Contains(msgs[0].Headers, "(correo pdeliveryd) with LMTP id") || !strings.Contains(msgs[0].Headers, "Return-Path: <sender@example.org>") {
			t.Errorf("%s: headers:\n%s", u, msgs[0].Headers)
		}
	}
	if !strings.Contains(pf.Log(), "status=sent (250 2.0.0") {
		t.Errorf("postfix log:\n%s", pf.Log())
	}
}
