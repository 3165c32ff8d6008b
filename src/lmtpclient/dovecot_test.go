package lmtpclient_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/lmtpclient"
)

// TestDovecot: a real third-party LMTP server (Dovecot, which advertises
// PIPELINING and CHUNKING) takes a pipelined transaction for two
// recipients and stores exactly the message sent, with its leading dot
// and its bare LFs made CRLF on the wire and restored by the server; and a
// one-recipient transaction with BDAT.
func TestDovecot(t *testing.T) {
	d := clustertest.StartDovecot(t, clustertest.DovecotConfig{})
	conn, err := net.DialTimeout("tcp", d.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c, err := lmtpclient.New(conn, "mx1.correo.test")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Pipelining() {
		t.Fatal("Dovecot did not advertise PIPELINING")
	}
	body := "Subject: pipelined\n\n.a line with a leading dot\nsecond line\n"
	for round := 0; round < 2; round++ { // the session is reused
		out, err := c.Send("s@example.org", int64(len(body)), []string{"ana@correo.test", "eva@correo.test"}, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range out.Final {
			if f.Code != 250 {
				t.Fatalf("round %d recipient %d: %+v (outcome %+v)", round, i, f, out)
			}
		}
	}
	// One recipient and a message in canonical form: BDAT, since Dovecot
	// offers CHUNKING; the message arrives unchanged.
	if !c.Chunking() {
		t.Fatal("Dovecot did not advertise CHUNKING")
	}
	chunked := "Subject: chunked\r\n\r\n.a leading dot, not stuffed\r\n"
	out, err := c.Send("s@example.org", int64(len(chunked)), []string{"ana@correo.test"}, strings.NewReader(chunked))
	if err != nil || !out.Sent || out.Data.Code != 0 || out.Final[0].Code != 250 {
		t.Fatalf("BDAT transaction: %v %+v", err, out)
	}
	found := false
	for _, e := range testutil.DirNames(t, filepath.Join(d.Maildir("ana"), "new")) {
		data, _ := os.ReadFile(filepath.Join(d.Maildir("ana"), "new", e))
		found = found || strings.HasSuffix(strings.ReplaceAll(string(data), "\r\n", "\n"), strings.ReplaceAll(chunked, "\r\n", "\n"))
	}
	if !found {
		t.Errorf("no copy of the message sent with BDAT in ana's new/")
	}
	for _, u := range []string{"eva"} {
		dir := filepath.Join(d.Maildir(u), "new")
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != 2 {
			t.Fatalf("%s: %d messages (%v), want 2", u, len(ents), err)
		}
		data, _ := os.ReadFile(filepath.Join(dir, ents[0].Name()))
		// Dovecot adds its own trace headers before the message.
		if !strings.HasSuffix(strings.ReplaceAll(string(data), "\r\n", "\n"), body) {
			t.Errorf("%s's copy does not end with the message sent:\n%s", u, data)
		}
	}
}
