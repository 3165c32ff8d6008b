package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// benchMessages is the INBOX size of issue 16's benchmark.
const benchMessages = 2000

// fillNew writes n messages of about 2 KB into new/ as pdeliveryd names
// them, without fsync: the benchmark measures the store, not the disk's
// delivery rate (package mailbox has that benchmark).
func fillNew(b *testing.B, root string, n int) {
	b.Helper()
	body := "Subject: bench\n\n" + strings.Repeat("x", 2000) + "\n"
	wire := len(body) + strings.Count(body, "\n")
	now := time.Now()
	for i := 0; i < n; i++ {
		base, err := uniqueBase(now.Add(time.Duration(i) * time.Second))
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("%s,S=%d,W=%d", base, len(body), wire)
		if err := os.WriteFile(filepath.Join(root, "new", name), []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
	}
}

// resetToNew undoes a SELECT: files back to new/ without info, no list.
func resetToNew(b *testing.B, root string) {
	b.Helper()
	names, err := readNames(filepath.Join(root, "cur"))
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range names {
		key, _, _ := strings.Cut(n, ":")
		if err := os.Rename(filepath.Join(root, "cur", n), filepath.Join(root, "new", key)); err != nil {
			b.Fatal(err)
		}
	}
	os.Remove(filepath.Join(root, uidlistFile))
}

// BenchmarkSelect2000 prints the cost of SELECT on a 2 000-message INBOX:
// cold (every message new: UIDs assigned, new/ → cur/, the list written
// and fsynced) and warm (a new Store, as a new session in another
// process: the list is parsed, new/ and cur/ read), and Refresh with
// nothing changed (a NOOP or an IDLE wake-up in a session).
func BenchmarkSelect2000(b *testing.B) {
	root := filepath.Join(b.TempDir(), "Maildir")
	if _, err := Open(root); err != nil {
		b.Fatal(err)
	}
	fillNew(b, root, benchMessages)

	b.Run("cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			resetToNew(b, root)
			s, _ := Open(root)
			b.StartTimer()
			mb, err := s.Select(Inbox)
			if err != nil {
				b.Fatal(err)
			}
			if mb.Len() != benchMessages {
				b.Fatalf("%d messages", mb.Len())
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/benchMessages, "µs/msg")
	})
	b.Run("warm", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			s, _ := Open(root)
			mb, err := s.Select(Inbox)
			if err != nil {
				b.Fatal(err)
			}
			if mb.Len() != benchMessages {
				b.Fatalf("%d messages", mb.Len())
			}
		}
	})
	b.Run("refresh-unchanged", func(b *testing.B) {
		s, _ := Open(root)
		mb, err := s.Select(Inbox)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			up, err := mb.Refresh(true)
			if err != nil {
				b.Fatal(err)
			}
			if up.New != 0 || len(up.Expunged) != 0 || len(up.Changed) != 0 {
				b.Fatalf("changes on an idle folder: %+v", up)
			}
		}
	})
}
