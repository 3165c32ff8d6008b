// Package dev tests the README's main command: the dev cluster of
// hosts/dev.toml, every role on loopback, started in the foreground by
// `correoctl cluster up` as `make dev` does.
package dev

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/internal/testutil"
)

// TestDevCluster starts the dev cluster, mails its demo user with Python's
// smtplib, reads the message back with poplib through mailproxy and pop3d
// and with imaplib from imapd,
// and stops everything with Ctrl-C (SIGINT).
func TestDevCluster(t *testing.T) {
	for _, c := range []string{"nsd", "rsyslogd"} {
		testutil.NeedCommand(t, c)
	}
	python := testutil.NeedCommand(t, "python3")
	dir := t.TempDir()
	bin := clustertest.BuildAll(t, false)
	profile, _ := filepath.Abs("../../hosts/dev.toml")
	// The dev profile's relative paths (.dev/...) land in the working
	// directory: a temporary one here.
	cmd := exec.Command(filepath.Join(bin, "correoctl"), "cluster", "up", "--profile", profile,
		"--state", filepath.Join(dir, "run"), "--bin", bin, "--echo", "--demo", "demo")
	cmd.Dir = dir
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		exec.Command(filepath.Join(bin, "correoctl"), "cluster", "down", "--profile", profile, "--state", filepath.Join(dir, "run")).Run()
	})

	// Read the summary until the demo user's password.
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, stdout)
	}()
	re := regexp.MustCompile(`^demo user demo@correo\.test, password (\S+)$`)
	var password string
	timeout := time.After(60 * time.Second)
	for password == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("cluster up ended before printing the demo user:\n%s", stderr.String())
			}
			if m := re.FindStringSubmatch(l); m != nil {
				password = m[1]
			}
		case <-timeout:
			t.Fatalf("no demo user after 60 s:\n%s", stderr.String())
		}
	}

	script := `import smtplib, poplib, sys, time
pw = sys.argv[1]
body = "Hola desde smtplib.\n.una linea con punto\nfin\n"
msg = "From: alguien@example.org\r\nTo: demo@correo.test\r\nSubject: dev\r\nMessage-ID: <dev-1@example.org>\r\n\r\n" + body.replace("\n", "\r\n")
with smtplib.SMTP("127.0.0.1", 10025, timeout=20) as s:
    s.sendmail("alguien@example.org", ["demo@correo.test"], msg)
deadline = time.time() + 30
while True:
    p = poplib.POP3("127.0.0.1", 10110, timeout=20)
    p.user("demo"); p.pass_(pw)
    n = len(p.list()[1])
    if n or time.time() > deadline:
        break
    p.quit(); time.sleep(0.3)
assert n == 1, n
lines = p.retr(1)[1]
p.quit()
text = b"\n".join(lines).decode()
head, _, got = text.partition("\n\n")
assert got + "\n" == body, repr(got)
assert "Message-ID: <dev-1@example.org>" in head, head
# The same message over IMAP, straight from imapd (the dev network is
# trusted): POP left it in place, IMAP sees it, flags it, and POP's UIDL
# does not change.
import imaplib
uidl = poplib.POP3("127.0.0.1", 10110, timeout=20)
uidl.user("demo"); uidl.pass_(pw)
before = uidl.uidl()[1]
uidl.quit()
m = imaplib.IMAP4("127.0.0.1", 11143)
m.login("demo", pw)
typ, data = m.select("INBOX")
assert data[0] == b"1", data
typ, data = m.fetch("1", "(BODY.PEEK[TEXT])")
assert data[0][1].replace(b"\r\n", b"\n").decode() == body, data
m.store("1", "+FLAGS", "\\Flagged")
typ, data = m.list()
assert any(b"\\Sent" in l for l in data), data
m.logout()
uidl = poplib.POP3("127.0.0.1", 10110, timeout=20)
uidl.user("demo"); uidl.pass_(pw)
after = uidl.uidl()[1]
uidl.quit()
assert before == after, (before, after)
print("ok")
`
	out, err := exec.Command(python, "-c", script, password).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("smtplib → poplib through the dev cluster: %v\n%s\ncluster log:\n%s", err, out, stderr.String())
	}

	// Every daemon counted that traffic, on its own metrics port.
	checkMetrics(t, profile)

	// Ctrl-C stops everything cleanly.
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("cluster up after Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("cluster up did not stop within 60 s of Ctrl-C")
	}
	if _, err := os.Stat(filepath.Join(dir, "run", "runner.pids")); err == nil {
		t.Error("runner.pids left after a clean stop")
	}
	if !strings.Contains(stderr.String(), `msg="ready" host=dev`) {
		t.Error("the daemons' log lines were not echoed to the terminal")
	}
}
