package clustertest

import (
	"encoding/base64"
	"encoding/json"
	"os/exec"
	"testing"
)

// TestBody is a body with what tends to break on the way: a line that is
// a lone dot and lines starting with dots (dot-stuffing), an mbox "From "
// line (MDAs that quote it), 8-bit UTF-8, trailing blanks, an empty line
// and a long line.
const TestBody = "Hola,\n" +
	".\n" +
	"..two dots\n" +
	"From here on it is the body.\n" +
	"ñandú, acción, über — 8-bit text\n" +
	"trailing blanks   \n" +
	"\n" +
	"a long line: " + longLine + "\n" +
	"last line\n"

const longLine = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz" +
	"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz" +
	"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz"

// TestMessage is TestBody with headers, ready for swaks --data.
const TestMessage = "From: Sender <sender@example.org>\n" +
	"To: ana@correo.test\n" +
	"Subject: interop test\n" +
	"Message-ID: <interop-1@example.org>\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"Content-Transfer-Encoding: 8bit\n" +
	"\n" + TestBody

// MaildirMessage is one message as Python's mailbox.Maildir reads it.
type MaildirMessage struct {
	Key     string
	Subdir  string // "new" or "cur"
	Headers string // the header section (LF line ends, as stored)
	Body    string // everything after the first empty line
}

// pyReadMaildir prints every message of a Maildir as read by the
// standard library's mailbox module: the reference reader, independent of
// correo's own code.
const pyReadMaildir = `
import base64, json, mailbox, sys
md = mailbox.Maildir(sys.argv[1], factory=None, create=False)
out = []
for key in sorted(md.keys()):
    raw = md.get_bytes(key)
    head, sep, body = raw.partition(b"\n\n")
    msg = md.get_message(key)
    out.append({"key": key, "subdir": msg.get_subdir(),
                "headers": base64.b64encode(head).decode(), "body": base64.b64encode(body).decode()})
json.dump(out, sys.stdout)
`

// ReadMaildir lists a Maildir's messages with Python's mailbox.Maildir.
func ReadMaildir(t testing.TB, python, dir string) []MaildirMessage {
	t.Helper()
	out, err := exec.Command(python, "-c", pyReadMaildir, dir).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("python mailbox.Maildir on %s: %v\n%s", dir, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var raw []struct{ Key, Subdir, Headers, Body string }
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("python output: %v\n%s", err, out)
	}
	var msgs []MaildirMessage
	for _, r := range raw {
		h, _ := base64.StdEncoding.DecodeString(r.Headers)
		b, _ := base64.StdEncoding.DecodeString(r.Body)
		msgs = append(msgs, MaildirMessage{Key: r.Key, Subdir: r.Subdir, Headers: string(h), Body: string(b)})
	}
	return msgs
}
