package directory

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"correo/src/usersample"
)

func openStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func modelOf(ix *Index) model {
	m := model{}
	for _, u := range ix.All() {
		m[u.Name] = u.Clone()
	}
	return m
}

func TestStoreApplyReopen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if s.Index().Len() != 0 {
		t.Fatal("new store not empty")
	}
	epoch, _ := s.Generation()
	if _, err := s.Replace([]User{u("juan", 1000), u("ana", 1001)}); err != nil {
		t.Fatal(err)
	}
	e2, seq := s.Generation()
	if e2 <= epoch || seq != 0 {
		t.Fatalf("generation after Replace %d/%d (was epoch %d)", e2, seq, epoch)
	}
	r := rand.New(rand.NewPCG(3, 3))
	m := modelOf(s.Index())
	applied := 0
	for range 300 {
		e := randomEntry(r, m)
		got, err := s.Apply(e)
		ok := applyModel(m, mustNormalize(t, e))
		if (err == nil) != ok {
			t.Fatalf("%v: store err %v, model ok %v", e, err, ok)
		}
		if err == nil {
			applied++
			if got.Seq != uint64(applied) || got.Epoch != e2 {
				t.Fatalf("stored entry %v, want seq %d epoch %d", got, applied, e2)
			}
		}
	}
	m.check(t, s.Index(), "before reopen")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	defer s.Close()
	m.check(t, s.Index(), "after reopen")
	if ep, sq := s.Generation(); ep != e2 || sq != uint64(applied) {
		t.Fatalf("generation after reopen %d/%d, want %d/%d", ep, sq, e2, applied)
	}
	if n := s.Notes(); len(n) != 0 {
		t.Errorf("clean reopen has notes %v", n)
	}
}

func mustNormalize(t testing.TB, e Entry) Entry {
	ne, err := e.normalize()
	if err != nil {
		t.Fatal(err)
	}
	return ne
}

func TestStoreLocked(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	defer s.Close()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open: %v", err)
	}
}

func TestStoreBadChangesWriteNothing(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	defer s.Close()
	if _, err := s.Replace([]User{u("juan", 1000, "jp")}); err != nil {
		t.Fatal(err)
	}
	for _, e := range []Entry{
		{Op: OpDelete, Name: "ghost"},
		{Op: OpAdd, Name: "jp", User: &User{Name: "jp", UID: 5, Storage: "s"}},
		{Op: OpAdd, Name: "x", User: &User{Name: "x", UID: 1000, Storage: "s"}},
		{Op: OpAliasAdd, Name: "juan", Alias: "../x"},
		{Op: OpPasswd, Name: "juan", Hash: "plain"},
	} {
		if _, err := s.Apply(e); err == nil {
			t.Errorf("%v accepted", e)
		}
	}
	if s.JournalSize() != 0 {
		t.Fatalf("journal has %d bytes after refused changes", s.JournalSize())
	}
	if _, seq := s.Generation(); seq != 0 {
		t.Fatalf("seq %d after refused changes", seq)
	}
	// Replace with a bad set changes nothing either.
	if _, err := s.Replace([]User{u("a", 1), u("b", 1)}); err == nil {
		t.Fatal("bad Replace accepted")
	}
	if _, ok := s.Index().ByName("juan"); !ok {
		t.Fatal("bad Replace changed the set")
	}
}

func addN(t testing.TB, s *Store, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		name := fmt.Sprintf("user%d", i)
		if _, err := s.Apply(Entry{Op: OpAdd, User: &User{Name: name, UID: uint32(5000 + i), Storage: "s1"}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStoreTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(rec []byte) []byte
	}{
		{"half header", func(rec []byte) []byte { return rec[:5] }},
		{"half payload", func(rec []byte) []byte { return rec[:len(rec)-3] }},
		{"garbled last record", func(rec []byte) []byte {
			r := bytes.Clone(rec)
			r[len(r)-2] ^= 0xff
			return r
		}},
		{"zeros", func(rec []byte) []byte { return make([]byte, 100) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir)
			addN(t, s, 0, 3)
			s.Close()
			rec, _ := encodeRecord(Entry{Epoch: 1, Seq: 4, Op: OpDelete, Name: "user0"})
			f, _ := os.OpenFile(filepath.Join(dir, journalFile), os.O_APPEND|os.O_WRONLY, 0)
			f.Write(tc.tail(rec))
			f.Close()
			s = openStore(t, dir)
			if s.Index().Len() != 3 {
				t.Fatalf("Len %d after torn tail", s.Index().Len())
			}
			notes := s.Notes()
			if len(notes) != 1 || !strings.Contains(notes[0], "journal") || !strings.Contains(notes[0], "offset") {
				t.Fatalf("notes %q", notes)
			}
			// Appending after the repair makes a clean journal.
			addN(t, s, 3, 1)
			s.Close()
			s = openStore(t, dir)
			defer s.Close()
			if s.Index().Len() != 4 || len(s.Notes()) != 0 {
				t.Fatalf("Len %d notes %v after repair", s.Index().Len(), s.Notes())
			}
		})
	}
}

func TestStoreCorruptMiddle(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	addN(t, s, 0, 3)
	s.Close()
	p := filepath.Join(dir, journalFile)
	b, _ := os.ReadFile(p)
	b[12] ^= 0x01 // inside the first record's payload
	os.WriteFile(p, b, 0o600)
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "offset 0") {
		t.Fatalf("Open of a journal damaged in the middle: %v", err)
	}
	// A damaged snapshot is an error too.
	b[12] ^= 0x01
	os.WriteFile(p, b, 0o600)
	sp := filepath.Join(dir, snapshotFile)
	sb, _ := os.ReadFile(sp)
	sb[20] ^= 0x01
	os.WriteFile(sp, sb, 0o600)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("Open with a damaged snapshot: %v", err)
	}
}

func TestStoreFailureInjection(t *testing.T) {
	oldSet := []User{u("old1", 1000), u("old2", 1001)}
	newSet := []User{u("new1", 2000), u("new2", 2001), u("new3", 2002)}
	steps := []string{"snapshot-create", "snapshot-write", "snapshot-sync", "snapshot-rename", "dir-sync", "journal-reset"}
	for i, step := range steps {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir)
			if _, err := s.Replace(oldSet); err != nil {
				t.Fatal(err)
			}
			addN(t, s, 0, 2) // journal entries of the old epoch
			s.hook = func(st string) error {
				if st == step {
					return errors.New("injected failure at " + st)
				}
				return nil
			}
			_, err := s.Replace(newSet)
			if err == nil || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("Replace: %v", err)
			}
			afterRename := i >= 4
			// In memory: the old set if nothing reached the disk, else the
			// new one (what a reopen gives), with writes refused.
			wantLen := 4
			if afterRename {
				wantLen = 3
			}
			if s.Index().Len() != wantLen {
				t.Fatalf("in memory %d users, want %d", s.Index().Len(), wantLen)
			}
			_, aerr := s.Apply(Entry{Op: OpDelete, Name: "old1"})
			if afterRename != (aerr != nil) {
				t.Fatalf("Apply after failure: %v", aerr)
			}
			s.Close()
			s = openStore(t, dir)
			defer s.Close()
			ix := s.Index()
			_, hasOld := ix.ByName("old2")
			_, hasNew := ix.ByName("new1")
			if hasOld == hasNew || (afterRename && !hasNew) {
				t.Fatalf("after reopen: old %v new %v (len %d)", hasOld, hasNew, ix.Len())
			}
			if hasNew && ix.Len() != 3 || hasOld && ix.Len() != 3 { // old set: 4 minus the deleted old1
				t.Fatalf("after reopen: len %d", ix.Len())
			}
			if _, err := os.Stat(filepath.Join(dir, snapshotFile+tmpSuffix)); err == nil {
				t.Fatal("temp snapshot left behind")
			}
		})
	}
	// Journal write and fsync failures: not acknowledged; fsync failure
	// stops writes.
	dir := t.TempDir()
	s := openStore(t, dir)
	addN(t, s, 0, 1)
	s.hook = func(st string) error {
		if st == "journal-write" {
			return errors.New("injected")
		}
		return nil
	}
	if _, err := s.Apply(Entry{Op: OpDelete, Name: "user0"}); err == nil {
		t.Fatal("Apply with failing write succeeded")
	}
	s.hook = nil
	if _, err := s.Apply(Entry{Op: OpDelete, Name: "user0"}); err != nil {
		t.Fatalf("Apply after a failed (and undone) write: %v", err)
	}
	s.hook = func(st string) error {
		if st == "journal-sync" {
			return errors.New("injected")
		}
		return nil
	}
	addErr := func() error {
		_, err := s.Apply(Entry{Op: OpAdd, User: &User{Name: "z", UID: 99, Storage: "s"}})
		return err
	}
	if addErr() == nil {
		t.Fatal("Apply with failing fsync succeeded")
	}
	s.hook = nil
	if err := addErr(); err == nil || !strings.Contains(err.Error(), "refuses writes") {
		t.Fatalf("Apply after failed fsync: %v", err)
	}
	s.Close()
}

// The helper process for TestReplaceKill9: it replaces the set in
// CORREO_DIR_HELPER_DIR with a large new one, over and over, until killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("CORREO_DIR_HELPER_DIR"); dir != "" {
		n, _ := strconv.Atoi(os.Getenv("CORREO_DIR_HELPER_N"))
		s, err := Open(dir)
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(2)
		}
		for round := 0; ; round++ {
			users := markedUsers(n, fmt.Sprintf("set%d", round+1))
			fmt.Println("replacing")
			if _, err := s.Replace(users); err != nil {
				fmt.Println("replace:", err)
				os.Exit(2)
			}
			fmt.Println("replaced")
		}
	}
	os.Exit(m.Run())
}

// markedUsers is a set where every user's gecos names the set.
func markedUsers(n int, mark string) []User {
	users := sampleUsers(n, int64(len(mark)))
	for i := range users {
		users[i].Gecos = mark
	}
	return users
}

func TestReplaceKill9(t *testing.T) {
	n := size(t, 300000, 50000)
	rounds := size(t, 10, 5)
	for round := range rounds {
		dir := t.TempDir()
		s := openStore(t, dir)
		if _, err := s.Replace(markedUsers(1000, "set0")); err != nil {
			t.Fatal(err)
		}
		s.Close()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "CORREO_DIR_HELPER_DIR="+dir, "CORREO_DIR_HELPER_N="+strconv.Itoa(n))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		if !sc.Scan() || sc.Text() != "replacing" {
			t.Fatalf("helper said %q", sc.Text())
		}
		// Kill at a different moment of the Replace each round.
		time.Sleep(time.Duration(round) * 70 * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		s = openStore(t, dir)
		marks := map[string]int{}
		for _, u := range s.Index().All() {
			marks[u.Gecos]++
		}
		s.Close()
		if len(marks) != 1 {
			t.Fatalf("round %d: mixed sets after kill -9: %v", round, marks)
		}
		for mark, cnt := range marks {
			want := n
			if mark == "set0" {
				want = 1000
			}
			if cnt != want {
				t.Fatalf("round %d: set %s has %d users, want %d", round, mark, cnt, want)
			}
			t.Logf("round %d: killed after %d ms: %s intact", round, round*70, mark)
		}
	}
}

func TestSinceWatchCompactReplication(t *testing.T) {
	p := openStore(t, t.TempDir())
	defer p.Close()
	sec := openStore(t, t.TempDir())
	defer sec.Close()
	if _, err := p.Replace([]User{u("juan", 1000)}); err != nil {
		t.Fatal(err)
	}
	// Full resync of the secondary from the snapshot stream.
	var buf bytes.Buffer
	ep, sq, err := p.SnapshotTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := sec.ResetFrom(&buf); err != nil {
		t.Fatal(err)
	}
	if e, s := sec.Generation(); e != ep || s != sq {
		t.Fatalf("secondary at %d/%d, want %d/%d", e, s, ep, sq)
	}
	w := p.Watch()
	select {
	case <-w:
		t.Fatal("watch fired without a change")
	default:
	}
	addN(t, p, 0, 5)
	select {
	case <-w:
	default:
		t.Fatal("watch did not fire")
	}
	es, err := p.Since(ep, 2)
	if err != nil || len(es) != 3 || es[0].Seq != 3 {
		t.Fatalf("Since(2) = %v, %v", es, err)
	}
	if es, err := p.Since(ep, 5); err != nil || es != nil {
		t.Fatalf("Since(current) = %v, %v", es, err)
	}
	if _, err := p.Since(ep+1, 0); !errors.Is(err, ErrResync) {
		t.Fatalf("Since(other epoch) = %v", err)
	}
	if _, err := p.Since(ep, 9); !errors.Is(err, ErrResync) {
		t.Fatalf("Since(ahead) = %v", err)
	}
	// The secondary follows.
	all, _ := p.Since(sec.Generation())
	for _, e := range all {
		if err := sec.ApplyReplicated(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := sec.ApplyReplicated(all[0]); !errors.Is(err, ErrResync) {
		t.Fatalf("replayed entry: %v", err)
	}
	bad := all[0]
	bad.Epoch++
	if err := sec.ApplyReplicated(bad); !errors.Is(err, ErrResync) {
		t.Fatalf("entry of another epoch: %v", err)
	}
	modelOf(p.Index()).check(t, sec.Index(), "secondary")
	// Compact keeps Since working.
	if err := p.Compact(); err != nil {
		t.Fatal(err)
	}
	if p.JournalSize() != 0 {
		t.Fatal("journal not emptied by Compact")
	}
	if es, err := p.Since(ep, 1); err != nil || len(es) != 4 {
		t.Fatalf("Since after Compact = %d entries, %v", len(es), err)
	}
	// A Replace starts a new epoch: the secondary must resync.
	w = p.Watch()
	if _, err := p.Replace([]User{u("ana", 1)}); err != nil {
		t.Fatal(err)
	}
	<-w
	if _, err := p.Since(ep, 5); !errors.Is(err, ErrResync) {
		t.Fatalf("Since after Replace: %v", err)
	}
	// After Compact and reopen, a secondary far behind gets ErrResync.
	e3, _ := p.Generation()
	addN(t, p, 100, 2)
	if err := p.Compact(); err != nil {
		t.Fatal(err)
	}
	dir := p.dir
	p.Close()
	p = openStore(t, dir)
	if _, err := p.Since(e3, 0); !errors.Is(err, ErrResync) {
		t.Fatalf("Since across a reopened compaction: %v", err)
	}
	if p.Index().Len() != 3 {
		t.Fatalf("Len %d after compact+reopen", p.Index().Len())
	}
	// Reset with a []User (the other resync path).
	if err := sec.Reset(e3, 2, p.Index().All()); err != nil {
		t.Fatal(err)
	}
	modelOf(p.Index()).check(t, sec.Index(), "after Reset")
}

func TestStoreBackgroundRebuild(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if _, err := s.Replace(sampleUsers(2000, 5)); err != nil {
		t.Fatal(err)
	}
	s.overlayLimit = 16
	m := modelOf(s.Index())
	r := rand.New(rand.NewPCG(9, 9))
	for range 400 {
		e := randomEntry(r, m)
		if e.Op == OpAdd {
			e.User.UID += 100000
		}
		if _, err := s.Apply(e); err == nil {
			applyModel(m, mustNormalize(t, e))
		}
	}
	s.wg.Wait()
	if ov := s.Index().ov.size(); ov >= 400 {
		t.Fatalf("overlay never folded: %d", ov)
	}
	m.check(t, s.Index(), "after background rebuilds")
	s.Close()
	s = openStore(t, dir)
	defer s.Close()
	m.check(t, s.Index(), "after reopen")
}

func loadedStore(b *testing.B, n int) (*Store, string) {
	dir := b.TempDir()
	s := openStore(b, dir)
	if _, err := s.Replace(sampleUsers(n, 1)); err != nil {
		b.Fatal(err)
	}
	return s, dir
}

// BenchmarkSnapshotLoad1M measures Open of a store holding 1 M users.
func BenchmarkSnapshotLoad1M(b *testing.B) {
	s, dir := loadedStore(b, 1000000)
	s.Close()
	fi, _ := os.Stat(filepath.Join(dir, snapshotFile))
	for b.Loop() {
		start := time.Now()
		s := openStore(b, dir)
		b.ReportMetric(time.Since(start).Seconds(), "load-s")
		s.Close()
	}
	b.ReportMetric(float64(fi.Size())/(1<<20), "snapshotMB")
}

// BenchmarkApply1M measures an admin change (validation, journal append,
// fsync, new index with the overlay) on a 1 M-user store, including the
// background rebuilds the overlay triggers every 4096 changed users.
func BenchmarkApply1M(b *testing.B) {
	s, _ := loadedStore(b, 1000000)
	defer s.Close()
	names := usersample.Generate(1000000, 1)
	i := 0
	var worst time.Duration
	for b.Loop() {
		q := int64(i)
		start := time.Now()
		if _, err := s.Apply(Entry{Op: OpModify, Name: names[(i*7919)%len(names)], Patch: &Patch{Quota: &q}}); err != nil {
			b.Fatal(err)
		}
		worst = max(worst, time.Since(start))
		i++
	}
	b.ReportMetric(float64(worst.Microseconds()), "worst-µs")
}
