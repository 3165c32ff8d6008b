package imap

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"correo/src/mailbox"
)

const byeMoved = "* BYE [UNAVAILABLE] " + textMovedBye

// freeze writes the marker as the mover does.
func (e *env) freeze(user string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.c.Maildir("st1", user), mailbox.MovingMarker), nil, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// snapshot is every name in a user's Maildir with its content's hash,
// but for the marker: it may be taken before the freeze.
func (e *env) snapshot(user string) string {
	e.t.Helper()
	root := e.c.Maildir("st1", user)
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == mailbox.MovingMarker {
			return nil
		}
		if d.IsDir() {
			lines = append(lines, rel+"/")
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s %x", rel, sha256.Sum256(data)))
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// untilBye reads until the BYE of a moved mailbox, which must come
// before any tagged answer, and then the end of the connection.
func (c *client) untilBye() {
	c.t.Helper()
	for {
		l := c.line()
		if l == byeMoved {
			break
		}
		if !strings.HasPrefix(l, "* ") && l != "+ idling" {
			c.t.Fatalf("got %q before the BYE", l)
		}
	}
	if !c.closed() {
		c.t.Fatal("the session stays open after the BYE")
	}
}

func TestMovingMailboxRefusesLogin(t *testing.T) {
	e := newEnv(t)
	e.deliver("ana", msg("uno", "a"))
	e.freeze("ana")
	before := e.snapshot("ana")
	want := "NO [INUSE] " + textMovingLogin
	c := e.proxied()
	c.cmd("a1", "LOGIN ana "+password, want)
	c.cmd("a2", "AUTHENTICATE PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00ana\x00"+password)), want)
	// Still not logged in.
	c.cmd("a3", "SELECT INBOX", "BAD")
	if after := e.snapshot("ana"); after != before {
		t.Fatalf("a refused login changed the Maildir:\n%s\n---\n%s", before, after)
	}
}

func TestMovingMailboxEndsSessions(t *testing.T) {
	e := newEnv(t)
	e.deliver("ana", msg("uno", "a"), msg("dos", "b"))
	selected := e.loggedIn()
	selected.cmd("s1", "SELECT INBOX", "OK")
	idle := e.loggedIn()
	idle.cmd("i1", "SELECT INBOX", "OK")
	idle.send("i2 IDLE")
	idle.expect("+ idling")
	authOnly := e.loggedIn()
	// A command sent as the marker appears: it is run before the watch
	// sees the marker (and must then fail in the store) or not at all.
	racing := e.loggedIn()
	racing.cmd("r1", "SELECT INBOX", "OK")
	before := e.snapshot("ana")

	e.freeze("ana")
	start := time.Now()
	racing.send(`r2 STORE 1:* +FLAGS (\Deleted)`)
	racing.send("r3 EXPUNGE")
	for name, c := range map[string]*client{"selected": selected, "idle": idle, "authenticated": authOnly, "racing": racing} {
		c.t = t
		t.Run(name, func(t *testing.T) {
			c.t = t
			c.untilBye()
		})
	}
	t.Logf("every session ended %v after the marker", time.Since(start))
	if after := e.snapshot("ana"); after != before {
		t.Fatalf("the frozen Maildir changed:\n%s\n---\n%s", before, after)
	}
}

// Without the watch, the store's ErrMoving itself ends the session: a
// changing command gets the BYE, not a NO.
func TestMovingMailboxStoreErrorEndsSession(t *testing.T) {
	testNoMovingWatch.Store(true)
	t.Cleanup(func() { testNoMovingWatch.Store(false) }) // after the server's Close
	e := newEnv(t)
	e.deliver("ana", msg("uno", "a"))
	cases := []struct{ name, setup, line string }{
		{"STORE", "SELECT INBOX", `STORE 1 +FLAGS (\Seen)`},
		{"COPY", "SELECT INBOX", "COPY 1 Trash"},
		{"EXPUNGE", "SELECT INBOX", "EXPUNGE"},
		{"CLOSE", "SELECT INBOX", "CLOSE"},
		{"SELECT", "NOOP", "SELECT INBOX"},
		{"CREATE", "NOOP", "CREATE Nuevo"},
		{"APPEND", "NOOP", "APPEND INBOX {3+}\r\nhi\n"},
	}
	var clients []*client
	for range cases {
		c := e.loggedIn()
		clients = append(clients, c)
	}
	for i, tc := range cases {
		clients[i].cmd("p1", tc.setup, "OK")
	}
	before := e.snapshot("ana")
	e.freeze("ana")
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := clients[i]
			c.t = t
			c.send("p2 " + tc.line)
			c.untilBye()
		})
	}
	if after := e.snapshot("ana"); after != before {
		t.Fatalf("the frozen Maildir changed:\n%s\n---\n%s", before, after)
	}
}
