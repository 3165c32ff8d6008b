package lmtpd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"correo/internal/clustertest"
	"correo/src/dedup"
	"correo/src/directory"
	"correo/src/keyfile"
)

// TestDeliveryKey: a repeated delivery key is answered 250, as the first
// delivery was, and stores nothing; a recipient new to the key is stored;
// the key line never reaches a mailbox; a line with a wrong MAC is
// ordinary content.
func TestDeliveryKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, clustertest.Spec{})
	e.users(directory.User{Name: "juan", Storage: "st1"}, directory.User{Name: "ana", Storage: "st1"},
		directory.User{Name: "bob", Storage: "st1"})
	keys, _, err := dedup.Open(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	e.keys = keys
	_, addr, sock := e.serve("st1", Limits{})
	msg := dedup.Line(e.c.Ring, "0190f2c3a4b5c0000012.abcdefgh12345678") +
		"X-Correo-Trace: abcdefgh12345678\r\n" + strings.ReplaceAll(body, "\n", "\r\n")

	send := func(network, addr, m string, rcpts ...string) []string {
		c := dialLMTP(t, network, addr)
		c.lhlo()
		c.Line("MAIL FROM:<a@example.org>")
		c.Expect(250)
		for _, r := range rcpts {
			c.Line("RCPT TO:<%s>", r)
			c.Expect(250)
		}
		return c.data(m, len(rcpts))
	}
	count := func(user string) int { return len(files(t, e.c.Maildir("st1", user), "new")) }

	first := send("tcp", addr, msg, "juan@correo.test", "ana@correo.test")
	for i, u := range []string{"juan", "ana"} {
		if !strings.HasPrefix(first[i], "250 2.0.0 <"+u+"@correo.test> delivered to "+u+" (abcdefgh12345678)") {
			t.Errorf("first delivery: %q", first[i])
		}
	}
	again := send("unix", sock, msg, "juan@correo.test", "ana@correo.test", "bob@correo.test")
	for i, u := range []string{"juan", "ana", "bob"} {
		if want := "250 2.0.0 <" + u + "@correo.test> delivered to " + u + " (abcdefgh12345678)"; !strings.HasPrefix(again[i], want) {
			t.Errorf("repeat: %q, want %q", again[i], want)
		}
	}
	for _, u := range []string{"juan", "ana", "bob"} {
		if n := count(u); n != 1 {
			t.Errorf("%s holds %d messages, want 1", u, n)
		}
	}
	stored, _ := readOnly(t, e.c.Maildir("st1", "bob"))
	if strings.Contains(stored, dedup.Header) || !strings.HasPrefix(stored, "Return-Path: <a@example.org>\n") {
		t.Errorf("stored message keeps the key line or lost its head:\n%s", stored)
	}
	if !strings.Contains(e.logs.String(), "repeat=true") {
		t.Error("the repeat is not logged as one")
	}

	// Sealed with a key outside the ring: not honoured, kept as content.
	other := &keyfile.Ring{Keys: []keyfile.Key{{ID: e.c.Ring.Current().ID, Secret: [32]byte{1}}}}
	forged := dedup.Line(other, "0190f2c3a4b5c0000012.abcdefgh12345678") + "Subject: forged\r\n\r\nx\r\n"
	for range 2 {
		if r := send("tcp", addr, forged, "juan@correo.test"); !strings.HasPrefix(r[0], "250 ") {
			t.Fatalf("forged key: %q", r[0])
		}
	}
	if n := count("juan"); n != 3 {
		t.Errorf("juan holds %d messages after two with a forged key, want 3", n)
	}
	var kept int
	for _, n := range files(t, e.c.Maildir("st1", "juan"), "new") {
		b, _ := os.ReadFile(filepath.Join(e.c.Maildir("st1", "juan"), "new", n))
		if strings.Contains(string(b), "Subject: forged") && strings.Contains(string(b), dedup.Header) {
			kept++
		}
	}
	if kept != 2 {
		t.Errorf("%d forged messages stored as sent, want 2", kept)
	}

	// A crash between the Maildir write and the delivered record leaves
	// an intent: the retry finds the message in the mailbox by its trace
	// (stored here through the forged-key path, which keeps the trace)
	// and answers without a second copy.
	const key2 = "0190f2c3a4b5c0000099.zyxwvuts98765432"
	keys.Intend([]dedup.Key{dedup.RecipientKey(key2, "ana@correo.test")})
	plain := "X-Correo-Trace: zyxwvuts98765432\r\nSubject: interrupted\r\n\r\nx\r\n"
	if r := send("tcp", addr, plain, "ana@correo.test"); !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("plain delivery: %q", r[0])
	}
	if r := send("tcp", addr, dedup.Line(e.c.Ring, key2)+plain, "ana@correo.test"); !strings.HasPrefix(r[0], "250 2.0.0 <ana@correo.test> delivered to ana (zyxwvuts98765432)") {
		t.Fatalf("retry after an interrupted attempt: %q", r[0])
	}
	if n := count("ana"); n != 2 {
		t.Errorf("ana holds %d messages, want 2 (the first and the interrupted one, once)", n)
	}
	if st, _, _ := keys.Claim(dedup.RecipientKey(key2, "ana@correo.test")); st != dedup.Delivered {
		t.Errorf("the confirmed key is %v, want recorded as delivered", st)
	}
	// An intent whose message never arrived: delivered normally.
	const key3 = "0190f2c3a4b5c0000098.qqqqqqqq98765432"
	keys.Intend([]dedup.Key{dedup.RecipientKey(key3, "ana@correo.test")})
	if r := send("tcp", addr, dedup.Line(e.c.Ring, key3)+"X-Correo-Trace: qqqqqqqq98765432\r\n\r\ny\r\n", "ana@correo.test"); !strings.HasPrefix(r[0], "250 ") {
		t.Fatalf("%q", r[0])
	}
	if n := count("ana"); n != 3 {
		t.Errorf("ana holds %d messages, want 3: an intent without its message must not stop a delivery", n)
	}
}
