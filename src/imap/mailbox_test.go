package imap

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"correo/internal/testutil"
	"correo/src/mailbox"
)

func (e *env) deliver(user string, msgs ...string) {
	e.t.Helper()
	md := mailbox.New(e.c.Maildir("st1", user))
	for _, m := range msgs {
		if _, err := md.Deliver(strings.NewReader(m)); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) loggedIn() *client {
	c := e.proxied()
	c.cmd("l1", "LOGIN ana "+password, "OK")
	return c
}

func msg(subject, body string) string {
	return "From: Juan <juan@correo.test>\nTo: ana@correo.test\nSubject: " + subject + "\nDate: Mon, 02 Nov 2026 10:00:00 +0000\nMessage-ID: <" + subject + "@x>\n\n" + body + "\n"
}

func has(lines []string, re string) bool {
	r := regexp.MustCompile(re)
	for _, l := range lines {
		if r.MatchString(l) {
			return true
		}
	}
	return false
}

func TestSelectFetchStoreExpunge(t *testing.T) {
	e := newEnv(t)
	e.deliver("ana", msg("uno", "first body"), msg("dos", "second body"), msg("tres", "third"))
	c := e.loggedIn()
	list := c.cmd("a1", `LIST "" "*"`, "OK")
	for _, want := range []string{`^\* LIST \(\\HasNoChildren\) "/" INBOX$`, `\\Sent\) "/" Sent$`, `\\Trash\) "/" Trash$`, `\\Junk\) "/" Junk$`, `\\Drafts\) "/" Drafts$`} {
		if !has(list, want) {
			t.Errorf("LIST lacks %s: %q", want, list)
		}
	}
	sel := c.cmd("a2", "SELECT INBOX", "OK [READ-WRITE]")
	for _, want := range []string{`^\* 3 EXISTS$`, `UIDVALIDITY \d+`, `UIDNEXT 4`, `PERMANENTFLAGS \(.*\\Seen.*\\\*\)`} {
		if !has(sel, want) {
			t.Errorf("SELECT lacks %s: %q", want, sel)
		}
	}
	f := c.cmd("a3", "FETCH 1:* (UID FLAGS RFC822.SIZE)", "OK")
	// This session moved the messages out of new/: \Recent to it alone.
	if len(f) != 3 || !has(f, `^\* 1 FETCH \(UID 1 FLAGS \(\\Recent\) RFC822.SIZE \d+\)$`) {
		t.Fatalf("FETCH: %q", f)
	}
	other := e.loggedIn()
	if r := other.cmd("o1", "SELECT INBOX", "OK"); !has(r, `^\* 0 RECENT$`) {
		t.Errorf("a second session's SELECT: %q", r)
	}
	if r := other.cmd("o2", "FETCH 1 FLAGS", "OK"); len(r) != 1 || r[0] != `* 1 FETCH (FLAGS ())` {
		t.Errorf("a second session sees \\Recent: %q", r)
	}
	if r := other.cmd("o3", "SEARCH RECENT", "OK"); len(r) != 1 || r[0] != "* SEARCH" {
		t.Errorf("SEARCH RECENT in a second session: %q", r)
	}
	if r := c.cmd("a3b", "SEARCH NEW", "OK"); len(r) != 1 || r[0] != "* SEARCH 1 2 3" {
		t.Errorf("SEARCH NEW in the first session: %q", r)
	}
	// A body fetch sets \Seen; PEEK does not.
	f = c.cmd("a4", "FETCH 2 BODY.PEEK[HEADER]", "OK")
	if !has(f, `^\* 2 FETCH \(BODY\[HEADER\] \{\d+\}$`) {
		t.Fatalf("FETCH BODY.PEEK[HEADER]: %q", f)
	}
	f = c.cmd("a5", "UID FETCH 2 (BODY[TEXT])", "OK")
	if !has(f, `FLAGS \(\\Seen \\Recent\)`) || !has(f, `^second body$`) {
		t.Fatalf("UID FETCH BODY[TEXT]: %q", f)
	}
	f = c.cmd("a6", "FETCH 2 (BODY[]<0.4>)", "OK")
	if !has(f, `BODY\[\]<0> \{4\}`) {
		t.Fatalf("partial: %q", f)
	}
	c.cmd("a7", `STORE 1 +FLAGS (\Deleted)`, "OK")
	s := c.cmd("a8", `UID STORE 3 +FLAGS.SILENT (\Flagged)`, "OK")
	if len(s) != 0 {
		t.Fatalf("STORE .SILENT answered %q", s)
	}
	srch := c.cmd("a9", `SEARCH FLAGGED`, "OK")
	if len(srch) != 1 || srch[0] != "* SEARCH 3" {
		t.Fatalf("SEARCH FLAGGED: %q", srch)
	}
	srch = c.cmd("a10", `UID SEARCH RETURN (MIN COUNT) SUBJECT dos`, "OK")
	if len(srch) != 1 || srch[0] != `* ESEARCH (TAG "a10") UID MIN 2 COUNT 1` {
		t.Fatalf("ESEARCH: %q", srch)
	}
	srch = c.cmd("a11", `SEARCH BODY "third"`, "OK")
	if len(srch) != 1 || srch[0] != "* SEARCH 3" {
		t.Fatalf("SEARCH BODY: %q", srch)
	}
	x := c.cmd("a12", "EXPUNGE", "OK")
	if len(x) != 1 || x[0] != "* 1 EXPUNGE" {
		t.Fatalf("EXPUNGE: %q", x)
	}
	// The flag went into the file name; UIDL's key did not change.
	names, _ := filepath.Glob(filepath.Join(e.c.Maildir("st1", "ana"), "cur", "*:2,F*"))
	if len(names) != 1 {
		t.Fatalf("flagged file: %v", names)
	}
	// Sequence numbers beyond the folder are BAD; UIDs beyond it match nothing.
	c.cmd("a13", "FETCH 7 FLAGS", "BAD")
	if r := c.cmd("a14", "UID FETCH 4294967295 FLAGS", "OK"); len(r) != 0 {
		t.Fatalf("UID FETCH of an absent UID: %q", r)
	}
	c.cmd("a15", "FETCH 4294967296 FLAGS", "BAD")
	// A part that does not exist is empty, not an error.
	if r := c.cmd("a16", "FETCH 1 BODY.PEEK[1.2.MIME]", "OK"); !has(r, `BODY\[1\.2\.MIME\] \{0\}`) {
		t.Fatalf("absent part: %q", r)
	}
	env := c.cmd("a16b", "FETCH 1 (ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (Subject)])", "OK")
	if !has(env, `ENVELOPE \("Mon, 02 Nov 2026 10:00:00 \+0000" "dos" \(\("Juan" NIL "juan" "correo.test"\)\)`) ||
		!has(env, `BODYSTRUCTURE \("text" "plain" \("charset" "us-ascii"\) NIL NIL "7bit" \d+ 1 `) ||
		!has(env, `BODY\[HEADER.FIELDS \(Subject\)\] \{\d+\}`) {
		t.Fatalf("ENVELOPE/BODYSTRUCTURE: %q", env)
	}
	c.cmd("a17", "CLOSE", "OK")
	c.cmd("a18", "FETCH 1 FLAGS", "BAD")
}

func TestFoldersCopyMoveAppend(t *testing.T) {
	e := newEnv(t)
	e.deliver("ana", msg("uno", "a"), msg("dos", "b"))
	c := e.loggedIn()
	c.cmd("b1", "CREATE Work/2026", "OK")
	c.cmd("b2", "CREATE Work/2026", "NO [ALREADYEXISTS]")
	c.cmd("b3", `CREATE "../etc"`, "NO")
	c.cmd("b4", `CREATE "a/../b"`, "NO")
	c.cmd("b5", "DELETE INBOX", "NO [CANNOT]")
	c.cmd("b6", "DELETE Work", "NO [INUSE]")
	c.cmd("b7", "SELECT INBOX", "OK")
	r := c.cmd("b8", "UID COPY 1:2 Work/2026", "OK [COPYUID ")
	_ = r
	r = c.cmd("b9", "UID MOVE 1 Trash", "OK")
	if !has(r, `^\* OK \[COPYUID \d+ 1 1\]`) || !has(r, `^\* 1 EXPUNGE$`) {
		t.Fatalf("MOVE: %q", r)
	}
	c.cmd("b10", "COPY 1 Nowhere", "NO [TRYCREATE]")
	st := c.cmd("b11", "STATUS Work/2026 (MESSAGES UIDNEXT UNSEEN SIZE)", "OK")
	if len(st) != 1 || !strings.HasPrefix(st[0], "* STATUS Work/2026 (MESSAGES 2 UIDNEXT 3 UNSEEN 2 SIZE ") {
		t.Fatalf("STATUS: %q", st)
	}
	c.send("b12 APPEND Drafts (\\Draft) {" + fmt.Sprint(len("Subject: d\r\n\r\nhi\r\n")) + "}")
	c.expect("+")
	c.send("Subject: d\r\n\r\nhi\r\n")
	c.expect("b12 OK [APPENDUID ")
	c.cmd("b13", "APPEND Nowhere {2+}\r\nhi", "NO [TRYCREATE]")
	c.cmd("b14", "RENAME Work Job", "OK")
	l := c.cmd("b15", `LIST "" "Job/%" RETURN (STATUS (MESSAGES))`, "OK")
	if !has(l, `^\* LIST \(.*\) "/" Job/2026$`) || !has(l, `^\* STATUS Job/2026 \(MESSAGES 2\)$`) {
		t.Fatalf("LIST-STATUS: %q", l)
	}
	c.cmd("b16", "EXAMINE Job/2026", "OK [READ-ONLY]")
	c.cmd("b17", `STORE 1 +FLAGS (\Seen)`, "NO [READ-ONLY]")
	// EXAMINE's FETCH of a body does not set \Seen.
	f := c.cmd("b18", "FETCH 1 (FLAGS BODY[])", "OK")
	if has(f, `\\Seen`) {
		t.Fatalf("EXAMINE set \\Seen: %q", f)
	}
}

// A delivery while a client idles is announced; POP and IMAP agree on
// deletions both ways.
func TestIdleAndPOPAgreement(t *testing.T) {
	e := newEnv(t)
	e.deliver("ana", msg("uno", "a"), msg("dos", "b"))
	c := e.loggedIn()
	c.cmd("c1", "SELECT INBOX", "OK")
	c.send("c2 IDLE")
	c.expect("+ idling")
	e.deliver("ana", msg("tres", "c"))
	c.expect("* 3 EXISTS")
	c.expect("* 3 RECENT") // IMAP4rev1: all three are new to this session
	c.send("DONE")
	c.expect("c2 OK")
	// pop3d deletes a message (DELE at QUIT unlinks its file): IMAP
	// reports it expunged at the next NOOP.
	md := mailbox.New(e.c.Maildir("st1", "ana"))
	list, _ := md.List()
	if err := md.Delete(list[0]); err != nil {
		t.Fatal(err)
	}
	n := c.cmd("c3", "NOOP", "OK")
	if !has(n, `^\* 1 EXPUNGE$`) || !has(n, `^\* 2 EXISTS$`) {
		t.Fatalf("NOOP after a POP delete: %q", n)
	}
	// An IMAP expunge is gone for POP too.
	c.cmd("c4", `STORE 1 +FLAGS (\Deleted)`, "OK")
	c.cmd("c5", "EXPUNGE", "OK")
	if list, _ = md.List(); len(list) != 1 {
		t.Fatalf("POP still lists %d messages after an IMAP expunge", len(list))
	}
}

// Python's imaplib, a real client: STARTTLS, login, select, fetch, flags,
// search, copy, expunge, logout.
func TestPythonImaplib(t *testing.T) {
	testutil.NeedCommand(t, "python3")
	e := newEnv(t)
	e.deliver("ana", msg("hola", "cuerpo del mensaje"), msg("chau", "otro"))
	host, port, _ := strings.Cut(e.addr, ":")
	script := `
import imaplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
m.starttls(ssl_context=ctx)
m.login("ana", sys.argv[3])
typ, data = m.select("INBOX")
assert typ == "OK" and data[0] == b"2", (typ, data)
typ, data = m.uid("SEARCH", None, "SUBJECT", "hola")
assert data[0] == b"1", data
typ, data = m.fetch("1", "(RFC822)")
assert b"cuerpo del mensaje" in data[0][1], data
typ, data = m.fetch("1", "(FLAGS)")
assert b"\\Seen" in data[0], data
m.store("2", "+FLAGS", "\\Flagged")
typ, data = m.uid("COPY", "2", "Junk")
assert typ == "OK", data
typ, data = m.status("Junk", "(MESSAGES)")
assert b"MESSAGES 1" in data[0], data
m.store("1", "+FLAGS", "\\Deleted")
m.expunge()
typ, data = m.search(None, "ALL")
assert data[0] == b"1", data
m.logout()
print("imaplib ok")
`
	out, err := exec.Command("python3", "-c", script, host, port, password).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "imaplib ok") {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
}

// SEARCH compares decoded header text: an encoded-word subject is found
// by its UTF-8 text; BODY looks inside the decoded parts.
func TestSearchDecodesHeadersAndParts(t *testing.T) {
	e := newEnv(t)
	e.deliver("ana",
		"From: a@b\nSubject: =?UTF-8?Q?Feliz_A=C3=B1o?=\n\nhola\n",
		"From: a@b\nSubject: otro\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nY2FmZXRlcsOtYQo=\n")
	c := e.loggedIn()
	c.cmd("s1", "SELECT INBOX", "OK")
	if r := c.cmd("s2", "SEARCH CHARSET UTF-8 SUBJECT {4+}\r\nAño", "OK"); len(r) != 1 || r[0] != "* SEARCH 1" {
		t.Fatalf("SEARCH SUBJECT Año: %q", r)
	}
	if r := c.cmd("s3", "SEARCH CHARSET UTF-8 BODY {10+}\r\ncafetería", "OK"); len(r) != 1 || r[0] != "* SEARCH 2" {
		t.Fatalf("SEARCH BODY in a base64 part: %q", r)
	}
	c.cmd("s4", "SEARCH CHARSET KOI8-R ALL", "NO [BADCHARSET")
}
