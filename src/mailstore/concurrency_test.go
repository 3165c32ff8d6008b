package mailstore

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/src/mailbox"
)

// Two sessions of one user (two Stores: separate caches, separate lock
// descriptors, as two imapd processes would have) append, refresh and
// store flags while pdeliveryd delivers. No UID may be handed out twice,
// and every message must end up with exactly one UID.
func TestConcurrentSessionsNeverShareAUID(t *testing.T) {
	root := newStore(t).Root()
	const perWorker = 25
	stores := make([]*Store, 2)
	for i := range stores {
		s, err := Open(root)
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = s
	}
	var mu sync.Mutex
	seen := map[uint32]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w, s := range stores {
		wg.Add(1)
		go func(w int, s *Store) {
			defer wg.Done()
			mb, err := s.Select(Inbox)
			if err != nil {
				errs <- err
				return
			}
			for i := 0; i < perWorker; i++ {
				uid, _, err := s.Append(Inbox, []string{`\Seen`}, time.Time{}, strings.NewReader(fmt.Sprintf("w%d m%d\n", w, i)))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, dup := seen[uid]; dup {
					mu.Unlock()
					errs <- fmt.Errorf("UID %d handed out twice (%s and worker %d)", uid, prev, w)
					return
				}
				seen[uid] = fmt.Sprintf("worker %d", w)
				mu.Unlock()
				if _, err := mb.Refresh(true); err != nil {
					errs <- err
					return
				}
				if n := mb.Len(); n > 0 {
					if _, err := mb.Store([]uint32{mb.UIDAt(1 + i%n)}, OpAdd, []string{`\Flagged`}, 0); err != nil {
						errs <- err
						return
					}
				}
			}
		}(w, s)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < perWorker; i++ {
			if _, err := mailbox.New(root).Deliver(strings.NewReader(fmt.Sprintf("delivery %d\n", i))); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fresh, _ := Open(root)
	mb := mustSelect(t, fresh, Inbox)
	if mb.Len() != 3*perWorker {
		t.Fatalf("%d messages, want %d", mb.Len(), 3*perWorker)
	}
	prev := uint32(0)
	keys := map[string]bool{}
	for _, m := range mb.Messages() {
		if m.UID <= prev {
			t.Fatalf("UIDs not ascending: %d after %d", m.UID, prev)
		}
		prev = m.UID
		if keys[m.Key] {
			t.Fatalf("key %s has two UIDs", m.Key)
		}
		keys[m.Key] = true
	}
	for uid := range seen {
		if mb.Seq(uid) == 0 {
			t.Errorf("appended UID %d is not in the folder", uid)
		}
	}
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("no notification after %s", what)
	}
}

// drain empties a coalesced channel so the next wait sees a new event.
func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

func TestWatchFiresOnDeliveryExpungeAndFlags(t *testing.T) {
	for _, polling := range []bool{false, true} {
		t.Run(fmt.Sprintf("polling=%v", polling), func(t *testing.T) {
			if polling {
				forcePolling, PollInterval = true, 50*time.Millisecond
				defer func() { forcePolling, PollInterval = false, 2*time.Second }()
			}
			s := newStore(t)
			ch, stop, err := s.Watch(Inbox)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			// A second watcher of the same folder shares the watches.
			ch2, stop2, err := s.Watch("inbox")
			if err != nil {
				t.Fatal(err)
			}
			deliver(t, s.Root(), "hello\n")
			waitFor(t, ch, "a delivery")
			waitFor(t, ch2, "a delivery (second watcher)")
			stop2()
			stop2() // idempotent

			other, _ := Open(s.Root())
			mb := mustSelect(t, other, Inbox)
			drain(ch)
			if _, err := mb.Store([]uint32{1}, OpAdd, []string{`\Deleted`}, 0); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ch, "another session's STORE")
			drain(ch)
			if _, err := mb.Expunge(nil); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ch, "another session's EXPUNGE")
		})
	}
	if _, _, err := newStore(t).Watch("nope"); err == nil {
		t.Fatal("Watch of a missing folder succeeded")
	}
}
