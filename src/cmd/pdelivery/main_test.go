package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/directory"
)

// The tests run the pdelivery binary as an MTA would, against real
// pdeliveryd and passwdd processes on two storage hosts: st1 (127.0.0.1,
// also the passwd primary) and st2 (127.0.0.2).

type env struct {
	c      *clustertest.Cluster
	bin    string
	pw     *clustertest.Proc
	socket string
}

func setup(t *testing.T) *env {
	t.Helper()
	c := clustertest.NewCluster(t, clustertest.Spec{Hosts: []clustertest.HostSpec{
		{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}},
		{Name: "st2", Address: "127.0.0.2", Roles: []string{"storage"}},
	}})
	e := &env{c: c, bin: clustertest.Build(t, "pdelivery", true)}
	e.pw = c.StartPasswdd(t, "st1")
	c.AddUsers(t,
		directory.User{Name: "ana", Storage: "st1", Aliases: []string{"anita"}},
		directory.User{Name: "eva", Storage: "st2"},
		directory.User{Name: "fede", Storage: "st1", State: directory.StateDisabled},
		directory.User{Name: "gus", Storage: "st1", Quota: 10},
	)
	c.StartDaemon(t, "pdeliveryd", "st1", true)
	c.StartDaemon(t, "pdeliveryd", "st2", true)
	e.socket = filepath.Join(c.StateDir("st1", "pdeliveryd"), "lmtp.sock")
	return e
}

// run runs pdelivery with stdin and returns its exit code and stderr.
func (e *env) run(t *testing.T, stdin string, cred *syscall.Credential, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(e.bin, append([]string{"-profile", e.c.ProfilePath, "-socket", e.socket}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stderr.String()
}

func messages(t *testing.T, maildir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(maildir, "new"))
	var out []string
	for _, en := range ents {
		b, err := os.ReadFile(filepath.Join(maildir, "new", en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

const mboxMsg = "From sender@example.org  Sun Nov 29 10:00:00 2026\nSubject: via pdelivery\n\nFrom the body, not an envelope line.\n"

func TestExitCodes(t *testing.T) {
	e := setup(t)
	cases := []struct {
		name  string
		args  []string
		stdin string
		code  int
		err   string // in stderr
	}{
		{"bare name", []string{"-f", "sender@example.org", "-d", "ana"}, mboxMsg, 0, ""},
		{"address on another host", []string{"-f", "<>", "eva@correo.test"}, mboxMsg, 0, ""},
		{"alias with detail", []string{"-d", "anita+x@correo.test", "-a", "anita+x@correo.test"}, "Subject: a\n\nb\n", 0, ""},
		{"unknown user", []string{"-d", "nobody"}, mboxMsg, exNoUser, "550 5.1.1"},
		{"bad name", []string{"-d", "../etc"}, mboxMsg, exNoUser, "550 5.1.1"},
		{"other domain", []string{"-d", "ana@example.org"}, mboxMsg, exNoUser, "550 5.1.2"},
		{"disabled", []string{"-d", "fede"}, mboxMsg, exUnavailable, "550 5.2.1"},
		{"over quota", []string{"-d", "gus"}, mboxMsg, exUnavailable, "552 5.2.2"},
		{"bad sender", []string{"-f", "a b@c", "-d", "ana"}, mboxMsg, exDataErr, "501 5.1.7"},
		{"no recipient", nil, mboxMsg, exTempFail, "usage"},
		{"two recipients", []string{"ana", "eva"}, mboxMsg, exTempFail, "usage"},
		{"bad flag", []string{"-x", "ana"}, mboxMsg, exTempFail, "usage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr := e.run(t, tc.stdin, nil, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.err) || (code != 0 && strings.Count(stderr, "\n") != 1) {
				t.Errorf("exit %d, stderr %q; want %d and %q on one line", code, stderr, tc.code, tc.err)
			}
		})
	}
	ana := messages(t, e.c.Maildir("st1", "ana"))
	if len(ana) != 2 {
		t.Fatalf("ana has %d messages, want 2", len(ana))
	}
	for _, m := range ana {
		if strings.HasPrefix(m, "From ") || strings.Contains(m, "\nFrom sender@example.org ") {
			t.Errorf("the mbox From line was not dropped:\n%s", m)
		}
	}
	joined := strings.Join(ana, "")
	if !strings.Contains(joined, "Return-Path: <sender@example.org>\nDelivered-To: ana@correo.test\n") ||
		!strings.Contains(joined, "\nFrom the body, not an envelope line.\n") || !strings.Contains(joined, "for <anita+x@correo.test>") {
		t.Errorf("ana's messages:\n%s", joined)
	}
	if eva := messages(t, e.c.Maildir("st2", "eva")); len(eva) != 1 || !strings.HasPrefix(eva[0], "Return-Path: <>\n") {
		t.Errorf("eva's messages: %q", eva)
	}

	// Too large: refused before anything is sent.
	big := "Subject: big\n\n" + strings.Repeat(strings.Repeat("b", 99)+"\n", (50<<20)/100+1)
	if code, stderr := e.run(t, big, nil, "-d", "ana"); code != exDataErr || !strings.Contains(stderr, "larger than") {
		t.Errorf("oversize: exit %d %q", code, stderr)
	}
	// The directory is down: temporary.
	e.pw.Stop(syscall.SIGKILL)
	if code, stderr := e.run(t, mboxMsg, nil, "-d", "ana"); code != exTempFail || !strings.Contains(stderr, "4.4.3") {
		t.Errorf("passwd down: exit %d %q", code, stderr)
	}
}

// TestWithoutKey runs pdelivery as an unprivileged user, as Postfix's
// mailbox_command does: it cannot read the cluster key nor connect to the
// 0660 socket, so it goes by TCP to this host's pdeliveryd, which names the
// right host for users stored elsewhere.
func TestWithoutKey(t *testing.T) {
	testutil.NeedRoot(t)
	e := setup(t)
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	for _, rcpt := range []string{"ana", "eva"} {
		if code, stderr := e.run(t, mboxMsg, cred, "-f", "x@example.org", "-d", rcpt); code != 0 {
			t.Errorf("%s as nobody: exit %d %q", rcpt, code, stderr)
		}
	}
	if code, stderr := e.run(t, mboxMsg, cred, "-d", "nobody"); code != exNoUser {
		t.Errorf("unknown user as nobody: exit %d %q", code, stderr)
	}
	if n := len(messages(t, e.c.Maildir("st2", "eva"))); n != 1 {
		t.Errorf("eva has %d messages", n)
	}
	for _, m := range messages(t, e.c.Maildir("st1", "ana")) {
		if !strings.Contains(m, "(127.0.0.1)") {
			t.Errorf("expected delivery by TCP (the socket is 0660):\n%s", m)
		}
	}
}

// TestPostfixMailboxCommand: a private Postfix delivers to a local user
// with mailbox_command = pdelivery ...; swaks sends, Python's
// mailbox.Maildir reads back the same body. Postfix's local(8) needs the
// user in /etc/passwd: it sees a copy with ana added, in its own mount
// namespace.
func TestPostfixMailboxCommand(t *testing.T) {
	testutil.NeedRoot(t)
	swaks := testutil.NeedCommand(t, "swaks")
	python := testutil.NeedCommand(t, "python3")
	e := setup(t)
	home := filepath.Join(e.c.Dir, "home-ana")
	os.MkdirAll(home, 0o755)
	os.Chown(home, 5001, 5001)
	cmdline := fmt.Sprintf(`%s -profile %s -socket %s -f "$SENDER" -a "$RECIPIENT" -d "$USER"`, e.bin, e.c.ProfilePath, e.socket)
	pf := clustertest.StartPostfix(t, clustertest.PostfixConfig{
		Main: map[string]string{
			"mydestination":   "correo.test",
			"mailbox_command": cmdline,
		},
		Passwd: []string{"ana:x:5001:5001:Ana:" + home + ":/bin/sh"},
	})
	msgFile := filepath.Join(e.c.Dir, "msg.eml")
	os.WriteFile(msgFile, []byte(clustertest.TestMessage+".\n"), 0o644)
	out, err := exec.Command(swaks, "--server", pf.Addr(), "--from", "sender@example.org", "--to", "ana@correo.test",
		"--data", msgFile, "--silent", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	pf.WaitQueueEmpty(t, 60*time.Second)
	msgs := clustertest.ReadMaildir(t, python, e.c.Maildir("st1", "ana"))
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1\n%s", len(msgs), pf.Log())
	}
	if msgs[0].Body != clustertest.TestBody {
		t.Errorf("body changed on the way:\n%q\nwant\n%q", msgs[0].Body, clustertest.TestBody)
	}
	if !strings.Contains(msgs[0].Headers, "Delivered-To: ana@correo.test") || !strings.Contains(msgs[0].Headers, "(correo pdeliveryd) with LMTP id") {
		t.Errorf("headers:\n%s", msgs[0].Headers)
	}
	if !strings.Contains(pf.Log(), "status=sent (delivered to command:") {
		t.Errorf("postfix log:\n%s", pf.Log())
	}
}

// Sendmail passes the null sender of a bounce as $g = MAILER-DAEMON.
func TestParseArgsNullSender(t *testing.T) {
	for _, from := range []string{"MAILER-DAEMON", "mailer-daemon", "<>", ""} {
		o, err := parseArgs([]string{"-f", from, "-d", "ana"})
		if err != nil || o.from != "" {
			t.Errorf("-f %q: sender %q, %v; want the null sender", from, o.from, err)
		}
	}
	if o, _ := parseArgs([]string{"-f", "MAILER-DAEMON@example.org", "-d", "ana"}); o.from != "MAILER-DAEMON@example.org" {
		t.Errorf("a full address was changed to %q", o.from)
	}
}
