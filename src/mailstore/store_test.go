package mailstore

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"correo/src/mailbox"
)

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "Maildir"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func deliver(t testing.TB, root, body string) mailbox.Delivered {
	t.Helper()
	d, err := mailbox.New(root).Deliver(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func uidsOf(mb *Mailbox) []uint32 {
	var out []uint32
	for _, m := range mb.Messages() {
		out = append(out, m.UID)
	}
	return out
}

func mustSelect(t testing.TB, s *Store, name string) *Mailbox {
	t.Helper()
	mb, err := s.Select(name)
	if err != nil {
		t.Fatal(err)
	}
	return mb
}

func TestUIDsInDeliveryOrderAndKeptAcrossReopen(t *testing.T) {
	s := newStore(t)
	for i := 0; i < 7; i++ {
		deliver(t, s.Root(), fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))
	}
	// Deliveries of one second are ordered by key, as mailbox.List (and
	// so pop3d) orders them: IMAP and POP number a mailbox alike.
	listed, err := mailbox.New(s.Root()).List()
	if err != nil {
		t.Fatal(err)
	}
	mb := mustSelect(t, s, "inbox")
	if mb.Len() != 7 {
		t.Fatalf("Len = %d, want 7", mb.Len())
	}
	for i, m := range mb.Messages() {
		if m.UID != uint32(i+1) || m.Key != listed[i].Key {
			t.Fatalf("message %d: UID %d key %s, want UID %d key %s", i+1, m.UID, m.Key, i+1, listed[i].Key)
		}
		if m.sub != "cur" {
			t.Errorf("UID %d still in %s/ after SELECT", m.UID, m.sub)
		}
	}
	if mb.UIDNext() != 8 || mb.UIDValidity() == 0 {
		t.Fatalf("UIDNEXT %d UIDVALIDITY %d", mb.UIDNext(), mb.UIDValidity())
	}
	// A fresh Store (another process) sees the same UIDs and UIDVALIDITY.
	s2, err := Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	mb2 := mustSelect(t, s2, Inbox)
	if !reflect.DeepEqual(uidsOf(mb2), uidsOf(mb)) || mb2.UIDValidity() != mb.UIDValidity() {
		t.Fatalf("after reopen: UIDs %v validity %d, want %v %d", uidsOf(mb2), mb2.UIDValidity(), uidsOf(mb), mb.UIDValidity())
	}
	for i, m := range mb2.Messages() {
		if m.Key != mb.Messages()[i].Key {
			t.Fatalf("UID %d now names %s, was %s", m.UID, m.Key, mb.Messages()[i].Key)
		}
	}
}

func TestCorruptOrMissingUIDListIsRebuiltWithNewValidity(t *testing.T) {
	cases := []struct {
		name    string
		corrupt func(t *testing.T, path string)
	}{
		{"missing", func(t *testing.T, p string) { os.Remove(p) }},
		{"empty", func(t *testing.T, p string) { os.WriteFile(p, nil, 0o600) }},
		{"truncated", func(t *testing.T, p string) {
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)-10], 0o600)
		}},
		{"garbage", func(t *testing.T, p string) { os.WriteFile(p, []byte("\x00\xffnot a list\n"), 0o600) }},
		{"duplicate key", func(t *testing.T, p string) {
			data, _ := os.ReadFile(p)
			lines := strings.Split(string(data), "\n")
			// line 1 is message UID 1; make UID 2's key the same.
			f1 := strings.SplitN(lines[1], " ", 7)
			f2 := strings.SplitN(lines[2], " ", 7)
			f2[6] = f1[6]
			lines[2] = strings.Join(f2, " ")
			os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o600)
		}},
		{"UID above UIDNEXT", func(t *testing.T, p string) {
			data, _ := os.ReadFile(p)
			s := strings.Replace(string(data), "\n3 ", "\n99 ", 1)
			os.WriteFile(p, []byte(s), 0o600)
		}},
		{"a directory", func(t *testing.T, p string) {
			os.Remove(p)
			os.Mkdir(p, 0o700)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			for i := 0; i < 3; i++ {
				deliver(t, s.Root(), "Subject: x\n\nx\n")
			}
			mb := mustSelect(t, s, Inbox)
			old := mb.UIDValidity()
			tc.corrupt(t, filepath.Join(s.Root(), uidlistFile))
			if tc.name == "a directory" {
				// Not replaceable by rename: an error, not a crash and
				// not a silent reuse of UIDs.
				s2, _ := Open(s.Root())
				if _, err := s2.Select(Inbox); err == nil {
					t.Fatal("Select over a directory named correo-uidlist succeeded")
				}
				return
			}
			s2, err := Open(s.Root())
			if err != nil {
				t.Fatal(err)
			}
			mb2 := mustSelect(t, s2, Inbox)
			if mb2.UIDValidity() <= old {
				t.Fatalf("UIDVALIDITY %d after rebuild, want above %d", mb2.UIDValidity(), old)
			}
			if mb2.Len() != 3 || !reflect.DeepEqual(uidsOf(mb2), []uint32{1, 2, 3}) {
				t.Fatalf("after rebuild: UIDs %v", uidsOf(mb2))
			}
			// The session that had the old list learns it must resync.
			if _, err := mb.Refresh(true); !errors.Is(err, ErrUIDValidity) {
				t.Fatalf("old session's Refresh: %v, want ErrUIDValidity", err)
			}
		})
	}
}

func TestLeftoverTmpUIDListIsIgnored(t *testing.T) {
	s := newStore(t)
	deliver(t, s.Root(), "a\n")
	mb := mustSelect(t, s, Inbox)
	// A crash between writing the tmp file and renaming it.
	if err := os.WriteFile(filepath.Join(s.Root(), uidlistFile+".tmp"), []byte("correo-uidlist 1 V1 N1 M1 G1 F0\nend 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, _ := Open(s.Root())
	mb2 := mustSelect(t, s2, Inbox)
	if mb2.UIDValidity() != mb.UIDValidity() || !reflect.DeepEqual(uidsOf(mb2), []uint32{1}) {
		t.Fatalf("validity %d UIDs %v, want %d [1]", mb2.UIDValidity(), uidsOf(mb2), mb.UIDValidity())
	}
	deliver(t, s.Root(), "b\n")
	if _, err := mb2.Refresh(true); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(s.Root(), uidlistFile)); err != nil || !strings.HasPrefix(string(data), uidlistMagic) {
		t.Fatalf("list after a write over the leftover: %q %v", data, err)
	}
}

func TestDeliveryAndPOPDeleteSeenByRefresh(t *testing.T) {
	s := newStore(t)
	d1 := deliver(t, s.Root(), "one\n")
	deliver(t, s.Root(), "two\n")
	mb := mustSelect(t, s, Inbox)
	ms0 := mb.HighestModSeq()

	d3 := deliver(t, s.Root(), "three\n")
	up, err := mb.Refresh(true)
	if err != nil {
		t.Fatal(err)
	}
	if up.New != 1 || up.Exists != 3 || mb.UIDAt(3) != 3 || mb.Messages()[2].Key != d3.Key {
		t.Fatalf("after delivery: %+v, UIDs %v", up, uidsOf(mb))
	}

	// Two deliveries in one second are ordered by key, not by time: find
	// which UID "one" got.
	var seq1 int
	var uid1 uint32
	for i, m := range mb.Messages() {
		if m.Key == d1.Key {
			seq1, uid1 = i+1, m.UID
		}
	}
	// What pop3d does at QUIT for a DELEted message: unlink it where its
	// own listing saw it (cur/ after its login moved it).
	md := mailbox.New(s.Root())
	list, _ := md.List()
	for _, m := range list {
		if m.Key == d1.Key {
			if err := md.Delete(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Not allowed to expunge now (a FETCH is running): it stays.
	up, err = mb.Refresh(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(up.Expunged) != 0 || mb.Len() != 3 {
		t.Fatalf("Refresh(false) announced %v, Len %d", up.Expunged, mb.Len())
	}
	up, err = mb.Refresh(true)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Expunged{{Seq: seq1, UID: uid1}}; !reflect.DeepEqual(up.Expunged, want) {
		t.Fatalf("Expunged %v, want %v", up.Expunged, want)
	}
	_, vanished, err := mb.Changes(ms0)
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.FormatUint(uint64(uid1), 10); vanished.String() != want {
		t.Fatalf("VANISHED since %d = %q, want %s", ms0, vanished, want)
	}
	if mb.HighestModSeq() <= ms0 {
		t.Fatal("HIGHESTMODSEQ did not grow with the expunge")
	}
}

func TestFlagsRoundTripThroughFileNames(t *testing.T) {
	cases := []struct {
		flags   []string
		letters string
		want    []string
	}{
		{nil, "", []string{}},
		{[]string{`\Seen`}, "S", []string{`\Seen`}},
		{[]string{`\deleted`, `\SEEN`, `\Answered`}, "RST", []string{`\Answered`, `\Seen`, `\Deleted`}},
		{[]string{`\Draft`, `\Flagged`}, "DF", []string{`\Draft`, `\Flagged`}},
		{[]string{`$Forwarded`}, "P", []string{`$Forwarded`}},
		{[]string{`$Junk`, `\Seen`, `Work`}, "Sab", []string{`\Seen`, `$Junk`, `Work`}},
		{[]string{`work`, `$junk`}, "ab", []string{`$Junk`, `Work`}}, // keywords are case-insensitive
	}
	s := newStore(t)
	if err := s.Create("F"); err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		uid, _, err := s.Append("F", tc.flags, time.Time{}, strings.NewReader("x\n"))
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		names, _ := readNames(filepath.Join(s.Root(), ".F", "cur"))
		var name string
		for _, n := range names {
			if mb := mustSelect(t, s, "F"); mb.Messages()[mb.Seq(uid)-1].name == n {
				name = n
			}
		}
		if !strings.HasSuffix(name, ":2,"+tc.letters) {
			t.Errorf("case %d: file %q, want info :2,%s", i, name, tc.letters)
		}
		s2, _ := Open(s.Root())
		mb := mustSelect(t, s2, "F")
		m := mb.Messages()[mb.Seq(uid)-1]
		got := mb.Flags(&m)
		sort.Strings(got)
		want := append([]string{}, tc.want...)
		sort.Strings(want)
		if len(got) == 0 && len(want) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("case %d: flags %v, want %v", i, got, want)
		}
	}
	for _, bad := range [][]string{{`\Recent`}, {`\Foo`}, {"a b"}, {"x(y"}, {""}} {
		if _, _, err := s.Append("F", bad, time.Time{}, strings.NewReader("x\n")); err == nil {
			t.Errorf("Append with flags %q succeeded", bad)
		}
	}
}

// pop3UIDL is pop3d's UIDL formula (src/pop3/session.go, unexported
// there): a hash of the Maildir key only.
func pop3UIDL(m mailbox.Message) string {
	sum := sha256.Sum256([]byte(m.Key))
	return fmt.Sprintf("%x", sum[:16])
}

func TestPOPUIDLStableAcrossIMAPFlagChanges(t *testing.T) {
	s := newStore(t)
	for i := 0; i < 3; i++ {
		deliver(t, s.Root(), "m\n")
	}
	md := mailbox.New(s.Root())
	before, _ := md.List()
	mb := mustSelect(t, s, Inbox)
	if _, err := mb.Store([]uint32{1, 2, 3}, OpAdd, []string{`\Seen`, `\Flagged`, "Work"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := mb.Store([]uint32{2}, OpRemove, []string{`\Flagged`}, 0); err != nil {
		t.Fatal(err)
	}
	after, _ := md.List()
	if len(after) != len(before) {
		t.Fatalf("%d messages after, %d before", len(after), len(before))
	}
	for i := range before {
		if pop3UIDL(after[i]) != pop3UIDL(before[i]) {
			t.Errorf("message %d: UIDL %s → %s (name %s → %s)", i+1, pop3UIDL(before[i]), pop3UIDL(after[i]), before[i].Name, after[i].Name)
		}
		if after[i].Dir != "cur" || !strings.Contains(after[i].Name, ":2,FS") && !strings.Contains(after[i].Name, ":2,S") {
			t.Errorf("message %d is %s/%s", i+1, after[i].Dir, after[i].Name)
		}
	}
}

func TestStoreWithUnchangedSince(t *testing.T) {
	s := newStore(t)
	for i := 0; i < 3; i++ {
		deliver(t, s.Root(), "m\n")
	}
	a := mustSelect(t, s, Inbox)
	s2, _ := Open(s.Root())
	b := mustSelect(t, s2, Inbox)
	base := a.HighestModSeq()

	// Session b changes message 2 first.
	if _, err := b.Store([]uint32{2}, OpAdd, []string{`\Flagged`}, 0); err != nil {
		t.Fatal(err)
	}
	res, err := a.Store([]uint32{1, 2, 3}, OpAdd, []string{`\Seen`}, base)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Modified, []uint32{2}) {
		t.Fatalf("Modified %v, want [2]", res.Modified)
	}
	if len(res.Updated) != 2 || res.Updated[0].UID != 1 || res.Updated[1].UID != 3 {
		t.Fatalf("Updated %+v", res.Updated)
	}
	if res.Updated[0].ModSeq <= base || !res.Updated[0].Changed {
		t.Fatalf("Updated[0] %+v: MODSEQ not above %d", res.Updated[0], base)
	}
	// The same again changes nothing and takes no MODSEQ.
	res2, err := a.Store([]uint32{1}, OpAdd, []string{`\Seen`}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Updated[0].Changed || res2.Updated[0].ModSeq != res.Updated[0].ModSeq {
		t.Fatalf("no-op STORE: %+v", res2.Updated[0])
	}
	// Replace keeps nothing of ours but other programs' letters.
	res3, err := a.Store([]uint32{1}, OpReplace, []string{`\Answered`}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res3.Updated[0].Flags, []string{`\Answered`}) {
		t.Fatalf("after replace: %v", res3.Updated[0].Flags)
	}
	// b learns of a's changes through Refresh, as FETCH FLAGS.
	up, err := b.Refresh(true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(up.Changed, []uint32{1, 3}) {
		t.Fatalf("b saw changes %v, want [1 3]", up.Changed)
	}
	changed, _, err := b.Changes(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 3 {
		t.Fatalf("CHANGEDSINCE %d: %d messages, want 3", base, len(changed))
	}
}

func TestFlagRenameByAnotherProgramIsNoticed(t *testing.T) {
	s := newStore(t)
	deliver(t, s.Root(), "m\n")
	mb := mustSelect(t, s, Inbox)
	m := mb.Messages()[0]
	old := filepath.Join(s.Root(), "cur", m.name)
	if err := os.Rename(old, filepath.Join(s.Root(), "cur", m.Key+":2,RS")); err != nil {
		t.Fatal(err)
	}
	up, err := mb.Refresh(true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(up.Changed, []uint32{1}) || mb.Messages()[0].Letters != "RS" || mb.Messages()[0].ModSeq <= m.ModSeq {
		t.Fatalf("Refresh %+v, message %+v", up, mb.Messages()[0])
	}
	// Store on a file whose name we last saw wrong still works (one
	// rescan), and so does Open.
	if err := os.Rename(filepath.Join(s.Root(), "cur", m.Key+":2,RS"), filepath.Join(s.Root(), "cur", m.Key+":2,S")); err != nil {
		t.Fatal(err)
	}
	f, err := mb.Open(1)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	res, err := mb.Store([]uint32{1}, OpAdd, []string{`\Flagged`}, 0)
	if err != nil || len(res.Updated) != 1 {
		t.Fatalf("Store: %+v %v", res, err)
	}
	if mb.Messages()[0].Letters != "FS" {
		t.Fatalf("letters %q, want FS", mb.Messages()[0].Letters)
	}
}

func TestCopyAndMoveReturnCopyUID(t *testing.T) {
	s := newStore(t)
	for i := 0; i < 4; i++ {
		deliver(t, s.Root(), fmt.Sprintf("m%d\n", i))
	}
	if err := s.Create("Archive"); err != nil {
		t.Fatal(err)
	}
	mb := mustSelect(t, s, Inbox)
	if _, err := mb.Store([]uint32{2}, OpAdd, []string{`\Seen`, "Work"}, 0); err != nil {
		t.Fatal(err)
	}
	cu, err := mb.Copy([]uint32{2, 3, 99}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	arch := mustSelect(t, s, "Archive")
	if !reflect.DeepEqual(cu.Src, []uint32{2, 3}) || !reflect.DeepEqual(cu.Dst, []uint32{1, 2}) || cu.UIDValidity != arch.UIDValidity() {
		t.Fatalf("COPYUID %+v, Archive validity %d", cu, arch.UIDValidity())
	}
	m := arch.Messages()[0]
	if got := arch.Flags(&m); !reflect.DeepEqual(got, []string{`\Seen`, "Work"}) {
		t.Fatalf("copied flags %v", got)
	}
	// Hard links: the copy shares the inode.
	src, _ := mb.Path(2)
	dst, _ := arch.Path(1)
	si, _ := os.Stat(src)
	di, _ := os.Stat(dst)
	if !os.SameFile(si, di) {
		t.Error("COPY did not hard-link")
	}
	if di.ModTime().Unix() != mb.Messages()[1].Date {
		t.Error("COPY changed INTERNALDATE")
	}

	cu, ex, err := mb.Move([]uint32{1, 4}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cu.Src, []uint32{1, 4}) || !reflect.DeepEqual(cu.Dst, []uint32{3, 4}) {
		t.Fatalf("MOVE COPYUID %+v", cu)
	}
	if want := []Expunged{{1, 1}, {3, 4}}; !reflect.DeepEqual(ex, want) {
		t.Fatalf("MOVE expunges %v, want %v", ex, want)
	}
	if !reflect.DeepEqual(uidsOf(mb), []uint32{2, 3}) {
		t.Fatalf("INBOX after MOVE: %v", uidsOf(mb))
	}
	if _, err := arch.Refresh(true); err != nil {
		t.Fatal(err)
	}
	if arch.Len() != 4 {
		t.Fatalf("Archive has %d, want 4", arch.Len())
	}
	// MOVE keeps the key (POP UIDL survives a round trip through a folder).
	moved := arch.Messages()[2]
	if _, _, err := arch.Move([]uint32{moved.UID}, Inbox); err != nil {
		t.Fatal(err)
	}
	if _, err := mb.Refresh(true); err != nil {
		t.Fatal(err)
	}
	last := mb.Messages()[mb.Len()-1]
	if last.Key != moved.Key {
		t.Errorf("key after moving back: %s, was %s", last.Key, moved.Key)
	}
	if _, err := mb.Copy([]uint32{2}, "Nope"); !errors.Is(err, ErrNoFolder) {
		t.Fatalf("COPY to a missing folder: %v, want ErrNoFolder", err)
	}
	// COPY into the selected folder itself.
	cu, err = mb.Copy([]uint32{2}, Inbox)
	if err != nil || len(cu.Dst) != 1 || cu.Dst[0] < mb.UIDNext() {
		t.Fatalf("self COPY %+v %v", cu, err)
	}
}

func TestExpungeLogForVanished(t *testing.T) {
	s := newStore(t)
	for i := 0; i < 6; i++ {
		deliver(t, s.Root(), "m\n")
	}
	mb := mustSelect(t, s, Inbox)
	m0 := mb.HighestModSeq()
	mb.Store([]uint32{2, 3, 5}, OpAdd, []string{`\Deleted`}, 0)
	ex, err := mb.Expunge([]uint32{2, 3}) // UID EXPUNGE: 5 stays
	if err != nil {
		t.Fatal(err)
	}
	if want := []Expunged{{2, 2}, {2, 3}}; !reflect.DeepEqual(ex, want) {
		t.Fatalf("UID EXPUNGE %v, want %v", ex, want)
	}
	m1 := mb.HighestModSeq()
	ex, err = mb.Expunge(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Expunged{{3, 5}}; !reflect.DeepEqual(ex, want) {
		t.Fatalf("EXPUNGE %v, want %v", ex, want)
	}
	for _, tc := range []struct {
		since uint64
		want  string
	}{{m0, "2:3,5"}, {m1, "5"}, {mb.HighestModSeq(), ""}} {
		_, v, err := mb.Changes(tc.since)
		if err != nil {
			t.Fatal(err)
		}
		if v.String() != tc.want {
			t.Errorf("VANISHED since %d: %q, want %q", tc.since, v, tc.want)
		}
	}
	// A log trimmed past since: every absent UID below UIDNEXT.
	old := MaxVanished
	MaxVanished = 1
	defer func() { MaxVanished = old }()
	mb.Store([]uint32{6}, OpAdd, []string{`\Deleted`}, 0)
	if _, err := mb.Expunge(nil); err != nil {
		t.Fatal(err)
	}
	_, v, _ := mb.Changes(m0)
	if v.String() != "2:3,5:6" {
		t.Errorf("VANISHED past the log: %q, want 2:3,5:6", v)
	}
	s2, _ := Open(s.Root())
	mb2 := mustSelect(t, s2, Inbox)
	if mb2.UIDValidity() != mb.UIDValidity() || !reflect.DeepEqual(uidsOf(mb2), []uint32{1, 4}) {
		t.Fatalf("after reopen: %v", uidsOf(mb2))
	}
}

func TestAppendIsDurableWithFlagsAndDate(t *testing.T) {
	s := newStore(t)
	date := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	body := "Subject: hi\n\nline\n"
	uid, validity, err := s.Append(Inbox, []string{`\Seen`, `\Draft`}, date, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	mb := mustSelect(t, s, Inbox)
	if uid != 1 || validity != mb.UIDValidity() {
		t.Fatalf("APPENDUID %d %d, folder validity %d", validity, uid, mb.UIDValidity())
	}
	p, _ := mb.Path(uid)
	if filepath.Base(filepath.Dir(p)) != "cur" || !strings.HasSuffix(p, ":2,DS") {
		t.Fatalf("appended file %s", p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(date) {
		t.Errorf("mtime %v, want %v", fi.ModTime(), date)
	}
	m := mb.Messages()[0]
	if m.InternalDate().Unix() != date.Unix() || m.Size != int64(len(body)+3) {
		t.Errorf("INTERNALDATE %v size %d, want %v %d", m.InternalDate(), m.Size, date, len(body)+3)
	}
	// pop3d sees it too, with the right sizes in the name.
	list, _ := mailbox.New(s.Root()).List()
	if len(list) != 1 || list[0].Size != int64(len(body)) || list[0].WireSize != int64(len(body)+3) {
		t.Fatalf("mailbox.List %+v", list)
	}
	if names, _ := readNames(filepath.Join(s.Root(), "tmp")); len(names) != 0 {
		t.Errorf("tmp/ not empty: %v", names)
	}
	if _, _, err := s.Append("Missing", nil, time.Time{}, strings.NewReader("x")); !errors.Is(err, ErrNoFolder) {
		t.Errorf("APPEND to a missing folder: %v", err)
	}
}

func TestFolderCreateRenameDelete(t *testing.T) {
	s := newStore(t)
	step := func(what string, err error, want error) {
		t.Helper()
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", what, err, want)
		}
	}
	step("create A/B/C", s.Create("A/B/C"), nil)
	step("create A again", s.Create("A"), ErrExists)
	step("create inbox", s.Create("inbox"), ErrExists)
	step("create Mr. Smith", s.Create("Mr. Smith"), nil)
	step("delete INBOX", s.Delete("Inbox"), ErrInbox)
	step("delete A (children)", s.Delete("A"), ErrHasChildren)
	step("delete missing", s.Delete("Zed"), ErrNoFolder)
	step("rename A to A/X", s.Rename("A", "A/X"), ErrUnderItself)
	step("rename to INBOX", s.Rename("A", "INBOX"), ErrInbox)
	step("rename onto existing", s.Rename("A", "Mr. Smith"), ErrExists)
	step("rename missing", s.Rename("Zed", "Q"), ErrNoFolder)
	if _, err := os.Stat(filepath.Join(s.Root(), ".Mr%2E Smith", markerFile)); err != nil {
		t.Fatalf("dotted folder on disk: %v", err)
	}
	uid, _, err := s.Append("A/B", []string{`\Seen`}, time.Time{}, strings.NewReader("x\n"))
	step("append A/B", err, nil)
	mbAB := mustSelect(t, s, "A/B")
	step("rename A to Z/Y", s.Rename("A", "Z/Y"), nil)
	names := folderList(t, s)
	want := "INBOX Mr. Smith Z Z/Y Z/Y/B Z/Y/B/C"
	if names != want {
		t.Fatalf("after rename: %s, want %s", names, want)
	}
	mb := mustSelect(t, s, "Z/Y/B")
	if mb.UIDAt(1) != uid || mb.UIDValidity() != mbAB.UIDValidity() {
		t.Fatalf("renamed folder lost its list: %v validity %d", uidsOf(mb), mb.UIDValidity())
	}
	// The old session's folder is gone.
	if _, err := mbAB.Refresh(true); !errors.Is(err, ErrNoFolder) {
		t.Fatalf("Refresh of a renamed-away folder: %v", err)
	}
	// A folder made again under an old name never reuses a UIDVALIDITY.
	step("create A/B", s.Create("A/B"), nil)
	if nb := mustSelect(t, s, "A/B"); nb.UIDValidity() == mbAB.UIDValidity() {
		t.Fatal("new folder reuses the old UIDVALIDITY")
	}
	step("delete Z/Y/B/C", s.Delete("Z/Y/B/C"), nil)
	step("delete Z/Y/B", s.Delete("Z/Y/B"), nil)
	if names := folderList(t, s); names != "A A/B INBOX Mr. Smith Z Z/Y" && names != "INBOX A A/B Mr. Smith Z Z/Y" {
		t.Fatalf("after deletes: %s", names)
	}

	// RENAME INBOX: messages move, INBOX stays (empty), its children stay.
	deliver(t, s.Root(), "one\n")
	deliver(t, s.Root(), "two\n")
	step("create INBOX/kid", s.Create("INBOX/kid"), nil)
	step("rename INBOX", s.Rename("INBOX", "Old"), nil)
	if mb := mustSelect(t, s, Inbox); mb.Len() != 0 {
		t.Fatalf("INBOX has %d after RENAME INBOX", mb.Len())
	}
	if mb := mustSelect(t, s, "Old"); mb.Len() != 2 {
		t.Fatalf("Old has %d, want 2", mb.Len())
	}
	if !strings.Contains(folderList(t, s), "INBOX/kid") {
		t.Fatal("INBOX/kid moved with RENAME INBOX")
	}
}

func folderList(t *testing.T, s *Store) string {
	t.Helper()
	fs, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, f := range fs {
		n = append(n, f.Name)
	}
	return strings.Join(n, " ")
}

func TestHostileFolderNames(t *testing.T) {
	s := newStore(t)
	bad := []string{
		"", "..", ".", "a/..", "../x", "a/../../etc", "/", "/a", "a/", "a//b", "a\x00b", "a\nb", "a\rb",
		"tab\there", "del\x7f", "a*", "b%", strings.Repeat("x", MaxNameLen+1), "\xff\xfe",
		strings.Repeat("a/", maxDepth) + "a", strings.Repeat("..........", 19),
	}
	for _, name := range bad {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			var ne *NameError
			for what, err := range map[string]error{
				"Create": s.Create(name),
				"Delete": s.Delete(name),
				"Rename": s.Rename(name, "ok"),
				"Rename to": func() error {
					s.Create("src")
					return s.Rename("src", name)
				}(),
			} {
				if !errors.As(err, &ne) {
					t.Errorf("%s(%q): %v, want a NameError", what, name, err)
				}
			}
			if _, err := s.Select(name); !errors.As(err, &ne) {
				t.Errorf("Select(%q): %v", name, err)
			}
			if _, _, err := s.Append(name, nil, time.Time{}, strings.NewReader("x")); !errors.As(err, &ne) {
				t.Errorf("Append(%q): %v", name, err)
			}
		})
	}
	// Nothing was created outside the root, and inside it only "src".
	ents, _ := os.ReadDir(filepath.Dir(s.Root()))
	if len(ents) != 1 {
		t.Errorf("entries beside the Maildir: %v", ents)
	}
	// Dots, spaces and non-ASCII are fine and stay inside the root.
	for _, ok := range []string{".hidden", "a.b", "...x", "Ünïcödé/子", "x."} {
		if err := s.Create(ok); err != nil {
			t.Errorf("Create(%q): %v", ok, err)
			continue
		}
		dir, _ := folderPath(s.Root(), ok)
		if filepath.Dir(dir) != s.Root() || strings.Count(filepath.Base(dir), "..") > 0 {
			t.Errorf("%q stored as %s", ok, dir)
		}
		if n, ok2 := nameOfDir(filepath.Base(dir)); !ok2 || n != ok {
			t.Errorf("%q does not come back from %s (got %q)", ok, dir, n)
		}
	}
}

func TestEnsureDefaultsOnceWithSpecialUse(t *testing.T) {
	s := newStore(t)
	if err := s.EnsureDefaults(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	fs, _ := s.List()
	for _, f := range fs {
		got[f.Name] = strings.Join(f.Attrs, " ")
	}
	want := map[string]string{
		"INBOX":  `\HasNoChildren`,
		"Sent":   `\HasNoChildren \Sent`,
		"Drafts": `\HasNoChildren \Drafts`,
		"Trash":  `\HasNoChildren \Trash`,
		"Junk":   `\HasNoChildren \Junk`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("List %v, want %v", got, want)
	}
	if err := s.Delete("Junk"); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureDefaults(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(folderList(t, s), "Junk") {
		t.Fatal("a deleted default came back")
	}
	if err := s.SetSpecialUse("Drafts", UseSent); !errors.Is(err, ErrSpecialInUse) {
		t.Fatalf("second \\Sent: %v", err)
	}
	// Special use travels with RENAME.
	if err := s.Rename("Sent", "Sent Items"); err != nil {
		t.Fatal(err)
	}
	fs, _ = s.List()
	for _, f := range fs {
		if f.Name == "Sent Items" && f.SpecialUse != UseSent {
			t.Fatalf("renamed Sent: %+v", f)
		}
	}
}

func TestListShowsMissingParentsAsNoselect(t *testing.T) {
	s := newStore(t)
	if err := s.Create("a/b"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(s.Root(), ".a"), filepath.Join(s.Root(), ".zz")); err != nil {
		t.Fatal(err)
	}
	fs, _ := s.List()
	for _, f := range fs {
		if f.Name == "a" && strings.Join(f.Attrs, " ") != `\NonExistent \Noselect \HasChildren` {
			t.Fatalf("missing parent: %+v", f)
		}
	}
}

func TestStatusAndUsage(t *testing.T) {
	s := newStore(t)
	deliver(t, s.Root(), "12345\n")
	deliver(t, s.Root(), "abc\r\n")
	if err := s.Create("F"); err != nil {
		t.Fatal(err)
	}
	s.Append("F", []string{`\Seen`, `\Deleted`}, time.Time{}, strings.NewReader("xy\n"))
	st, err := s.Status(Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if st.Messages != 2 || st.Unseen != 2 || st.Deleted != 0 || st.UIDNext != 3 || st.Size != 7+5 || st.HighestModSeq == 0 {
		t.Fatalf("INBOX status %+v", st)
	}
	// STATUS does not move new/ to cur/: that is for the user's eyes.
	if names, _ := readNames(filepath.Join(s.Root(), "new")); len(names) != 2 {
		t.Fatalf("new/ holds %d after STATUS", len(names))
	}
	st, _ = s.Status("F")
	if st.Messages != 1 || st.Unseen != 0 || st.Deleted != 1 || st.Size != 4 {
		t.Fatalf("F status %+v", st)
	}
	u, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u != 6+5+3 {
		t.Fatalf("Usage %d, want 14 (S= of every message in every folder)", u)
	}
	if _, err := s.Status("nope"); !errors.Is(err, ErrNoFolder) {
		t.Fatalf("Status of a missing folder: %v", err)
	}
}

func TestReadOnlyExamine(t *testing.T) {
	s := newStore(t)
	deliver(t, s.Root(), "x\n")
	mb, err := s.Examine(Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mb.Store([]uint32{1}, OpAdd, []string{`\Seen`}, 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Store on EXAMINE: %v", err)
	}
	if _, err := mb.Expunge(nil); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Expunge on EXAMINE: %v", err)
	}
	if names, _ := readNames(filepath.Join(s.Root(), "new")); len(names) != 1 {
		t.Fatal("EXAMINE moved new/ to cur/")
	}
}

func TestKeywordLimitAndTable(t *testing.T) {
	s := newStore(t)
	deliver(t, s.Root(), "m\n")
	mb := mustSelect(t, s, Inbox)
	for i := 0; i < maxKeywords; i++ {
		if _, err := mb.Store([]uint32{1}, OpAdd, []string{fmt.Sprintf("kw%02d", i)}, 0); err != nil {
			t.Fatalf("keyword %d: %v", i, err)
		}
	}
	if mb.CanCreateKeywords() {
		t.Fatal("CanCreateKeywords with 26 keywords")
	}
	if _, err := mb.Store([]uint32{1}, OpAdd, []string{"one-too-many"}, 0); !errors.Is(err, ErrTooManyKeywords) {
		t.Fatalf("27th keyword: %v", err)
	}
	// Existing keywords still work, in any case.
	if _, err := mb.Store([]uint32{1}, OpRemove, []string{"KW00"}, 0); err != nil {
		t.Fatal(err)
	}
	s2, _ := Open(s.Root())
	mb2 := mustSelect(t, s2, Inbox)
	if got := len(mb2.Keywords()); got != maxKeywords {
		t.Fatalf("%d keywords after reopen", got)
	}
	m := mb2.Messages()[0]
	if n := len(mb2.Flags(&m)); n != maxKeywords-1 {
		t.Fatalf("%d flags, want %d", n, maxKeywords-1)
	}
}
