package mailstore

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"correo/src/mailbox"
)

// freeze does what the mover does before copying: the marker, then each
// folder's lock once (which also makes every lock file exist, as it
// would when the copy starts).
func freeze(t *testing.T, s *Store) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.Root(), mailbox.MovingMarker), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dirs := []string{s.Root()}
	names, _ := s.folderNames()
	for _, n := range names {
		d, _ := folderPath(s.Root(), n)
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		lk, err := lockFile(filepath.Join(d, lockName))
		if err != nil {
			t.Fatal(err)
		}
		lk.unlock()
	}
}

// snapshot is every name under root with its content's hash: what the
// mover copies.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
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
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// frozenFixture is a mailbox with INBOX (three messages, one \Deleted),
// a folder Work with one, and the defaults done; every list is up to
// date, so a read finds nothing to write.
type frozenFixture struct {
	s    *Store
	mb   *Mailbox // INBOX selected before the freeze
	work *Mailbox // Work examined before the freeze
}

func newFrozenFixture(t *testing.T, defaults bool) *frozenFixture {
	t.Helper()
	s := newStore(t)
	if defaults {
		if err := s.EnsureDefaults(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		deliver(t, s.Root(), fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))
	}
	if err := s.Create("Work"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Append("Work", nil, time.Time{}, strings.NewReader("work\n")); err != nil {
		t.Fatal(err)
	}
	mb := mustSelect(t, s, Inbox)
	if _, err := mb.Store([]uint32{2}, OpAdd, []string{`\Deleted`}, 0); err != nil {
		t.Fatal(err)
	}
	work, err := s.Examine("Work")
	if err != nil {
		t.Fatal(err)
	}
	return &frozenFixture{s: s, mb: mb, work: work}
}

func TestFrozenMailboxRefusesEveryChange(t *testing.T) {
	cases := []struct {
		name   string
		noDefs bool                 // the fixture without EnsureDefaults done
		before func(*frozenFixture) // after the fixture, before the freeze
		op     func(*frozenFixture) error
		noErr  bool // the op succeeds, but must leave the disk alone
	}{
		{name: "Select", op: func(f *frozenFixture) error { _, err := f.s.Select(Inbox); return err }},
		{name: "Store", op: func(f *frozenFixture) error {
			_, err := f.mb.Store([]uint32{1}, OpAdd, []string{`\Seen`}, 0)
			return err
		}},
		{name: "Store new keyword", op: func(f *frozenFixture) error {
			_, err := f.mb.Store([]uint32{1}, OpAdd, []string{"$Work"}, 0)
			return err
		}},
		{name: "Copy", op: func(f *frozenFixture) error { _, err := f.mb.Copy([]uint32{1}, "Work"); return err }},
		{name: "Copy within", op: func(f *frozenFixture) error { _, err := f.mb.Copy([]uint32{1}, Inbox); return err }},
		{name: "Move", op: func(f *frozenFixture) error { _, _, err := f.mb.Move([]uint32{1}, "Work"); return err }},
		{name: "Expunge", op: func(f *frozenFixture) error { _, err := f.mb.Expunge(nil); return err }},
		{name: "UID Expunge", op: func(f *frozenFixture) error { _, err := f.mb.Expunge([]uint32{2}); return err }},
		{name: "Append", op: func(f *frozenFixture) error {
			_, _, err := f.s.Append(Inbox, nil, time.Time{}, strings.NewReader("x\n"))
			return err
		}},
		{name: "Create", op: func(f *frozenFixture) error { return f.s.Create("New/Sub") }},
		{name: "Delete", op: func(f *frozenFixture) error { return f.s.Delete("Work") }},
		{name: "Rename", op: func(f *frozenFixture) error { return f.s.Rename("Work", "Play/Work") }},
		{name: "Rename INBOX", op: func(f *frozenFixture) error { return f.s.Rename(Inbox, "Old") }},
		{name: "SetSpecialUse", op: func(f *frozenFixture) error { return f.s.SetSpecialUse("Work", `\Archive`) }},
		{name: "EnsureDefaults", noDefs: true, op: func(f *frozenFixture) error { return f.s.EnsureDefaults() }},
		// Reads that would have to write are refused too: their answer
		// would show UIDs that exist only in memory.
		{name: "Refresh adopting a delivery", before: func(f *frozenFixture) { deliver(t, f.s.Root(), "late\n") },
			op: func(f *frozenFixture) error { _, err := f.mb.Refresh(true); return err }},
		{name: "Status adopting a delivery", before: func(f *frozenFixture) { deliver(t, f.s.Root(), "late\n") },
			op: func(f *frozenFixture) error { _, err := f.s.Status(Inbox); return err }},
		{name: "Examine adopting a delivery", before: func(f *frozenFixture) { deliver(t, f.s.Root(), "late\n") },
			op: func(f *frozenFixture) error { _, err := f.s.Examine(Inbox); return err }},
		{name: "UID list rebuild", before: func(f *frozenFixture) {
			os.Remove(filepath.Join(f.s.Root(), ".Work", uidlistFile))
		}, op: func(f *frozenFixture) error { _, err := f.s.Status("Work"); return err }},
		{name: "Open leftovers", before: func(f *frozenFixture) {
			os.Mkdir(filepath.Join(f.s.Root(), deletingPrefix+"x"), 0o700)
		}, noErr: true, op: func(f *frozenFixture) error { _, err := Open(f.s.Root()); return err }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFrozenFixture(t, !c.noDefs)
			if c.before != nil {
				c.before(f)
			}
			freeze(t, f.s)
			before := snapshot(t, f.s.Root())
			err := c.op(f)
			if c.noErr && err != nil {
				t.Errorf("error %v", err)
			} else if !c.noErr && (!errors.Is(err, ErrMoving) || !errors.Is(err, mailbox.ErrMoving)) {
				t.Errorf("error %v, want ErrMoving", err)
			}
			if after := snapshot(t, f.s.Root()); after != before {
				t.Errorf("the frozen mailbox changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			// Once the move is abandoned (marker removed) the same Store
			// works again: nothing stale was cached.
			os.Remove(filepath.Join(f.s.Root(), mailbox.MovingMarker))
			if _, err := f.s.Select(Inbox); err != nil {
				t.Errorf("after the marker is gone: %v", err)
			}
		})
	}
}

func TestFrozenMailboxStillReads(t *testing.T) {
	f := newFrozenFixture(t, true)
	freeze(t, f.s)
	before := snapshot(t, f.s.Root())
	reads := []struct {
		name string
		op   func() error
	}{
		{"List", func() error {
			l, err := f.s.List()
			if err == nil && len(l) != 6 {
				err = fmt.Errorf("%d folders", len(l))
			}
			return err
		}},
		{"Status", func() error {
			st, err := f.s.Status(Inbox)
			if err == nil && (st.Messages != 3 || st.Deleted != 1) {
				err = fmt.Errorf("status %+v", st)
			}
			return err
		}},
		{"Usage", func() error { _, err := f.s.Usage(); return err }},
		{"Examine", func() error {
			mb, err := f.s.Examine(Inbox)
			if err == nil && mb.Len() != 3 {
				err = fmt.Errorf("%d messages", mb.Len())
			}
			return err
		}},
		{"Refresh", func() error {
			up, err := f.mb.Refresh(true)
			if err == nil && (up.New != 0 || len(up.Expunged) != 0 || up.Exists != 3) {
				err = fmt.Errorf("update %+v", up)
			}
			return err
		}},
		{"Refresh read-only", func() error { _, err := f.work.Refresh(true); return err }},
		{"Changes", func() error { _, _, err := f.mb.Changes(0); return err }},
		{"Open", func() error {
			r, err := f.mb.Open(1)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.ReadAll(r)
			return err
		}},
		{"EnsureDefaults done before", func() error { return f.s.EnsureDefaults() }},
		{"Watch", func() error {
			_, stop, err := f.s.Watch(Inbox)
			if err == nil {
				stop()
			}
			return err
		}},
	}
	for _, r := range reads {
		if err := r.op(); err != nil {
			t.Errorf("%s on a frozen mailbox: %v", r.name, err)
		}
	}
	if after := snapshot(t, f.s.Root()); after != before {
		t.Errorf("reads changed the frozen mailbox:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestWatchMovingFiresForTheMarkerOnly(t *testing.T) {
	for _, polling := range []bool{false, true} {
		t.Run(fmt.Sprintf("polling=%v", polling), func(t *testing.T) {
			if polling {
				forcePolling = true
				defer func() { forcePolling = false }()
			}
			s := newStore(t)
			var calls atomic.Int32
			fired := make(chan struct{}, 1)
			stop := s.WatchMoving(func() {
				calls.Add(1)
				signal(fired)
			})
			defer stop()
			// Ordinary changes in the root do not wake the watcher.
			deliver(t, s.Root(), "hello\n")
			mustSelect(t, s, Inbox)
			if !polling {
				select {
				case <-fired:
					t.Fatal("woken by a delivery and a UID list write")
				case <-time.After(200 * time.Millisecond):
				}
			}
			if err := os.WriteFile(filepath.Join(s.Root(), mailbox.MovingMarker), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			waitFor(t, fired, "the moving marker appeared")
			stop()
			n := calls.Load()
			os.Remove(filepath.Join(s.Root(), mailbox.MovingMarker))
			os.WriteFile(filepath.Join(s.Root(), mailbox.MovingMarker), nil, 0o600)
			time.Sleep(2 * MovingPollInterval)
			if calls.Load() != n {
				t.Fatal("called after stop")
			}
		})
	}
}
