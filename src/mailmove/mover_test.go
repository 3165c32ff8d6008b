package mailmove

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"correo/src/directory"
	"correo/src/mailbox"
)

const user = "juan"

// checkMoved asserts the state a finished move st1→st2 leaves: the
// target's Maildir is the source's as it was, without the per-host files;
// the source's copy is marked moved and recorded for the janitor; passwd
// points at st2 with the user's state from before; nothing is staged or
// journaled.
func checkMoved(t *testing.T, e *testEnv, m *Mover, want tree, state directory.State) {
	t.Helper()
	src, dst := e.maildir("st1", user), e.maildir("st2", user)
	sameTree(t, want, dst)
	for _, name := range []string{mailbox.MovingMarker, pop3Lock, mailstoreLock, ".Sent/" + mailstoreLock} {
		if exists(filepath.Join(dst, name)) {
			t.Errorf("the target has %s, a per-host file that must not travel", name)
		}
	}
	if tmp, _ := os.ReadDir(filepath.Join(dst, "tmp")); len(tmp) != 0 {
		t.Errorf("the target's tmp/ holds %d entries; deliveries in progress must not travel", len(tmp))
	}
	if mk := marker(t, src); !strings.HasPrefix(mk, "moved to st2") {
		t.Errorf("source marker = %q, want it to start with \"moved to st2\"", mk)
	}
	if b, err := os.ReadFile(e.outRecord("st1", user)); err != nil || !strings.HasSuffix(strings.TrimSpace(string(b)), " st2") {
		t.Errorf("the source's out record = %q, %v; want \"<time> st2\"", b, err)
	}
	if got := e.dir.get(user); got != (dirUser{"st2", state}) {
		t.Errorf("directory = %+v, want storage st2 and state %s", got, state)
	}
	if exists(e.stage("st2", user)) {
		t.Errorf("the target's stage %s is still there", e.stage("st2", user))
	}
	if _, ok, err := m.Load(user); ok || err != nil {
		t.Errorf("the journal is still there (%v)", err)
	}
	if p, err := m.Pending(); len(p) != 0 || err != nil {
		t.Errorf("pending moves = %v, %v; want none", p, err)
	}
	st, err := e.dial("st2").Status(user)
	if err != nil || st != (Status{Live: true}) {
		t.Errorf("target status = %+v, %v; want live, not frozen, nothing staged", st, err)
	}
}

// checkRolledBack asserts the state of a move that did not happen: the
// source serves the mailbox as before, the target holds nothing.
func checkRolledBack(t *testing.T, e *testEnv, m *Mover, want tree, state directory.State) {
	t.Helper()
	src := e.maildir("st1", user)
	sameTree(t, want, src)
	if mk := marker(t, src); mk != "" {
		t.Errorf("the source is still frozen: %q", mk)
	}
	if got := e.dir.get(user); got != (dirUser{"st1", state}) {
		t.Errorf("directory = %+v, want storage st1 and state %s", got, state)
	}
	if exists(e.stage("st2", user)) {
		t.Errorf("the target's stage %s is still there", e.stage("st2", user))
	}
	if exists(e.maildir("st2", user)) {
		t.Errorf("the target has a Maildir %s", e.maildir("st2", user))
	}
	if _, ok, err := m.Load(user); ok || err != nil {
		t.Errorf("the journal is still there (%v)", err)
	}
}

func TestMove(t *testing.T) {
	t.Parallel()
	for _, state := range []directory.State{directory.StateActive, directory.StateDisabled} {
		t.Run(state.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{})
			e.dir.add(user, "st1", state)
			n := fillMaildir(t, e.maildir("st1", user))
			want := snapshot(t, e.maildir("st1", user))
			if want.files() != n {
				t.Fatalf("the source lists %d files, want %d", want.files(), n)
			}
			var bytes int64
			for _, b := range want.contents {
				bytes += int64(len(b))
			}
			m := e.mover()
			rep, err := m.Move(context.Background(), user, "st2")
			if err != nil {
				t.Fatal(err)
			}
			checkMoved(t, e, m, want, state)
			if rep.User != user || rep.From != "st1" || rep.To != "st2" {
				t.Errorf("report names %s %s→%s", rep.User, rep.From, rep.To)
			}
			if len(rep.Live) == 0 || rep.Live[0].Files != int64(n) || rep.Live[0].Bytes != bytes || rep.Live[0].Total != bytes {
				t.Errorf("live passes = %+v, want the first to copy %d files, %d bytes", rep.Live, n, bytes)
			}
			if rep.Delta.Files != 0 {
				t.Errorf("the frozen pass copied %d files of an unchanged mailbox", rep.Delta.Files)
			}
			if rep.Verified.Files != int64(n) || rep.Verified.Bytes != bytes {
				t.Errorf("verified %d files, %d bytes; want %d, %d", rep.Verified.Files, rep.Verified.Bytes, n, bytes)
			}
			if rep.Frozen <= 0 || rep.Took < rep.Frozen {
				t.Errorf("frozen %s, took %s", rep.Frozen, rep.Took)
			}
			e.dir.mu.Lock()
			sets := strings.Join(e.dir.sets, "; ")
			e.dir.mu.Unlock()
			if want := "juan moving ; juan " + state.String() + " st2"; sets != want {
				t.Errorf("directory changes: %s; want %s", sets, want)
			}
		})
	}
}

// TestMoveNeverReceivedMail: a user without a Maildir yet moves too, and
// the target's (empty) Maildir takes deliveries afterwards.
func TestMoveNeverReceivedMail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.dir.add(user, "st1", directory.StateActive)
	m := e.mover()
	if _, err := m.Move(context.Background(), user, "st2"); err != nil {
		t.Fatal(err)
	}
	checkMoved(t, e, m, snapshot(t, filepath.Join(e.c.Dir, "nothing")), directory.StateActive)
	dst := mailbox.New(e.maildir("st2", user))
	if _, err := dst.Deliver(strings.NewReader("From: a@example.org\r\n\r\nfirst\r\n")); err != nil {
		t.Fatal(err)
	}
	if msgs, err := dst.List(); err != nil || len(msgs) != 1 {
		t.Fatalf("after a delivery the target lists %d messages (%v), want 1", len(msgs), err)
	}
}

// TestFreezeTimeout: a POP3 session that does not end makes the freeze
// give up after freeze_timeout, and the move is rolled back entirely; once
// the session ends the move goes through.
func TestFreezeTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{ClusterTOML: "[cluster.moves]\nfreeze_timeout = \"300ms\"\n"})
	e.dir.add(user, "st1", directory.StateDisabled)
	src := e.maildir("st1", user)
	fillMaildir(t, src)
	want := snapshot(t, src)
	lock := holdLock(t, filepath.Join(src, pop3Lock))
	m := e.mover()
	_, err := m.Move(context.Background(), user, "st2")
	if err == nil || !strings.Contains(err.Error(), "POP3") || !strings.Contains(err.Error(), "freeze_timeout") {
		t.Fatalf("move with a POP3 session held: %v; want a freeze timeout naming the session", err)
	}
	checkRolledBack(t, e, m, want, directory.StateDisabled)
	lock.Close()
	if _, err := m.Move(context.Background(), user, "st2"); err != nil {
		t.Fatal(err)
	}
	checkMoved(t, e, m, want, directory.StateDisabled)
}

// TestFreezeWaitsForLock: a session that ends while the freeze waits lets
// it proceed.
func TestFreezeWaitsForLock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{ClusterTOML: "[cluster.moves]\nfreeze_timeout = \"5s\"\n"})
	e.dir.add(user, "st1", directory.StateActive)
	src := e.maildir("st1", user)
	fillMaildir(t, src)
	want := snapshot(t, src)
	for _, lockName := range []string{pop3Lock, mailstoreLock, ".Sent/" + mailstoreLock} {
		t.Run(strings.ReplaceAll(lockName, "/", "_"), func(t *testing.T) {
			lock := holdLock(t, filepath.Join(src, lockName))
			released := make(chan time.Time, 1)
			go func() {
				// Once the marker is there, the freeze is waiting.
				deadline := time.Now().Add(10 * time.Second)
				for !exists(filepath.Join(src, mailbox.MovingMarker)) && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(100 * time.Millisecond)
				released <- time.Now()
				lock.Close()
			}()
			m := e.mover()
			rep, err := m.Move(context.Background(), user, "st2")
			if err != nil {
				t.Fatal(err)
			}
			<-released
			if rep.Frozen < 100*time.Millisecond {
				t.Errorf("frozen %s, less than the 100ms the lock was held", rep.Frozen)
			}
			checkMoved(t, e, m, want, directory.StateActive)
			// Back to st1 for the next lock: the move back replaces
			// st1's retired copy.
			if _, err := m.Move(context.Background(), user, "st1"); err != nil {
				t.Fatal(err)
			}
			if got := e.dir.get(user); got.Storage != "st1" {
				t.Fatalf("after moving back, passwd says %+v", got)
			}
			if mk := marker(t, src); mk != "" {
				t.Fatalf("st1's Maildir is frozen after moving back: %q", mk)
			}
		})
	}
}

// holdLock takes path's flock as pop3d or mailstore would, until Close.
func holdLock(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestFreezeWaitsForDelivery: a delivery in progress in the source's
// process holds the freeze back until it ends.
func TestFreezeWaitsForDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.dir.add(user, "st1", directory.StateActive)
	src := e.maildir("st1", user)
	fillMaildir(t, src)
	want := snapshot(t, src)
	leave := e.gates["st1"].Enter(user)
	m := e.mover()
	type result struct {
		rep Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := m.Move(context.Background(), user, "st2")
		done <- result{rep, err}
	}()
	eventually(t, "the source's marker", func() bool { return strings.HasPrefix(marker(t, src), "frozen for a move to st2") })
	select {
	case r := <-done:
		t.Fatalf("the move finished (%v) while a delivery was in progress", r.err)
	case <-time.After(200 * time.Millisecond):
	}
	if got := e.dir.get(user); got.State != directory.StateMoving || got.Storage != "st1" {
		t.Errorf("while frozen, passwd says %+v", got)
	}
	if exists(e.maildir("st2", user)) {
		t.Error("the target committed while a delivery was in progress at the source")
	}
	leave()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the move did not finish after the delivery ended")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	checkMoved(t, e, m, want, directory.StateActive)
}

// steps a crash may leave done, by hand through the Client API and the
// directory, in the Mover's order.
type step func(t *testing.T, e *testEnv, src, dst *Client)

var (
	pull = func(t *testing.T, e *testEnv, src, dst *Client) {
		if _, err := dst.Pull(user, "st1", 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	markMoving = func(t *testing.T, e *testEnv, src, dst *Client) {
		if err := e.dir.Set(context.Background(), user, directory.StateMoving, ""); err != nil {
			t.Fatal(err)
		}
	}
	freeze = func(t *testing.T, e *testEnv, src, dst *Client) {
		if err := src.Freeze(user, "st2"); err != nil {
			t.Fatal(err)
		}
	}
	verify = func(t *testing.T, e *testEnv, src, dst *Client) {
		if _, err := dst.Verify(user, "st1"); err != nil {
			t.Fatal(err)
		}
	}
	commit = func(t *testing.T, e *testEnv, src, dst *Client) {
		if err := dst.Commit(user); err != nil {
			t.Fatal(err)
		}
	}
	switchDir = func(t *testing.T, e *testEnv, src, dst *Client) {
		if err := e.dir.Set(context.Background(), user, directory.StateDisabled, "st2"); err != nil {
			t.Fatal(err)
		}
	}
	retire = func(t *testing.T, e *testEnv, src, dst *Client) {
		if err := src.Retire(user, "st2"); err != nil {
			t.Fatal(err)
		}
	}
)

// crashCases are the states a crash of correoctl leaves at each step: the
// journal names the step, and the steps before it (and maybe part of it)
// were done.
var crashCases = []struct {
	name string
	step string
	done []step
}{
	{"copy/nothing copied", StepCopy, nil},
	{"copy/one pass", StepCopy, []step{pull}},
	{"freeze/before passwd", StepFreeze, []step{pull}},
	{"freeze/passwd moving", StepFreeze, []step{pull, markMoving}},
	{"freeze/frozen", StepFreeze, []step{pull, markMoving, freeze}},
	{"freeze/verified", StepFreeze, []step{pull, markMoving, freeze, pull, verify}},
	{"commit/not committed", StepCommit, []step{pull, markMoving, freeze, pull, verify}},
	{"commit/committed", StepCommit, []step{pull, markMoving, freeze, pull, verify, commit}},
	{"switch/not switched", StepSwitch, []step{pull, markMoving, freeze, pull, verify, commit}},
	{"switch/switched", StepSwitch, []step{pull, markMoving, freeze, pull, verify, commit, switchDir}},
	{"retire/not retired", StepRetire, []step{pull, markMoving, freeze, pull, verify, commit, switchDir}},
	{"retire/retired", StepRetire, []step{pull, markMoving, freeze, pull, verify, commit, switchDir, retire}},
}

// crashAt builds the state of crashCases[i] for a disabled user (so that
// the state the switch gives back is visibly the journaled one).
func crashAt(t *testing.T, step string, done []step) (*testEnv, *Mover, tree) {
	e := newEnv(t, envOpts{})
	e.dir.add(user, "st1", directory.StateDisabled)
	fillMaildir(t, e.maildir("st1", user))
	want := snapshot(t, e.maildir("st1", user))
	src, dst := e.dial("st1"), e.dial("st2")
	for _, s := range done {
		s(t, e, src, dst)
	}
	m := e.mover()
	if err := m.save(&Journal{User: user, From: "st1", To: "st2", State: directory.StateDisabled, Step: step, Started: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	return e, m, want
}

func TestResume(t *testing.T) {
	t.Parallel()
	for _, tc := range crashCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, m, want := crashAt(t, tc.step, tc.done)
			if p, err := m.Pending(); err != nil || len(p) != 1 || p[0] != user {
				t.Fatalf("pending = %v, %v; want [%s]", p, err, user)
			}
			if _, err := m.Move(context.Background(), user, "st2"); err == nil || !strings.Contains(err.Error(), "-resume") {
				t.Errorf("a new move over a journaled one: %v; want a refusal pointing at -resume", err)
			}
			if _, err := m.Resume(context.Background(), user); err != nil {
				t.Fatal(err)
			}
			checkMoved(t, e, m, want, directory.StateDisabled)
		})
	}
}

func TestAbort(t *testing.T) {
	t.Parallel()
	for _, tc := range crashCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, m, want := crashAt(t, tc.step, tc.done)
			err := m.Abort(context.Background(), user)
			if tc.step == StepCopy || tc.step == StepFreeze {
				if err == nil || !strings.Contains(err.Error(), "aborted by the operator") {
					t.Fatalf("abort: %v; want the rollback's cause", err)
				}
				checkRolledBack(t, e, m, want, directory.StateDisabled)
				return
			}
			if err == nil || !strings.Contains(err.Error(), "reached its "+tc.step+" step") || !strings.Contains(err.Error(), "-resume") {
				t.Fatalf("abort at %s: %v; want a refusal pointing at -resume", tc.step, err)
			}
			if _, ok, _ := m.Load(user); !ok {
				t.Fatal("a refused abort removed the journal")
			}
			// Nothing was undone: the move can still be finished.
			if _, err := m.Resume(context.Background(), user); err != nil {
				t.Fatal(err)
			}
			checkMoved(t, e, m, want, directory.StateDisabled)
		})
	}
}

func TestNothingJournaled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	m := e.mover()
	if _, err := m.Resume(context.Background(), user); err == nil || !strings.Contains(err.Error(), "no move") {
		t.Errorf("resume without a journal: %v", err)
	}
	if err := m.Abort(context.Background(), user); err == nil || !strings.Contains(err.Error(), "no move") {
		t.Errorf("abort without a journal: %v", err)
	}
	if err := os.MkdirAll(m.journalDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.journalPath(user), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Resume(context.Background(), user); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("resume of a damaged journal: %v", err)
	}
}

// TestMoveRefused: moves that must not start, and start nothing.
func TestMoveRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.dir.add(user, "st1", directory.StateActive)
	e.dir.add("ana", "st1", directory.StateMoving)
	fillMaildir(t, e.maildir("st1", user))
	before := listAll(t, e.c.Dir)
	m := e.mover()
	for _, tc := range []struct{ user, to, want string }{
		{"../etc", "st2", "not a valid user name"},
		{"Juan", "st2", "not a valid user name"},
		{"", "st2", "not a valid user name"},
		{user, "st9", "st9"},
		{user, "st1", "already on st1"},
		{"nobody", "st2", "no user nobody"},
		{"ana", "st2", "marked moving in passwd"},
	} {
		_, err := m.Move(context.Background(), tc.user, tc.to)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("move %q to %s: %v; want an error containing %q", tc.user, tc.to, err, tc.want)
		}
	}
	if after := listAll(t, e.c.Dir); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("refused moves changed files:\nbefore %v\nafter  %v", before, after)
	}
	if got := e.dir.get(user); got != (dirUser{"st1", directory.StateActive}) {
		t.Errorf("directory = %+v after refused moves", got)
	}
}

// TestDirectoryFailures: passwd failing at each of the Mover's changes.
func TestDirectoryFailures(t *testing.T) {
	t.Parallel()
	isMoving := func(s directory.State, storage string) bool { return s == directory.StateMoving }
	anySet := func(directory.State, string) bool { return true }
	isSwitch := func(s directory.State, storage string) bool { return storage == "st2" }

	t.Run("marking moving fails: rolled back", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOpts{})
		e.dir.add(user, "st1", directory.StateDisabled)
		fillMaildir(t, e.maildir("st1", user))
		want := snapshot(t, e.maildir("st1", user))
		e.dir.failNext(1, isMoving)
		m := e.mover()
		if _, err := m.Move(context.Background(), user, "st2"); err == nil || !strings.Contains(err.Error(), "marking juan moving") {
			t.Fatalf("move: %v", err)
		}
		checkRolledBack(t, e, m, want, directory.StateDisabled)
	})

	t.Run("rollback fails too: journaled, abort finishes it", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOpts{})
		e.dir.add(user, "st1", directory.StateDisabled)
		fillMaildir(t, e.maildir("st1", user))
		want := snapshot(t, e.maildir("st1", user))
		// Both the moving mark and the rollback's restore fail: the
		// journal must stay so that -abort can finish the rollback.
		e.dir.failNext(2, anySet)
		m := e.mover()
		_, err := m.Move(context.Background(), user, "st2")
		if err == nil || !strings.Contains(err.Error(), "rolling back failed too") || !strings.Contains(err.Error(), "-abort") {
			t.Fatalf("move: %v", err)
		}
		if j, ok, _ := m.Load(user); !ok || j.Step != StepFreeze {
			t.Fatalf("journal = %+v, %v; want step freeze", j, ok)
		}
		if err := m.Abort(context.Background(), user); err == nil || !strings.Contains(err.Error(), "aborted by the operator") {
			t.Fatalf("abort: %v", err)
		}
		checkRolledBack(t, e, m, want, directory.StateDisabled)
	})

	t.Run("switch fails: journaled, resume finishes it", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOpts{})
		e.dir.add(user, "st1", directory.StateDisabled)
		fillMaildir(t, e.maildir("st1", user))
		want := snapshot(t, e.maildir("st1", user))
		e.dir.failNext(1, isSwitch)
		m := e.mover()
		_, err := m.Move(context.Background(), user, "st2")
		if err == nil || !strings.Contains(err.Error(), "pointing passwd at st2") || !strings.Contains(err.Error(), "-resume") {
			t.Fatalf("move: %v", err)
		}
		if j, ok, _ := m.Load(user); !ok || j.Step != StepSwitch {
			t.Fatalf("journal = %+v, %v; want step switch", j, ok)
		}
		if got := e.dir.get(user); got != (dirUser{"st1", directory.StateMoving}) {
			t.Errorf("directory = %+v, want the user still moving", got)
		}
		if _, err := m.Resume(context.Background(), user); err != nil {
			t.Fatal(err)
		}
		checkMoved(t, e, m, want, directory.StateDisabled)
	})
}

// TestMoveFromRetiredCopy: passwd names a host whose copy was already
// moved away (passwd restored from a backup, say). The freeze refuses, and
// the rollback must still finish: thaw refuses that copy for good, and
// counting the refusal as a rollback failure left a journal that no
// -abort could clear, so the user could never be moved again.
func TestMoveFromRetiredCopy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.dir.add(user, "st1", directory.StateActive)
	src := e.maildir("st1", user)
	fillMaildir(t, src)
	if err := e.dial("st1").Retire(user, "st2"); err != nil {
		t.Fatal(err)
	}
	mk := marker(t, src)
	m := e.mover()
	_, err := m.Move(context.Background(), user, "st2")
	if err == nil || !strings.Contains(err.Error(), "already moved") || strings.Contains(err.Error(), "rolling back failed") {
		t.Fatalf("move from a retired copy: %v; want the freeze's refusal, rolled back", err)
	}
	if _, ok, _ := m.Load(user); ok {
		t.Error("the journal is still there")
	}
	if got := e.dir.get(user); got != (dirUser{"st1", directory.StateActive}) {
		t.Errorf("directory = %+v, want it as before", got)
	}
	if got := marker(t, src); got != mk {
		t.Errorf("the retired copy's marker changed: %q, was %q", got, mk)
	}
	if exists(e.stage("st2", user)) || exists(e.maildir("st2", user)) {
		t.Error("the target kept something of the failed move")
	}
	// A journal left at the freeze (by a correoctl that crashed there)
	// is cleared by -abort.
	if err := m.save(&Journal{User: user, From: "st1", To: "st2", State: directory.StateActive, Step: StepFreeze}); err != nil {
		t.Fatal(err)
	}
	if err := m.Abort(context.Background(), user); err == nil || strings.Contains(err.Error(), "rolling back failed") {
		t.Fatalf("abort: %v; want the rollback to finish", err)
	}
	if _, ok, _ := m.Load(user); ok {
		t.Error("abort left the journal")
	}
}

// A Maildir of the user already live on the target (not left there by a
// move away) is refused before anything is copied or frozen: found only
// at the commit, it would leave the user frozen with no way to abort.
func TestMoveRefusesLiveTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.dir.add(user, "st1", directory.StateActive)
	fillMaildir(t, e.maildir("st1", user))
	stale := e.maildir("st2", user)
	if err := os.MkdirAll(filepath.Join(stale, "cur"), 0o700); err != nil {
		t.Fatal(err)
	}
	before := listAll(t, e.c.Dir)
	m := e.mover()
	if _, err := m.Move(context.Background(), user, "st2"); err == nil || !strings.Contains(err.Error(), "already holds a Maildir") {
		t.Fatalf("move onto a live Maildir: %v", err)
	}
	if after := listAll(t, e.c.Dir); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("the refused move changed files:\nbefore %v\nafter  %v", before, after)
	}
	if got := e.dir.get(user); got != (dirUser{"st1", directory.StateActive}) {
		t.Errorf("directory = %+v after the refused move", got)
	}
}
