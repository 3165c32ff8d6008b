package imap

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// number pulls the first group of re out of lines.
func number(t *testing.T, lines []string, re string) string {
	t.Helper()
	r := regexp.MustCompile(re)
	for _, l := range lines {
		if m := r.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no %s in %q", re, lines)
	return ""
}

func without(lines []string, re string) []string {
	r := regexp.MustCompile(re)
	var out []string
	for _, l := range lines {
		if !r.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// TestQRESYNC: a client that was away learns, in its SELECT, exactly
// which messages vanished and which changed flags since its MODSEQ.
func TestQRESYNC(t *testing.T) {
	e := newEnv(t)
	e.deliver("ana", msg("m1", "a"), msg("m2", "b"), msg("m3", "c"), msg("m4", "d"), msg("m5", "e"))
	a := e.loggedIn()
	if r := a.cmd("q0", "ENABLE QRESYNC", "OK"); !has(r, `^\* ENABLED QRESYNC$`) {
		t.Fatalf("ENABLE QRESYNC: %q", r)
	}
	sel := a.cmd("q1", "SELECT INBOX", "OK")
	validity := number(t, sel, `UIDVALIDITY (\d+)`)
	before := number(t, sel, `HIGHESTMODSEQ (\d+)`)

	// Another session changes the folder while a is selected: a hears
	// VANISHED, not EXPUNGE, and its FETCHes carry the UID and MODSEQ.
	b := e.loggedIn()
	b.cmd("b1", "SELECT INBOX", "OK")
	b.cmd("b2", `UID STORE 2 +FLAGS (\Flagged)`, "OK")
	b.cmd("b3", "UID EXPUNGE 4", "OK") // no \Deleted: nothing goes
	b.cmd("b4", `UID STORE 4 +FLAGS.SILENT (\Deleted)`, "OK")
	b.cmd("b5", "UID EXPUNGE 4", "OK")
	n := a.cmd("q2", "NOOP", "OK")
	if !has(n, `^\* VANISHED 4$`) || has(n, `EXPUNGE`) {
		t.Errorf("unsolicited expunge under QRESYNC: %q", n)
	}
	if !has(n, `^\* 2 FETCH \(UID 2 FLAGS \(\\Flagged \\Recent\) MODSEQ \(\d+\)\)$`) {
		t.Errorf("unsolicited flag change under QRESYNC: %q", n)
	}
	// a's own EXPUNGE answers with VANISHED too.
	a.cmd("q3", `STORE 4 +FLAGS.SILENT (\Deleted)`, "OK") // seq 4 is UID 5 now
	if x := a.cmd("q4", "EXPUNGE", "OK"); len(x) != 1 || x[0] != "* VANISHED 5" {
		t.Errorf("EXPUNGE under QRESYNC: %q", x)
	}
	a.cmd("q5", "LOGOUT", "OK")

	// The returning client.
	c := e.loggedIn()
	c.cmd("c0", "SELECT INBOX (QRESYNC (1 1))", "BAD") // not enabled yet
	c.cmd("c1", "ENABLE QRESYNC", "OK")
	v, _ := strconv.ParseUint(validity, 10, 32)
	other := strconv.FormatUint(v%4294967295+1, 10)
	cases := []struct {
		name, param string
		want        []string // regexps, in this order, after SELECT's own lines
	}{
		{"all", "(QRESYNC (" + validity + " " + before + "))",
			[]string{`^\* VANISHED \(EARLIER\) 4:5$`, `^\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)$`}},
		{"known UIDs limit both", "(QRESYNC (" + validity + " " + before + " 1:3))",
			[]string{`^\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)$`}},
		{"known UIDs with a vanished one", "(QRESYNC (" + validity + " " + before + " 3:5 (1:3 3:5)))",
			[]string{`^\* VANISHED \(EARLIER\) 4:5$`}},
		{"known UIDs beyond UIDNEXT and *", "(QRESYNC (" + validity + " " + before + " 4,100:*))",
			[]string{`^\* VANISHED \(EARLIER\) 4:5$`}},
		{"other UIDVALIDITY: a plain SELECT", "(QRESYNC (" + other + " " + before + "))", nil},
		{"nothing changed", "(QRESYNC (" + validity + " 999999))", nil},
	}
	for i, tc := range cases {
		tag := "s" + string(rune('a'+i))
		sel := c.cmd(tag, "SELECT INBOX "+tc.param, "OK [READ-WRITE]")
		var extra []string
		for _, l := range sel {
			if strings.HasPrefix(l, "* VANISHED") || strings.Contains(l, " FETCH ") {
				extra = append(extra, l)
			}
		}
		if len(extra) != len(tc.want) {
			t.Errorf("%s: resync lines %q, want %d", tc.name, extra, len(tc.want))
			continue
		}
		for j, re := range tc.want {
			if !regexp.MustCompile(re).MatchString(extra[j]) {
				t.Errorf("%s: line %q does not match %s", tc.name, extra[j], re)
			}
		}
	}
	// UID FETCH's VANISHED modifier, limited to the UIDs asked about.
	f := c.cmd("f1", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE "+before+" VANISHED)", "OK")
	if !has(f, `^\* VANISHED \(EARLIER\) 4:5$`) || !has(f, `UID 2 FLAGS \(\\Flagged\) MODSEQ`) || has(f, `UID [13] `) {
		t.Errorf("UID FETCH VANISHED: %q", f)
	}
	f = c.cmd("f2", "UID FETCH 1:3 (FLAGS) (CHANGEDSINCE "+before+" VANISHED)", "OK")
	if has(f, `VANISHED`) {
		t.Errorf("UID FETCH 1:3 VANISHED reports UIDs outside the set: %q", f)
	}
	// Malformed parameters are BAD and leave the session usable (up to
	// the limit of bad commands, 8 here).
	for i, bad := range []string{"(QRESYNC)", "(QRESYNC (0 1))", "(QRESYNC (1 0))", "(QRESYNC (1 1 0:3))",
		"(QRESYNC (1 1 1:3 (1:3)))", "(QRESYNC (1 1) QRESYNC (1 1))", "(FOO)", "()", "QRESYNC"} {
		if i%4 == 0 {
			c = e.loggedIn()
			c.cmd("e", "ENABLE QRESYNC", "OK")
		}
		c.cmd("x", "SELECT INBOX "+bad, "BAD")
		c.cmd("y", "NOOP", "OK")
	}

	// Without QRESYNC, VANISHED is refused and EXPUNGE stays EXPUNGE.
	d := e.loggedIn()
	d.cmd("d1", "SELECT INBOX", "OK")
	d.cmd("d2", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)", "BAD")
	d.cmd("d3", `STORE 1 +FLAGS.SILENT (\Deleted)`, "OK")
	if x := without(d.cmd("d4", "EXPUNGE", "OK"), `FETCH`); len(x) != 1 || x[0] != "* 1 EXPUNGE" {
		t.Errorf("EXPUNGE without QRESYNC: %q", x)
	}
}

// TestQuota: the directory's quota and the Maildir's usage, over IMAP,
// and APPEND and COPY refused when they would exceed it.
func TestQuota(t *testing.T) {
	e := newEnv(t)
	e.deliver("rosa", msg("big", strings.Repeat("x", 3000)))
	c := e.proxied()
	c.cmd("l1", "LOGIN rosa "+password, "OK")
	if r := c.cmd("c", "CAPABILITY", "OK"); !has(r, ` QUOTA `) || !has(r, `QUOTA=RES-STORAGE`) {
		t.Errorf("CAPABILITY lacks QUOTA: %q", r)
	}
	r := c.cmd("q1", "GETQUOTAROOT INBOX", "OK")
	if !has(r, `^\* QUOTAROOT INBOX ""$`) || !has(r, `^\* QUOTA "" \(STORAGE 4 8\)$`) {
		t.Errorf("GETQUOTAROOT: %q", r)
	}
	if r := c.cmd("q2", `GETQUOTA ""`, "OK"); len(r) != 1 || r[0] != `* QUOTA "" (STORAGE 4 8)` {
		t.Errorf("GETQUOTA: %q", r)
	}
	c.cmd("q3", `GETQUOTA "other"`, "NO [NONEXISTENT]")
	c.cmd("q4", "GETQUOTAROOT Nowhere", "NO")
	c.cmd("q5", `SETQUOTA "" (STORAGE 100000)`, "NO [NOPERM]")
	// A copy into Sent fits (about 6 KB of 8); a second does not.
	c.cmd("s1", "SELECT INBOX", "OK")
	c.cmd("s2", "COPY 1 Sent", "OK")
	c.cmd("s3", "COPY 1 Sent", "NO [OVERQUOTA]")
	c.cmd("s4", "MOVE 1 Trash", "OK") // a move adds nothing
	c.send("s5 APPEND INBOX {3000+}\r\n" + strings.Repeat("y", 3000))
	c.expect("s5 NO [OVERQUOTA]")
	if r := c.cmd("s6", "STATUS Sent (MESSAGES DELETED-STORAGE)", "OK"); !has(r, `MESSAGES 1 DELETED-STORAGE 0\)`) {
		t.Errorf("STATUS DELETED-STORAGE: %q", r)
	}
	c.cmd("s7", "SELECT Sent", "OK")
	c.cmd("s8", `STORE 1 +FLAGS (\Deleted)`, "OK")
	if r := c.cmd("s9", "STATUS Sent (DELETED-STORAGE)", "OK"); !has(r, `DELETED-STORAGE 4\)`) {
		t.Errorf("STATUS DELETED-STORAGE of a \\Deleted message: %q", r)
	}
	c.cmd("s10", "EXPUNGE", "OK")
	// Room again: the expunged copy no longer counts.
	c.cmd("s11", "APPEND INBOX {5+}\r\nhello", "OK [APPENDUID")

	// A user without quota has a mailbox without a quota root.
	a := e.loggedIn()
	if r := a.cmd("a1", "GETQUOTAROOT INBOX", "OK"); len(r) != 1 || r[0] != "* QUOTAROOT INBOX" {
		t.Errorf("GETQUOTAROOT without quota: %q", r)
	}
	a.cmd("a2", `GETQUOTA ""`, "NO [NONEXISTENT]")
}
