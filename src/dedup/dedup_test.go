package dedup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"correo/src/keyfile"
)

func key(i int) Key { return RecipientKey(fmt.Sprintf("q%d.trace", i), "ana@correo.test") }

func TestReopenKeepsKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	s, info, err := Open(p)
	if err != nil || info.Keys != 0 {
		t.Fatal(info, err)
	}
	if err := s.Record([]Key{key(1), key(2)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, info, err = Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if info.Keys != 2 || info.Truncated != 0 {
		t.Fatalf("reopened: %+v, want 2 keys", info)
	}
	for _, k := range []Key{key(1), key(2)} {
		if st, _, _ := s.Claim(k); st != Delivered {
			t.Errorf("key %x lost across reopen", k)
		}
	}
	st, _, release := s.Claim(key(3))
	if st != New {
		t.Fatal("unrecorded key seen")
	}
	release()
}

func TestTornTailIsCut(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	s, _, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		s.Record([]Key{key(i)})
	}
	s.Close()
	whole, _ := os.ReadFile(p)
	used := whole[:len(magic)+5*recordLen]
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	ff := bytes.Repeat([]byte{0xff}, 3*recordLen)
	for _, tc := range []struct {
		name  string
		data  []byte
		keys  int
		dirty bool // Open reports bytes cleared
	}{
		{"half a record", cat(used, used[len(magic):len(magic)+10]), 5, true},
		{"bad checksum in the last", cat(used[:len(used)-1], []byte{used[len(used)-1] ^ 1}), 4, true},
		{"garbage after", cat(used, ff), 5, true},
		{"zeros after (the log's own room)", cat(used, make([]byte, 3*recordLen)), 5, false},
		{"zeros, then a stale record", cat(used, make([]byte, recordLen), used[len(magic):len(magic)+recordLen]), 5, true},
		{"no room, as an append-only log left it", used, 5, false},
		{"torn magic", []byte(magic[:7]), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := filepath.Join(t.TempDir(), "keys")
			os.WriteFile(q, tc.data, 0o640)
			s, info, err := Open(q)
			if err != nil {
				t.Fatal(err)
			}
			if info.Keys != tc.keys {
				t.Errorf("%d keys loaded, want %d", info.Keys, tc.keys)
			}
			if (info.Truncated > 0) != tc.dirty {
				t.Errorf("%d bytes cleared, want some: %v", info.Truncated, tc.dirty)
			}
			// Appends after the cut are read back whole.
			if err := s.Record([]Key{key(100)}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s, info, err = Open(q)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			if info.Keys != tc.keys+1 || info.Truncated != 0 {
				t.Errorf("after append and reopen: %+v, want %d keys, nothing cut", info, tc.keys+1)
			}
		})
	}
}

// TestAppendsOverwrite: the log grows in steps of zeros and appends
// write over them, so an append's fdatasync changes no metadata.
func TestAppendsOverwrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	s, _, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	step := int64(len(magic) + allocRecords*recordLen)
	for i := range 3 {
		if err := s.Record([]Key{key(i)}); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(p); fi.Size() != step {
			t.Fatalf("after %d appends the log is %d bytes, want one step (%d)", i+1, fi.Size(), step)
		}
	}
	// Past the step: one more step of zeros.
	batch := make([]Key, allocRecords)
	for i := range batch {
		batch[i] = key(1000 + i)
	}
	if err := s.Intend(batch); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Size() != step+allocRecords*recordLen {
		t.Fatalf("after a step's worth of appends the log is %d bytes, want %d", fi.Size(), step+allocRecords*recordLen)
	}
	s.Close()
	s2, info, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if info.Keys != 3+allocRecords || info.Truncated != 0 {
		t.Fatalf("reopen: %+v, want %d keys and nothing cleared", info, 3+allocRecords)
	}
}

func TestNotALog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(p, []byte("something else entirely\n"), 0o640)
	if _, _, err := Open(p); err == nil {
		t.Fatal("a foreign file was taken as a key log")
	}
}

func TestBounds(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	s, _, err := open(p, time.Hour, 100, clock)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		if err := s.Record([]Key{key(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != 100 {
		t.Fatalf("%d keys kept, want the bound 100", s.Len())
	}
	if st, _, _ := s.Claim(key(0)); st == Delivered {
		t.Error("the oldest key outlived the size bound")
	}
	if st, _, _ := s.Claim(key(149)); st != Delivered {
		t.Error("the newest key was dropped")
	}
	now = now.Add(2 * time.Hour)
	if st, _, _ := s.Claim(key(149)); st == Delivered {
		t.Error("a key older than the age bound still counts")
	}
	s.Record([]Key{key(1000)})
	if s.Len() != 1 {
		t.Errorf("%d keys after the age bound passed, want 1", s.Len())
	}
	s.Close()
	s, info, err := open(p, time.Hour, 100, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if info.Keys != 1 {
		t.Errorf("reopen loaded %d keys, want 1 within bounds", info.Keys)
	}
}

func TestCompaction(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	s, _, err := open(p, time.Hour, 1000, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3*compactMin; i += 512 {
		batch := make([]Key, 512)
		for j := range batch {
			batch[j] = key(i + j)
		}
		if err := s.Record(batch); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	fi, _ := os.Stat(p)
	if max := int64(len(magic) + (compactMin+1024)*recordLen); fi.Size() > max {
		t.Errorf("log is %d bytes after %d appends of 1000 live keys: never compacted", fi.Size(), 3*compactMin)
	}
	s, info, err := open(p, time.Hour, 1000, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if info.Keys != 1000 {
		t.Errorf("%d keys after compaction and reopen, want 1000", info.Keys)
	}
	if st, _, _ := s.Claim(key(3*compactMin - 1)); st != Delivered {
		t.Error("the last key is missing after compaction")
	}
}

// TestConcurrent: many deliveries record at once (group commit), and two
// attempts with one key never both proceed.
func TestConcurrent(t *testing.T) {
	s, _, err := Open(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := map[Key]int{}
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				k := key(i) // every goroutine delivers the same 200 keys
				st, _, release := s.Claim(k)
				if st == Delivered {
					continue
				}
				s.Intend([]Key{k})
				mu.Lock()
				stored[k]++
				mu.Unlock()
				if err := s.Record([]Key{k}); err != nil {
					t.Error(g, err)
				}
				release()
			}
		}()
	}
	wg.Wait()
	for k, n := range stored {
		if n != 1 {
			t.Errorf("key %x stored %d times", k, n)
		}
	}
	if len(stored) != 200 {
		t.Errorf("%d keys stored, want 200", len(stored))
	}
}

func TestClosed(t *testing.T) {
	s, _, _ := Open(filepath.Join(t.TempDir(), "keys"))
	s.Close()
	if err := s.Record([]Key{key(1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Record after Close: %v", err)
	}
}

func TestLine(t *testing.T) {
	ring := &keyfile.Ring{Keys: []keyfile.Key{{ID: 2, Secret: [32]byte{1}}, {ID: 1, Secret: [32]byte{9}}}}
	line := Line(ring, "0190f2c3a4b5c0000012.abcdefghijklmnop")
	if line == "" || line[len(line)-2:] != "\r\n" {
		t.Fatalf("Line = %q", line)
	}
	k, ok, hdr := ParseLine(ring, line[:len(line)-2])
	if !ok || !hdr || k != "0190f2c3a4b5c0000012.abcdefghijklmnop" {
		t.Fatalf("ParseLine(%q) = %q %v %v", line, k, ok, hdr)
	}
	other := &keyfile.Ring{Keys: []keyfile.Key{{ID: 2, Secret: [32]byte{2}}}}
	if _, ok, hdr := ParseLine(other, line[:len(line)-2]); ok || !hdr {
		t.Error("a line sealed with another cluster's key was accepted")
	}
	forged := Header + ": 0190f2c3a4b5c0000012.abcdefghijklmnop 2:" + "00112233445566778899aabbccddeeff"
	if _, ok, _ := ParseLine(ring, forged); ok {
		t.Error("a forged MAC was accepted")
	}
	if _, ok, hdr := ParseLine(ring, "Received: from x"); ok || hdr {
		t.Error("another header taken for the key")
	}
	if Line(ring, "has space") != "" || Line(nil, "k") != "" {
		t.Error("Line sealed an invalid key or without a ring")
	}
	if RecipientKey("k", "Ana@Correo.Test") != RecipientKey("k", "Ana@correo.test") ||
		RecipientKey("k", "ana@x") == RecipientKey("k", "bob@x") || RecipientKey("k1", "a@x") == RecipientKey("k2", "a@x") {
		t.Error("RecipientKey does not separate what it must")
	}
}

// TestIntentWithoutDelivery: a key whose attempt began but whose end was
// never recorded (a crash) comes back Unsure, also after reopening; once
// recorded delivered it stays so.
func TestIntentWithoutDelivery(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keys")
	s, _, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Intend([]Key{key(1), key(2)}); err != nil {
		t.Fatal(err)
	}
	s.Record([]Key{key(2)})
	s.Close()
	s, _, err = Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, since, release := s.Claim(key(1))
	if st != Unsure || since == 0 {
		t.Fatalf("intended key: state %v since %d, want Unsure", st, since)
	}
	s.Record([]Key{key(1)})
	release()
	s.Intend([]Key{key(2)}) // a later intent does not undo a delivery
	for _, k := range []Key{key(1), key(2)} {
		if st, _, _ := s.Claim(k); st != Delivered {
			t.Errorf("key %x: state %v, want Delivered", k, st)
		}
	}
}
