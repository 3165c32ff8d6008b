package mailmove

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/mailbox"
	"correo/src/mailstore"
	"correo/src/mailtree"
	"correo/src/pop3"
	"correo/src/pwproto"
)

// fetchResult is what a raw fetch got: the file headers in order and
// how many body bytes came.
type fetchResult struct {
	headers []fileHeader
	data    int
}

func rawFetch(c *Client, u string, files []mailtree.Entry) (fetchResult, error) {
	var r fetchResult
	_, err := c.call(Request{Op: opFetch, User: u, Files: files}, c.Timeout, func(kind uint8, p []byte) error {
		switch kind {
		case kindFile:
			var h fileHeader
			if err := decode(p, &h, "file header"); err != nil {
				return err
			}
			r.headers = append(r.headers, h)
		case kindData:
			r.data += len(p)
		case kindFileEnd:
		default:
			return fmt.Errorf("unexpected frame kind %d", kind)
		}
		return nil
	})
	return r, err
}

func wantRefusal(t *testing.T, what string, err error, text string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: accepted, want a refusal containing %q", what, text)
		return
	}
	if !IsRemote(err) || !strings.Contains(err.Error(), text) {
		t.Errorf("%s: %v; want a refusal containing %q", what, err, text)
	}
}

// TestBadUserNames: a name that is not already a normalised mailbox name
// is refused by every operation before it touches the disk.
func TestBadUserNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	fillMaildir(t, e.maildir("st1", user))
	before := listAll(t, e.c.Dir)
	src, dst := e.dial("st1"), e.dial("st2")
	for _, name := range []string{"", "..", "../etc", "a/../../b", "a/b", "/etc", "a\x00b", "Juan", "juan ", ".juan", "a..b", "-rf", strings.Repeat("a", 65)} {
		for _, req := range []struct {
			c *Client
			r Request
		}{
			{src, Request{Op: opManifest}},
			{src, Request{Op: opFetch, Files: []mailtree.Entry{{Path: "correo-uidlist"}}}},
			{src, Request{Op: opFreeze, To: "st2"}},
			{src, Request{Op: opThaw}},
			{src, Request{Op: opRetire, To: "st2"}},
			{src, Request{Op: opStatus}},
			{dst, Request{Op: opPull, From: "st1"}},
			{dst, Request{Op: opVerify, From: "st1"}},
			{dst, Request{Op: opCommit}},
			{dst, Request{Op: opAbort}},
		} {
			req.r.User = name
			_, err := req.c.call(req.r, req.c.Timeout, func(kind uint8, p []byte) error {
				return fmt.Errorf("a data frame of kind %d for a refused name", kind)
			})
			wantRefusal(t, fmt.Sprintf("%s of %q", req.r.Op, name), err, "not a valid mailbox name")
		}
	}
	if after := listAll(t, e.c.Dir); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("refused requests changed files:\nbefore %v\nafter  %v", before, after)
	}
}

func TestUnknownOperation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	c := e.dial("st1")
	_, err := c.call(Request{Op: "rm-rf", User: user}, c.Timeout, nil)
	wantRefusal(t, "unknown op", err, `unknown operation "rm-rf"`)
	// A refusal leaves the connection usable, and frees the user.
	if err := c.Freeze(user, "st2"); err != nil {
		t.Fatalf("freeze after a refused request: %v", err)
	}
}

// TestBadPeers: a pull must come from another host of the profile.
func TestBadPeers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	fillMaildir(t, e.maildir("st2", user))
	dst := e.dial("st2")
	_, err := dst.Pull(user, "st2", 0, nil)
	wantRefusal(t, "pull from itself", err, "is this host")
	_, err = dst.Pull(user, "st9", 0, nil)
	wantRefusal(t, "pull from an unknown host", err, "st9")
	if exists(e.stage("st2", user)) {
		t.Error("a refused pull made a stage")
	}
}

func TestFetchRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	fillMaildir(t, e.maildir("st1", user))
	c := e.dial("st1")
	many := make([]mailtree.Entry, fetchBatch+1)
	for i := range many {
		many[i] = mailtree.Entry{Path: fmt.Sprintf("cur/%d", i)}
	}
	for _, tc := range []struct {
		name  string
		files []mailtree.Entry
		want  string
	}{
		{"dot-dot", []mailtree.Entry{{Path: "../../../../etc/passwd"}}, `".." component`},
		{"dot-dot inside", []mailtree.Entry{{Path: "cur/../../x"}}, `".." component`},
		{"absolute", []mailtree.Entry{{Path: "/etc/passwd"}}, "absolute"},
		{"empty", []mailtree.Entry{{Path: ""}}, "empty path"},
		{"NUL", []mailtree.Entry{{Path: "cur/a\x00b"}}, "NUL"},
		{"directory", []mailtree.Entry{{Path: "cur", Dir: true}}, "a directory"},
		{"pop3 lock", []mailtree.Entry{{Path: pop3Lock}}, "per-host runtime file"},
		{"mailstore lock", []mailtree.Entry{{Path: ".Sent/" + mailstoreLock}}, "per-host runtime file"},
		{"marker", []mailtree.Entry{{Path: mailbox.MovingMarker}}, "per-host runtime file"},
		{"in tmp", []mailtree.Entry{{Path: "tmp/1700000200.M7P1.st1"}}, "tmp/"},
		{"too many", many, fmt.Sprintf("at most %d", fetchBatch)},
		// A bad entry anywhere refuses the whole request, before
		// anything is sent.
		{"good then bad", []mailtree.Entry{{Path: "correo-uidlist"}, {Path: "../x"}}, `".." component`},
	} {
		r, err := rawFetch(c, user, tc.files)
		wantRefusal(t, tc.name, err, tc.want)
		if len(r.headers) != 0 || r.data != 0 {
			t.Errorf("%s: %d files, %d bytes sent before the refusal", tc.name, len(r.headers), r.data)
		}
	}
	// A directory announced as a file is no file: nothing is read.
	r, err := rawFetch(c, user, []mailtree.Entry{{Path: "cur"}, {Path: "no/such/file"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.headers) != 2 || !r.headers[0].Missing || !r.headers[1].Missing || r.data != 0 {
		t.Errorf("fetch of a directory and a missing file: %+v, %d bytes; want both missing, no data", r.headers, r.data)
	}
	// And the connection still serves a good fetch.
	r, err = rawFetch(c, user, []mailtree.Entry{{Path: "correo-keywords"}})
	if err != nil || len(r.headers) != 1 || r.headers[0].Missing || r.data != len("a $Junk\nb project\n") {
		t.Errorf("good fetch: %+v, %d bytes, %v", r.headers, r.data, err)
	}
}

// TestSymlinks: a symbolic link in a Maildir (to another user's mail, to
// /etc) is neither listed, nor sent, nor recreated on the target.
func TestSymlinks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.dir.add(user, "st1", directory.StateActive)
	src := e.maildir("st1", user)
	fillMaildir(t, src)
	want := snapshot(t, src)
	links := map[string]string{
		"cur/1700000009.M9P1.st1,S=100:2,S": "/etc/passwd",
		".Evil":                             "/etc",
		"new/dir-link":                      "../cur",
	}
	for p, target := range links {
		if err := os.Symlink(target, filepath.Join(src, filepath.FromSlash(p))); err != nil {
			t.Fatal(err)
		}
	}
	c := e.dial("st1")
	m, err := c.manifest(user)
	if err != nil {
		t.Fatal(err)
	}
	if err := mailtree.Verify(want.m, m); err != nil {
		t.Errorf("the manifest lists more than the mailbox: %v", err)
	}
	r, err := rawFetch(c, user, []mailtree.Entry{
		{Path: "cur/1700000009.M9P1.st1,S=100:2,S"}, {Path: ".Evil/passwd"}, {Path: ".Evil/hostname"}, {Path: "new/dir-link/1700000000.M1P1.st1,S=40,W=42:2,FS"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range r.headers {
		if !h.Missing {
			t.Errorf("%s was sent through a symbolic link", h.Entry.Path)
		}
	}
	if r.data != 0 {
		t.Errorf("%d bytes sent through symbolic links", r.data)
	}
	mv := e.mover()
	if _, err := mv.Move(context.Background(), user, "st2"); err != nil {
		t.Fatal(err)
	}
	checkMoved(t, e, mv, want, directory.StateActive)
	for p := range links {
		if exists(filepath.Join(e.maildir("st2", user), filepath.FromSlash(p))) {
			t.Errorf("%s exists on the target", p)
		}
	}
}

// TestHandshake: only holders of the cluster key get anything done; a
// failed handshake costs the server nothing, and it goes on serving.
func TestHandshake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{handshake: 300 * time.Millisecond})
	fillMaildir(t, e.maildir("st1", user))
	before := listAll(t, e.c.Dir)
	addr := e.addr("st1")
	srv := e.server("st1")

	// closed reads from a raw connection until the server hangs up; a
	// server that keeps it open makes the read time out.
	closed := func(t *testing.T, c net.Conn) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server kept the connection open")
		}
	}
	rawDial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	t.Run("wrong key", func(t *testing.T) {
		other, err := keyfile.Create(filepath.Join(t.TempDir(), "other.key"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Dial(context.Background(), addr, other)
		if !errors.Is(err, pwproto.ErrHandshake) {
			t.Fatalf("dial with another key: %v; want a handshake failure", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		c := rawDial(t)
		c.Write([]byte("GET / HTTP/1.0\r\nHost: st1\r\n\r\n"))
		closed(t, c)
	})
	t.Run("hello then garbage", func(t *testing.T) {
		c := rawDial(t)
		hello := make([]byte, 4+16)
		hello[0], hello[1], hello[2], hello[3] = 'C', 'S', pwproto.Version, e.c.Ring.Current().ID
		rand.Read(hello[4:])
		junk := make([]byte, 64)
		rand.Read(junk)
		c.Write(append(hello, junk...))
		closed(t, c)
	})
	t.Run("silent", func(t *testing.T) {
		c := rawDial(t)
		start := time.Now()
		// Others are served meanwhile.
		other, err := Dial(context.Background(), addr, e.c.Ring)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.Status(user); err != nil {
			t.Fatal(err)
		}
		other.Close()
		closed(t, c)
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Errorf("a silent client was dropped after %s, before the handshake timeout", d)
		}
	})
	eventually(t, "the failed connections to end", func() bool { return srv.Sessions() == 0 })
	if st, err := e.dial("st1").Status(user); err != nil || !st.Live {
		t.Fatalf("after the bad clients: %+v, %v", st, err)
	}
	if after := listAll(t, e.c.Dir); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("failed handshakes changed files:\nbefore %v\nafter  %v", before, after)
	}
}

func TestCommit(t *testing.T) {
	t.Parallel()
	msg := func(s string) io.Reader { return strings.NewReader("From: x@example.org\r\n\r\n" + s + "\r\n") }

	t.Run("live Maildir on the target is never overwritten", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOpts{})
		fillMaildir(t, e.maildir("st1", user))
		live := e.maildir("st2", user)
		if _, err := mailbox.New(live).Deliver(msg("mail only st2 has")); err != nil {
			t.Fatal(err)
		}
		want := snapshot(t, live)
		dst := e.dial("st2")
		if _, err := dst.Pull(user, "st1", 0, nil); err != nil {
			t.Fatal(err)
		}
		wantRefusal(t, "commit over a live Maildir", dst.Commit(user), "not moved away")
		sameTree(t, want, live)
		if st, err := dst.Status(user); err != nil || st != (Status{Live: true, Stage: true}) {
			t.Errorf("status after the refusal: %+v, %v; want the Maildir and the stage untouched", st, err)
		}
	})

	t.Run("copy moved away earlier is replaced", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOpts{})
		fillMaildir(t, e.maildir("st1", user))
		want := snapshot(t, e.maildir("st1", user))
		old := e.maildir("st2", user)
		if _, err := mailbox.New(old).Deliver(msg("mail from before the user left st2")); err != nil {
			t.Fatal(err)
		}
		if err := e.dial("st2").Retire(user, "st1"); err != nil {
			t.Fatal(err)
		}
		dst := e.dial("st2")
		if _, err := dst.Pull(user, "st1", 0, nil); err != nil {
			t.Fatal(err)
		}
		if err := dst.Commit(user); err != nil {
			t.Fatal(err)
		}
		sameTree(t, want, old)
		if mk := marker(t, old); mk != "" {
			t.Errorf("the new Maildir carries the old marker %q", mk)
		}
		if exists(e.outRecord("st2", user)) {
			t.Error("the record of the earlier move away is still there: the janitor would delete the live mailbox")
		}
		trash := filepath.Join(e.server("st2").movesDir(), "trash")
		eventually(t, "the trash to empty", func() bool { t, _ := os.ReadDir(trash); return len(t) == 0 })
		// Committing again (a -resume) is a no-op.
		if err := dst.Commit(user); err != nil {
			t.Errorf("second commit: %v", err)
		}
		sameTree(t, want, old)
	})

	t.Run("nothing staged", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOpts{})
		dst := e.dial("st2")
		wantRefusal(t, "commit without a stage", dst.Commit(user), "pull it first")
		if err := dst.Retire(user, "st1"); err == nil {
			t.Error("retire of a mailbox that is not there succeeded")
		}
		old := e.maildir("st2", user)
		if err := os.MkdirAll(old, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := dst.Retire(user, "st1"); err != nil {
			t.Fatal(err)
		}
		wantRefusal(t, "commit without a stage over a moved copy", dst.Commit(user), "pull it first")
		if !strings.HasPrefix(marker(t, old), "moved to st1") {
			t.Error("a refused commit touched the moved copy")
		}
	})
}

// TestMarkerTransitions: thaw and freeze on each state of the source's
// marker.
func TestMarkerTransitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	root := e.maildir("st1", user)
	fillMaildir(t, root)
	c := e.dial("st1")
	for _, tc := range []struct {
		marker     string // before; "" none
		op         string
		refused    string // "" accepted
		wantPrefix string // the marker after; "" none
	}{
		{"", opThaw, "", ""},
		{"frozen for a move to st2 since 2025-01-01T00:00:00Z", opThaw, "", ""},
		{"moved to st2 at 2025-01-01T00:00:00Z", opThaw, "already moved", "moved to st2 at 2025-01-01"},
		{"", opFreeze, "", "frozen for a move to st2"},
		{"frozen for a move to st3 since 2025-01-01T00:00:00Z", opFreeze, "", "frozen for a move to st2"},
		{"moved to st2 at 2025-01-01T00:00:00Z", opFreeze, "already moved", "moved to st2 at 2025-01-01"},
		{"frozen for a move to st2 since 2025-01-01T00:00:00Z", opRetire, "", "moved to st2 at "},
	} {
		name := fmt.Sprintf("%s with marker %q", tc.op, tc.marker)
		os.Remove(filepath.Join(root, mailbox.MovingMarker))
		if tc.marker != "" {
			if err := writeMarker(root, tc.marker); err != nil {
				t.Fatal(err)
			}
		}
		err := c.simple(Request{Op: tc.op, User: user, To: "st2"})
		if tc.refused != "" {
			wantRefusal(t, name, err, tc.refused)
		} else if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		got := marker(t, root)
		if tc.wantPrefix == "" && got != "" || !strings.HasPrefix(got, tc.wantPrefix) {
			t.Errorf("%s: marker after = %q, want %q...", name, got, tc.wantPrefix)
		}
	}
}

// TestBusy: a second change to a user's mailbox is refused while one is in
// progress, and accepted once it ended.
func TestBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	root := e.maildir("st1", user)
	fillMaildir(t, root)
	leave := e.gates["st1"].Enter(user)
	done := make(chan error, 1)
	c1 := e.dial("st1")
	go func() { done <- c1.Freeze(user, "st2") }()
	eventually(t, "the freeze to start", func() bool { return exists(filepath.Join(root, mailbox.MovingMarker)) })
	c2 := e.dial("st1")
	wantRefusal(t, "thaw during a freeze", c2.Thaw(user), "freeze of juan's mailbox is in progress")
	if st, err := c2.Status(user); err != nil || !strings.HasPrefix(st.Marker, "frozen") {
		t.Errorf("status during a freeze: %+v, %v", st, err)
	}
	leave()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := c2.Thaw(user); err != nil {
		t.Fatal(err)
	}
	if mk := marker(t, root); mk != "" {
		t.Errorf("marker after thaw: %q", mk)
	}
}

func TestSweep(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	srv := e.server("st1")
	c := e.dial("st1")
	grace := e.c.Profile.Cluster.Moves.Grace.Std()
	if n, err := srv.Sweep(); n != 0 || err != nil {
		t.Fatalf("sweep of a host that never moved anything: %d, %v", n, err)
	}
	users := []string{"old", "young", "back"}
	for _, u := range users {
		if _, err := mailbox.New(e.maildir("st1", u)).Deliver(strings.NewReader("x\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"old", "back"} {
		if err := c.Retire(u, "st2"); err != nil {
			t.Fatal(err)
		}
	}
	e.offset.Store(int64(grace / 2))
	if err := c.Retire("young", "st2"); err != nil {
		t.Fatal(err)
	}
	// back came home: its Maildir is live again, though a crash kept the
	// commit from removing the record.
	if err := os.Remove(filepath.Join(e.maildir("st1", "back"), mailbox.MovingMarker)); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.Sweep(); n != 0 || err != nil {
		t.Fatalf("sweep within the grace: %d, %v", n, err)
	}
	for _, u := range users {
		if !exists(e.maildir("st1", u)) || !exists(e.outRecord("st1", u)) {
			t.Errorf("%s was swept within the grace", u)
		}
	}
	e.offset.Store(int64(grace + time.Minute))
	if n, err := srv.Sweep(); n != 1 || err != nil {
		t.Fatalf("sweep past old's grace: %d, %v; want 1", n, err)
	}
	if exists(filepath.Dir(e.maildir("st1", "old"))) || exists(e.outRecord("st1", "old")) {
		t.Error("old's copy or its record is still there")
	}
	if !exists(e.maildir("st1", "young")) || !exists(e.outRecord("st1", "young")) {
		t.Error("young was swept before its grace")
	}
	if msgs, err := mailbox.New(e.maildir("st1", "back")).List(); err != nil || len(msgs) != 1 {
		t.Errorf("back's live mailbox was touched: %d messages, %v", len(msgs), err)
	}
	if exists(e.outRecord("st1", "back")) {
		t.Error("back's stale record is still there")
	}
	e.offset.Store(int64(grace/2 + grace + time.Minute))
	if n, err := srv.Sweep(); n != 1 || err != nil {
		t.Fatalf("sweep past young's grace: %d, %v; want 1", n, err)
	}
	if exists(e.maildir("st1", "young")) {
		t.Error("young's copy is still there")
	}
	eventually(t, "the trash to empty", func() bool {
		t, _ := os.ReadDir(filepath.Join(srv.movesDir(), "trash"))
		return len(t) == 0
	})
}

// TestPullResumes: a pull cut short (the source went away) keeps what it
// copied, and the next one copies only the rest. The mailbox is more than
// one fetch batch: closing the source stops the second batch, whatever
// of the first the socket buffers already hold.
func TestPullResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	root := e.maildir("st1", user)
	const files, size = fetchBatch + 100, 2000
	body := strings.Repeat("x", size-2) + "\r\n"
	for i := range files {
		writeFile(t, filepath.Join(root, "cur", fmt.Sprintf("17000%05d.M%dP1.st1,S=%d:2,S", i, i, size)), body, 0o600, time.Unix(int64(1700000000+i), 0))
	}
	want := snapshot(t, root)
	dst := e.dial("st2")
	// 600 kB/s: the pass takes two seconds, and is cut once a few files
	// are in.
	cut := false
	_, err := dst.Pull(user, "st1", 600_000, func(p Progress) {
		if p.Files >= 3 && !cut {
			cut = true
			e.server("st1").Close()
		}
	})
	if !cut {
		t.Fatalf("the pull ended (%v) before it could be cut", err)
	}
	if err == nil {
		t.Fatal("a pull whose source went away succeeded")
	}
	had, err := mailtree.Scan(e.stage("st2", user))
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for _, en := range had.Entries {
		if !en.Dir {
			kept++
		}
	}
	if kept < 3 || kept >= files {
		t.Fatalf("the cut pass kept %d of %d files; want at least the 3 reported", kept, files)
	}
	e.start("st1", 0)
	p, err := dst.Pull(user, "st1", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Files != int64(files-kept) || p.Bytes != int64((files-kept)*size) || p.Total != files*size {
		t.Errorf("second pass: %+v; want %d files, %d bytes of %d", p, files-kept, (files-kept)*size, files*size)
	}
	if _, err := dst.Verify(user, "st1"); err != nil {
		t.Fatal(err)
	}
	sameTree(t, want, e.stage("st2", user))
	// A third pass has nothing to do.
	if p, err := dst.Pull(user, "st1", 0, nil); err != nil || p.Files != 0 || p.Removed != 0 {
		t.Errorf("third pass: %+v, %v; want nothing copied", p, err)
	}
}

// TestLockNames holds the names the freeze waits on equal to the ones
// pop3d and mailstore lock. mailstore's name is unexported, so the test
// reads it off the file a Store creates when it changes a folder: INBOX's
// in the Maildir's root, another folder's in its Maildir++ directory,
// which is where waitFolders looks.
func TestLockNames(t *testing.T) {
	t.Parallel()
	if pop3Lock != pop3.LockFileName {
		t.Errorf("pop3Lock = %q, pop3.LockFileName = %q", pop3Lock, pop3.LockFileName)
	}
	root := filepath.Join(t.TempDir(), "Maildir")
	s, err := mailstore.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Create("Sent"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"INBOX", "Sent"} {
		if _, err := s.Status(f); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{filepath.Join(root, mailstoreLock), filepath.Join(root, ".Sent", mailstoreLock)} {
		if !exists(p) {
			t.Errorf("mailstore did not lock %s: its lock name is no longer %q", p, mailstoreLock)
		}
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	// correo-uidvalidity.lock is taken only while a folder's lock is
	// held (choosing a new UIDVALIDITY when a folder's list is rebuilt),
	// so waiting for the folder locks waits for it too. Any other lock
	// would be one the freeze does not know of.
	for _, en := range ents {
		if n := en.Name(); strings.HasSuffix(n, ".lock") && n != mailstoreLock && n != "correo-uidvalidity.lock" {
			t.Errorf("mailstore made the lock file %s, which the freeze does not wait on", n)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	st1, _ := e.c.Profile.Host("st1")
	noStorage := *st1
	noStorage.Storage = nil
	for _, cfg := range []Config{
		{},
		{Profile: e.c.Profile, Host: st1},
		{Profile: e.c.Profile, Ring: e.c.Ring},
		{Profile: e.c.Profile, Host: &noStorage, Ring: e.c.Ring},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
