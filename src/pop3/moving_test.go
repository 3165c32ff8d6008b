package pop3

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"correo/src/mailbox"
)

// The mover's side of the contract, as the tests play it: write the
// marker, then wait (bounded) for pop3d's session lock.

func (e *env) freeze(user string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.c.Maildir("st1", user), mailbox.MovingMarker), nil, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// waitLockFree takes and drops correo-pop3.lock as the mover does,
// failing the test if a session still holds it after a few seconds.
func (e *env) waitLockFree(user string) {
	e.t.Helper()
	f, err := os.OpenFile(filepath.Join(e.c.Maildir("st1", user), LockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			unix.Flock(int(f.Fd()), unix.LOCK_UN)
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the session lock is still held: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// files lists a user's messages on disk (new/ and cur/).
func (e *env) files(user string) string {
	e.t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(e.c.Maildir("st1", user), sub))
		if err != nil {
			e.t.Fatal(err)
		}
		for _, en := range ents {
			out = append(out, sub+"/"+en.Name())
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestMovingMailboxRefusesLogin(t *testing.T) {
	e := newEnv(t)
	e.deliver("ana", "Subject: x\n\nhi\n")
	before := e.files("ana")
	e.freeze("ana")
	for _, login := range []func(c *client){
		func(c *client) { c.cmd("USER ana", "+OK"); c.cmd("PASS "+password, replyMovingLogin) },
		func(c *client) { c.cmd("AUTH PLAIN "+EncodePlain("ana", password), replyMovingLogin) },
	} {
		c := e.proxied()
		login(c)
		// The refused login holds nothing: the mover is not kept waiting.
		e.waitLockFree("ana")
		c.cmd("QUIT", "+OK")
	}
	// Not even new/ was moved to cur/.
	if after := e.files("ana"); after != before {
		t.Fatalf("a refused login changed the Maildir:\n%s\n%s", before, after)
	}
}

func TestMovingMailboxEndsSessions(t *testing.T) {
	cases := []struct {
		name string
		// then runs with the marker written; it ends the client's side.
		then func(t *testing.T, c *client)
	}{
		{"idle after DELE", func(t *testing.T, c *client) {
			// No command: the server closes the session by itself.
			c.expect(replyMovedEnd)
		}},
		{"pipelined DELE and QUIT", func(t *testing.T, c *client) {
			// Either the watch ends the session first, or DELE is
			// answered and QUIT finds the marker itself; never UPDATE.
			c.c.Write([]byte("DELE 2\r\nQUIT\r\n"))
			l := c.line()
			if l == "+OK Marked to be deleted." {
				l = c.line()
			}
			if l != replyMovedEnd && l != replyMovingQuit {
				t.Fatalf("pipelined DELE and QUIT of a frozen mailbox: %q", l)
			}
		}},
		{"QUIT racing with the watch", func(t *testing.T, c *client) {
			c.c.Write([]byte("QUIT\r\n"))
			if l := c.line(); l != replyMovedEnd && l != replyMovingQuit {
				t.Fatalf("QUIT of a frozen mailbox: %q", l)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.deliver("ana", "Subject: 1\n\none\n", "Subject: 2\n\ntwo\n")
			c := e.proxied()
			c.login("ana")
			c.cmd("DELE 1", "+OK")
			c.cmd("RETR 2", "+OK")
			c.multi()
			before := e.files("ana") // after login: both in cur/
			e.freeze("ana")
			start := time.Now()
			tc.then(t, c)
			if !c.closed() {
				t.Fatal("the session stays open after the marker appeared")
			}
			e.waitLockFree("ana")
			t.Logf("the session lock was free %v after the marker", time.Since(start))
			if after := e.files("ana"); after != before {
				t.Fatalf("messages changed after the marker:\n%s\n%s", before, after)
			}
		})
	}
}

// QUIT finding the marker before the watch does: the poll is made too
// slow to win, so the answer is QUIT's own.
func TestQuitOfMovingMailboxDeletesNothing(t *testing.T) {
	defer func(d time.Duration) { movingPollInterval = d }(movingPollInterval)
	movingPollInterval = time.Hour
	e := newEnv(t)
	e.deliver("ana", "Subject: 1\n\none\n", "Subject: 2\n\ntwo\n")
	c := e.proxied()
	c.login("ana")
	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 2", "+OK")
	before := e.files("ana")
	e.freeze("ana")
	c.cmd("QUIT", replyMovingQuit)
	if !c.closed() {
		t.Fatal("the session stays open after QUIT")
	}
	e.waitLockFree("ana")
	if after := e.files("ana"); after != before {
		t.Fatalf("QUIT deleted messages of a frozen mailbox:\n%s\n%s", before, after)
	}
	// Once the move is called off, the next session deletes as usual.
	os.Remove(filepath.Join(e.c.Maildir("st1", "ana"), mailbox.MovingMarker))
	c = e.proxied()
	c.login("ana")
	c.cmd("DELE 1", "+OK")
	c.cmd("QUIT", "+OK Bye; 1 messages deleted.")
}
