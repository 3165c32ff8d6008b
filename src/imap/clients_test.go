package imap

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"correo/internal/testutil"
)

// Real clients against imapd: curl, fetchmail and mbsync (isync), the
// last a strict client of UIDPLUS and flags, synchronising both ways.

func TestCurlIMAP(t *testing.T) {
	curl := testutil.NeedCommand(t, "curl")
	e := newEnvSpec(t, true)
	e.deliver("ana", msg("uno", "primer cuerpo"), msg("dos", "segundo cuerpo"))
	base := "imap://" + e.addr
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-sS", "--max-time", "20", "-u", "ana:" + password}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := run(base + "/INBOX;UID=2"); !strings.Contains(out, "segundo cuerpo") {
		t.Fatalf("curl fetch by UID: %q", out)
	}
	if out := run(base + "/INBOX?SUBJECT%20uno"); !strings.Contains(out, "SEARCH 1") {
		t.Fatalf("curl search: %q", out)
	}
	if out := run(base + "/"); !strings.Contains(out, "INBOX") || !strings.Contains(out, "Sent") {
		t.Fatalf("curl list: %q", out)
	}
	// A wrong password is refused, and curl says so.
	if out, err := exec.Command(curl, "-sS", "--max-time", "20", "-u", "ana:wrong", base+"/INBOX;UID=1").CombinedOutput(); err == nil {
		t.Fatalf("curl with a wrong password succeeded: %s", out)
	}
}

func TestFetchmailIMAP(t *testing.T) {
	fetchmail := testutil.NeedCommand(t, "fetchmail")
	e := newEnvSpec(t, true)
	e.deliver("ana", msg("uno", "para fetchmail"), msg("dos", "otro"))
	dir := t.TempDir()
	host, port, _ := strings.Cut(e.addr, ":")
	rc := filepath.Join(dir, "fetchmailrc")
	out := filepath.Join(dir, "mbox")
	os.WriteFile(rc, []byte(fmt.Sprintf("poll %s service %s protocol IMAP auth password user ana password %s is root keep sslproto '' mda \"cat >> %s\"\n",
		host, port, password, out)), 0o600)
	cmd := exec.Command(fetchmail, "-f", rc, "--nosyslog", "--nodetach", "-v")
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	if !strings.Contains(string(got), "para fetchmail") || !strings.Contains(string(got), "Subject: dos") {
		t.Fatalf("fetchmail delivered:\n%s", got)
	}
}

func TestMbsyncBothWays(t *testing.T) {
	mbsync := testutil.NeedCommand(t, "mbsync")
	e := newEnvSpec(t, true)
	e.deliver("ana", msg("uno", "a"), msg("dos", "b"), msg("tres", "c"))
	dir := t.TempDir()
	host, port, _ := strings.Cut(e.addr, ":")
	local := filepath.Join(dir, "mail") + "/"
	os.MkdirAll(local, 0o700)
	conf := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(conf, []byte(fmt.Sprintf(`IMAPAccount a
Host %s
Port %s
User ana
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account a

MaildirStore local
Path %s
Inbox %sINBOX
SubFolders Verbatim

Channel ch
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
Sync All
`, host, port, password, local, local)), 0o600)
	sync := func() string {
		t.Helper()
		cmd := exec.Command(mbsync, "-V", "-c", conf, "-a")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, b)
		}
		return string(b)
	}
	sync()
	files, _ := filepath.Glob(local + "INBOX/cur/*")
	news, _ := filepath.Glob(local + "INBOX/new/*")
	if len(files)+len(news) != 3 {
		t.Fatalf("mbsync pulled %d+%d messages, want 3", len(files), len(news))
	}
	// Near side changes: a new message, and a flag on one pulled.
	os.WriteFile(local+"INBOX/new/1.local.host", []byte("Subject: local\n\nwritten near\n"), 0o600)
	pulled := append(files, news...)
	name := filepath.Base(pulled[0])
	if !strings.Contains(name, ":2,") {
		name += ":2,"
	}
	if err := os.Rename(pulled[0], local+"INBOX/cur/"+name+"F"); err != nil {
		t.Fatal(err)
	}
	sync()
	// And the third run has nothing to copy either way: the server's
	// folder (count, next UID, highest MODSEQ) and the near side's files
	// stay as they were.
	c := e.loggedIn()
	status := func() string {
		return strings.Join(c.cmd("st", "STATUS INBOX (MESSAGES UIDNEXT HIGHESTMODSEQ)", "OK"), "")
	}
	near := func() string {
		names, _ := filepath.Glob(local + "*/*/*")
		return strings.Join(names, "\n")
	}
	beforeFar, beforeNear := status(), near()
	out := sync()
	if afterFar, afterNear := status(), near(); afterFar != beforeFar || afterNear != beforeNear {
		t.Fatalf("the third mbsync run changed something:\nfar %s -> %s\nnear:\n%s\n->\n%s\n%s", beforeFar, afterFar, beforeNear, afterNear, out)
	}
	c.cmd("m1", "SELECT INBOX", "OK")
	if r := c.cmd("m2", "SEARCH SUBJECT local", "OK"); len(r) != 1 || r[0] != "* SEARCH 4" {
		t.Fatalf("the near side's message did not arrive: %q", r)
	}
	if r := c.cmd("m3", "SEARCH FLAGGED", "OK"); len(r) != 1 || r[0] == "* SEARCH" {
		t.Fatalf("the near side's flag did not arrive: %q", r)
	}
}
