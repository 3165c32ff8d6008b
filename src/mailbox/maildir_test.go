package mailbox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"correo/internal/testutil"
)

// wireSize is the reference W=: every LF not preceded by CR counts double.
func wireSize(b []byte) int64 {
	n := int64(len(b))
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			n++
		}
	}
	return n
}

func withHook(t *testing.T, h func(string) error) {
	t.Helper()
	old := testHookAfterWrite
	testHookAfterWrite = h
	t.Cleanup(func() { testHookAfterWrite = old })
}

var nameRE = regexp.MustCompile(`^(\d+)\.M(\d+)P(\d+)Q(\d+)R([0-9a-f]{16})\.([^/:,]+),S=(\d+),W=(\d+)$`)

func TestDeliverCreatesMaildir(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "j", "u", "a", "juan", "Maildir")
	m := New(path)
	msg := []byte("From: a@example.com\nSubject: hi\n\nbody\r\nline\n")
	d, err := m.Deliver(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	sub := nameRE.FindStringSubmatch(d.Name)
	if sub == nil {
		t.Fatalf("name %q does not follow the Maildir unique-name format", d.Name)
	}
	if sub[3] != strconv.Itoa(os.Getpid()) {
		t.Errorf("name %q: P part is not this pid", d.Name)
	}
	if sub[7] != strconv.Itoa(len(msg)) || sub[8] != strconv.FormatInt(wireSize(msg), 10) {
		t.Errorf("name %q: want S=%d W=%d", d.Name, len(msg), wireSize(msg))
	}
	if d.Size != int64(len(msg)) || d.WireSize != wireSize(msg) || d.Key != d.Name || d.Maildir != path {
		t.Errorf("Delivered = %+v", d)
	}
	if d.Path != filepath.Join(path, "new", d.Name) {
		t.Errorf("Delivered.Path = %q", d.Path)
	}
	got, err := os.ReadFile(d.Path)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("content = %q, %v", got, err)
	}
	modes := map[string]os.FileMode{
		path:                          0o700,
		filepath.Join(path, "tmp"):    0o700,
		filepath.Join(path, "new"):    0o700,
		filepath.Join(path, "cur"):    0o700,
		filepath.Join(root, "j"):      0o755,
		filepath.Dir(path):            0o755,
		filepath.Join(root, "j", "u"): 0o755,
		d.Path:                        0o600,
	}
	old := syscall.Umask(0)
	syscall.Umask(old)
	for p, want := range modes {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want&^os.FileMode(old) {
			t.Errorf("%s: mode %o, want %o (umask %o)", p, got, want, old)
		}
	}
	if names := testutil.DirNames(t, filepath.Join(path, "tmp")); len(names) != 0 {
		t.Errorf("tmp/ not empty after delivery: %v", names)
	}
}

func TestEscapeHost(t *testing.T) {
	if got := escapeHost("a/b:c,d.example"); got != `a\057b\072c\054d.example` {
		t.Fatalf("escapeHost = %q", got)
	}
}

// W= must count a CRLF split across two writes once, not as a bare LF.
func TestWireSizeAcrossChunks(t *testing.T) {
	msgs := []string{"", "\n", "\r\n", "a\nb\r\nc\n", "\r\r\n\n", "\n\n\n", "x\r", strings.Repeat("line\r\n", 1000) + "last\n"}
	m := New(filepath.Join(t.TempDir(), "Maildir"))
	for _, s := range msgs {
		for _, r := range []io.Reader{strings.NewReader(s), iotest.OneByteReader(strings.NewReader(s)), iotest.HalfReader(strings.NewReader(s))} {
			d, err := m.Deliver(r)
			if err != nil {
				t.Fatal(err)
			}
			if d.Size != int64(len(s)) || d.WireSize != wireSize([]byte(s)) {
				t.Errorf("%q: S=%d W=%d, want %d %d", s, d.Size, d.WireSize, len(s), wireSize([]byte(s)))
			}
		}
	}
}

func TestDeliverConcurrent(t *testing.T) {
	const n = 200
	m := New(filepath.Join(t.TempDir(), "x", "Maildir"))
	var wg sync.WaitGroup
	results := make([]Delivered, n)
	errs := make([]error, n)
	bodies := make([][]byte, n)
	for i := range n {
		// Mixed line endings and sizes so a wrong S= or W= shows.
		bodies[i] = []byte(fmt.Sprintf("Subject: %d\n\r\n%s", i, strings.Repeat("x\n", i)+strings.Repeat("y\r\n", i%7)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = m.Deliver(bytes.NewReader(bodies[i]))
		}()
	}
	wg.Wait()
	seen := make(map[string]bool)
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		d := results[i]
		if seen[d.Name] {
			t.Fatalf("name %q used twice", d.Name)
		}
		seen[d.Name] = true
		got, err := os.ReadFile(d.Path)
		if err != nil || !bytes.Equal(got, bodies[i]) {
			t.Fatalf("delivery %d content mismatch: %v", i, err)
		}
	}
	list, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("List returned %d messages, want %d", len(list), n)
	}
	for _, msg := range list {
		if !seen[msg.Name] {
			t.Fatalf("listed unknown message %q", msg.Name)
		}
		body, err := os.ReadFile(filepath.Join(m.Path, msg.Dir, msg.Name))
		if err != nil {
			t.Fatal(err)
		}
		if msg.Size != int64(len(body)) || msg.WireSize != wireSize(body) {
			t.Errorf("%s: S=%d W=%d, content gives %d %d", msg.Name, msg.Size, msg.WireSize, len(body), wireSize(body))
		}
	}
	if names := testutil.DirNames(t, filepath.Join(m.Path, "tmp")); len(names) != 0 {
		t.Errorf("tmp/ not empty: %v", names)
	}
}

func nlink(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(fi.Sys().(*syscall.Stat_t).Nlink)
}

func TestDeliverMany(t *testing.T) {
	root := t.TempDir()
	var boxes []*Maildir
	for _, u := range []string{"ana", "juan", "maria"} {
		p, _ := First3.MaildirPath(root, u)
		boxes = append(boxes, New(p))
	}
	msg := []byte("Subject: all\n\nto three\n")
	ds, err := DeliverMany(boxes, bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 {
		t.Fatalf("got %d results", len(ds))
	}
	for i, d := range ds {
		if d.Maildir != boxes[i].Path || d.Size != int64(len(msg)) || d.WireSize != wireSize(msg) {
			t.Errorf("box %d: %+v", i, d)
		}
		got, err := os.ReadFile(d.Path)
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("box %d content %q, %v", i, got, err)
		}
		// One write, three names: the spool file in tmp/ is gone, so each
		// link count is exactly the number of boxes.
		if n := nlink(t, d.Path); n != 3 {
			t.Errorf("box %d: link count %d, want 3", i, n)
		}
		if names := testutil.DirNames(t, filepath.Join(boxes[i].Path, "tmp")); len(names) != 0 {
			t.Errorf("box %d: tmp/ not empty: %v", i, names)
		}
	}
	if errs := BoxErrors(err, 3); slices.ContainsFunc(errs, func(e error) bool { return e != nil }) {
		t.Errorf("BoxErrors(nil) = %v", errs)
	}
}

func TestDeliverManyPartialFailure(t *testing.T) {
	root := t.TempDir()
	blocker := filepath.Join(root, "file")
	if err := os.WriteFile(blocker, []byte("not a dir"), 0o600); err != nil {
		t.Fatal(err)
	}
	good1 := New(filepath.Join(root, "a", "Maildir"))
	bad := New(filepath.Join(blocker, "Maildir")) // parent is a regular file
	good2 := New(filepath.Join(root, "b", "Maildir"))
	boxes := []*Maildir{bad, good1, bad, good2, good1}
	ds, err := DeliverMany(boxes, strings.NewReader("hello\n"))
	var me *ManyError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v, want *ManyError", err)
	}
	errs := BoxErrors(err, len(boxes))
	for i, want := range []bool{true, false, true, false, false} {
		if (errs[i] != nil) != want {
			t.Errorf("box %d: error %v, want failure=%v", i, errs[i], want)
		}
		if !want && ds[i].Name == "" {
			t.Errorf("box %d: no Delivered", i)
		}
		if want && ds[i].Name != "" {
			t.Errorf("box %d failed but has Delivered %+v", i, ds[i])
		}
	}
	if !strings.Contains(err.Error(), bad.Path) || !strings.Contains(err.Error(), "2 of 5") {
		t.Errorf("error %q does not name the failed box and count", err)
	}
	// The duplicated box got the message once.
	if ds[1] != ds[4] {
		t.Errorf("duplicate box results differ: %+v vs %+v", ds[1], ds[4])
	}
	if names := testutil.DirNames(t, filepath.Join(good1.Path, "new")); len(names) != 1 {
		t.Errorf("good1 new/ = %v", names)
	}
	if got := BoxErrors(errors.New("x"), 2); got[0] == nil || got[1] == nil {
		t.Errorf("BoxErrors of a plain error = %v", got)
	}
}

func TestDeliverManyReadError(t *testing.T) {
	root := t.TempDir()
	boxes := []*Maildir{New(filepath.Join(root, "a")), New(filepath.Join(root, "b"))}
	boom := errors.New("client went away")
	_, err := DeliverMany(boxes, io.MultiReader(strings.NewReader("partial"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want it to wrap the read error", err)
	}
	for i, e := range BoxErrors(err, 2) {
		if e == nil {
			t.Errorf("box %d has no error", i)
		}
	}
	for _, b := range boxes {
		for _, d := range []string{"new", "tmp"} {
			if names := testutil.DirNames(t, filepath.Join(b.Path, d)); len(names) != 0 {
				t.Errorf("%s/%s not empty: %v", b.Path, d, names)
			}
		}
	}
}

func TestDeliverManyHookFailure(t *testing.T) {
	root := t.TempDir()
	boxes := []*Maildir{New(filepath.Join(root, "a")), New(filepath.Join(root, "b"))}
	withHook(t, func(string) error { return errors.New("simulated crash") })
	if _, err := DeliverMany(boxes, strings.NewReader("x")); err == nil {
		t.Fatal("DeliverMany succeeded despite the hook")
	}
	for _, b := range boxes {
		if names := testutil.DirNames(t, filepath.Join(b.Path, "new")); len(names) != 0 {
			t.Errorf("%s/new not empty: %v", b.Path, names)
		}
	}
	if names := testutil.DirNames(t, filepath.Join(root, "a", "tmp")); len(names) != 0 {
		t.Errorf("spool file left in tmp/: %v", names)
	}
}

func TestDeliverReadError(t *testing.T) {
	m := New(filepath.Join(t.TempDir(), "Maildir"))
	boom := errors.New("connection reset")
	_, err := m.Deliver(io.MultiReader(strings.NewReader("half a message"), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), m.Path) {
		t.Fatalf("err = %v, want it to wrap the cause and name the Maildir", err)
	}
	for _, d := range []string{"new", "tmp", "cur"} {
		if names := testutil.DirNames(t, filepath.Join(m.Path, d)); len(names) != 0 {
			t.Errorf("%s/ not empty after a failed delivery: %v", d, names)
		}
	}
}

func TestDeliverHookError(t *testing.T) {
	m := New(filepath.Join(t.TempDir(), "Maildir"))
	boom := errors.New("disk on fire")
	withHook(t, func(string) error { return boom })
	if _, err := m.Deliver(strings.NewReader("x")); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	for _, d := range []string{"new", "tmp"} {
		if names := testutil.DirNames(t, filepath.Join(m.Path, d)); len(names) != 0 {
			t.Errorf("%s/ not empty: %v", d, names)
		}
	}
}

// A crash between the fsync and the rename: the process dies, so nobody
// removes the tmp file. Readers must not see it; CleanTmp removes it once old.
func TestCrashBeforeRename(t *testing.T) {
	m := New(filepath.Join(t.TempDir(), "Maildir"))
	if _, err := m.Deliver(strings.NewReader("earlier\n")); err != nil {
		t.Fatal(err)
	}
	type crash struct{}
	var tmpFile string
	withHook(t, func(p string) error { tmpFile = p; panic(crash{}) })
	func() {
		defer func() {
			if r := recover(); r != (crash{}) {
				t.Fatalf("recovered %v", r)
			}
		}()
		m.Deliver(strings.NewReader("lost in the crash\n"))
	}()
	testHookAfterWrite = nil
	if names := testutil.DirNames(t, filepath.Join(m.Path, "new")); len(names) != 1 {
		t.Fatalf("new/ = %v, want only the earlier message", names)
	}
	if _, err := os.Stat(tmpFile); err != nil {
		t.Fatalf("crash left no tmp file: %v", err)
	}
	if list, _ := m.List(); len(list) != 1 {
		t.Fatalf("List shows %d messages, want 1", len(list))
	}
	if n, err := m.CleanTmp(TmpMaxAge); n != 0 || err != nil {
		t.Fatalf("CleanTmp removed a fresh tmp file: %d, %v", n, err)
	}
	old := time.Now().Add(-TmpMaxAge - time.Hour)
	if err := os.Chtimes(tmpFile, old, old); err != nil {
		t.Fatal(err)
	}
	if n, err := m.CleanTmp(TmpMaxAge); n != 1 || err != nil {
		t.Fatalf("CleanTmp = %d, %v; want 1 removed", n, err)
	}
	if _, err := os.Stat(tmpFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old tmp file still there: %v", err)
	}
	if n, err := New(filepath.Join(t.TempDir(), "none")).CleanTmp(TmpMaxAge); n != 0 || err != nil {
		t.Fatalf("CleanTmp on a missing Maildir = %d, %v", n, err)
	}
}

// A mailbox removed or moved away under a running daemon is recreated.
func TestDeliverRecreates(t *testing.T) {
	m := New(filepath.Join(t.TempDir(), "Maildir"))
	if _, err := m.Deliver(strings.NewReader("1")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(m.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Deliver(strings.NewReader("2")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(m.Path, "new")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Deliver(strings.NewReader("3")); err != nil {
		t.Fatal(err)
	}
	if list, _ := m.List(); len(list) != 1 {
		t.Fatalf("List = %v", list)
	}
}

func TestDeliverBlockedPath(t *testing.T) {
	root := t.TempDir()
	f := filepath.Join(root, "Maildir")
	os.WriteFile(f, nil, 0o600)
	_, err := New(f).Deliver(strings.NewReader("x"))
	if err == nil || !strings.Contains(err.Error(), f) {
		t.Fatalf("err = %v, want one naming %s", err, f)
	}
}

func TestListEmptyAndMissing(t *testing.T) {
	list, err := New(filepath.Join(t.TempDir(), "never", "created")).List()
	if err != nil || len(list) != 0 {
		t.Fatalf("List of a missing Maildir = %v, %v; want empty, nil", list, err)
	}
}

func TestListParsingAndOrder(t *testing.T) {
	m := New(filepath.Join(t.TempDir(), "Maildir"))
	for _, d := range []string{"new", "cur", "tmp"} {
		os.MkdirAll(filepath.Join(m.Path, d), 0o700)
	}
	files := map[string]string{
		"new/300.M1P1Q1.h,S=5,W=6":       "abcd\n",
		"cur/100.M1P1Q1.h,S=3,W=4:2,SR":  "ab\n",
		"cur/200.plain.h:2,":             "no size in name\n", // stat fallback
		"new/20.M9P9Q9.h,S=2":            "a\n",               // numeric, not lexical, order
		"new/.hidden":                    "skip",
		"tmp/50.M1P1Q1.h":                "in progress",
		"cur/150.M1P1Q1.h,S=1,W=1:2,FRS": "x",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(m.Path, p), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	list, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []Message{
		{Dir: "new", Name: "20.M9P9Q9.h,S=2", Key: "20.M9P9Q9.h,S=2", Size: 2, WireSize: -1},
		{Dir: "cur", Name: "100.M1P1Q1.h,S=3,W=4:2,SR", Key: "100.M1P1Q1.h,S=3,W=4", Size: 3, WireSize: 4, Flags: "SR"},
		{Dir: "cur", Name: "150.M1P1Q1.h,S=1,W=1:2,FRS", Key: "150.M1P1Q1.h,S=1,W=1", Size: 1, WireSize: 1, Flags: "FRS"},
		{Dir: "cur", Name: "200.plain.h:2,", Key: "200.plain.h", Size: 16, WireSize: -1},
		{Dir: "new", Name: "300.M1P1Q1.h,S=5,W=6", Key: "300.M1P1Q1.h,S=5,W=6", Size: 5, WireSize: 6},
	}
	if len(list) != len(want) {
		t.Fatalf("List = %+v", list)
	}
	for i := range want {
		got := list[i]
		got.time = 0
		if got != want[i] {
			t.Errorf("List[%d] = %+v, want %+v", i, got, want[i])
		}
	}
}

func TestMoveOpenDelete(t *testing.T) {
	m := New(filepath.Join(t.TempDir(), "Maildir"))
	d, err := m.Deliver(strings.NewReader("hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	list, _ := m.List()
	if len(list) != 1 || list[0].Dir != "new" || list[0].Key != d.Key {
		t.Fatalf("List = %+v", list)
	}
	msg := list[0]
	moved, err := m.MoveToCur(msg)
	if err != nil {
		t.Fatal(err)
	}
	if moved.Dir != "cur" || moved.Name != msg.Name+":2," || moved.Key != msg.Key || moved.Size != 6 || moved.WireSize != 7 {
		t.Fatalf("MoveToCur = %+v", moved)
	}
	// Idempotent: already in cur/.
	if again, err := m.MoveToCur(moved); err != nil || again != moved {
		t.Fatalf("MoveToCur(cur) = %+v, %v", again, err)
	}
	// A stale view (another session moved it meanwhile) still finds it.
	stale, err := m.MoveToCur(msg)
	if err != nil || stale.Name != moved.Name || stale.Dir != "cur" {
		t.Fatalf("MoveToCur(stale) = %+v, %v", stale, err)
	}
	list, _ = m.List()
	if len(list) != 1 || list[0].Key != msg.Key || list[0].Dir != "cur" {
		t.Fatalf("after move List = %+v", list)
	}
	f, err := m.Open(list[0])
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "hello\n" {
		t.Fatalf("Open read %q", b)
	}
	// A stale view (listed in new/, moved since) still opens it.
	if f, err := m.Open(msg); err != nil {
		t.Fatalf("Open of the moved-away new/ name: %v", err)
	} else {
		f.Close()
	}
	if err := m.Delete(list[0]); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(list[0]); err != nil {
		t.Fatalf("second Delete: %v (already deleted must be fine)", err)
	}
	if _, err := m.MoveToCur(msg); err == nil {
		t.Fatal("MoveToCur of a deleted message succeeded")
	}
	if list, _ = m.List(); len(list) != 0 {
		t.Fatalf("after delete List = %+v", list)
	}
	if err := m.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := New(filepath.Join(t.TempDir(), "none")).Sync(); err != nil {
		t.Fatalf("Sync of a missing Maildir: %v", err)
	}
}

// An IMAP session setting a flag renames cur/key:2,S to cur/key:2,FS; a
// POP3 session that listed the old name must still read and delete it, and
// a message another session deleted stays "already gone", not an error.
func TestOpenDeleteAfterFlagRename(t *testing.T) {
	m := New(filepath.Join(t.TempDir(), "Maildir"))
	if _, err := m.Deliver(strings.NewReader("flagged\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Deliver(strings.NewReader("other\n")); err != nil {
		t.Fatal(err)
	}
	list, _ := m.List()
	for i := range list {
		moved, err := m.MoveToCur(list[i])
		if err != nil {
			t.Fatal(err)
		}
		list[i] = moved
	}
	var msg Message
	for _, l := range list {
		if b, _ := os.ReadFile(filepath.Join(m.Path, l.Dir, l.Name)); string(b) == "flagged\n" {
			msg = l
		}
	}
	renamed := filepath.Join(m.Path, "cur", msg.Key+":2,FS")
	if err := os.Rename(filepath.Join(m.Path, "cur", msg.Name), renamed); err != nil {
		t.Fatal(err)
	}
	f, err := m.Open(msg)
	if err != nil {
		t.Fatalf("Open after a flag rename: %v", err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "flagged\n" {
		t.Fatalf("read %q", b)
	}
	if err := m.Delete(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(renamed); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the renamed file survived Delete: %v", err)
	}
	if err := m.Delete(msg); err != nil {
		t.Fatalf("Delete of a message already gone: %v", err)
	}
	if left, _ := m.List(); len(left) != 1 || left[0].Key == msg.Key {
		t.Fatalf("after delete List = %+v", left)
	}
}

func TestHostileMessageNames(t *testing.T) {
	root := t.TempDir()
	m := New(filepath.Join(root, "Maildir"))
	if _, err := m.Deliver(strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(root, "victim")
	os.WriteFile(victim, []byte("keep me"), 0o600)
	hostile := []Message{
		{Dir: "new", Name: "../../victim"},
		{Dir: "cur", Name: "../../victim"},
		{Dir: "new", Name: "/etc/passwd"},
		{Dir: "new", Name: ".."},
		{Dir: "new", Name: "."},
		{Dir: "new", Name: ".hidden"},
		{Dir: "new", Name: ""},
		{Dir: "new", Name: "a\x00b"},
		{Dir: "..", Name: "victim"},
		{Dir: "tmp", Name: "x"},
		{Dir: "", Name: "victim"},
	}
	for _, msg := range hostile {
		if err := m.Delete(msg); err == nil {
			t.Errorf("Delete(%+v) accepted", msg)
		}
		if f, err := m.Open(msg); err == nil {
			f.Close()
			t.Errorf("Open(%+v) accepted", msg)
		}
		if _, err := m.MoveToCur(msg); err == nil {
			t.Errorf("MoveToCur(%+v) accepted", msg)
		}
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
		t.Fatalf("victim file touched: %q, %v", b, err)
	}
}

// Boxes on another file system cannot share a hard link: the message is
// copied there instead. /dev/shm is a tmpfs on Linux, distinct from the
// test's temporary directory unless that is a tmpfs too.
func TestDeliverManyCrossDevice(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "correo-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	local := t.TempDir()
	var a, b syscall.Stat_t
	if syscall.Stat(shm, &a) != nil || syscall.Stat(local, &b) != nil || a.Dev == b.Dev {
		t.Skip("/dev/shm and the test directory are on one file system")
	}
	boxes := []*Maildir{New(filepath.Join(local, "a")), New(filepath.Join(shm, "b"))}
	msg := "Subject: far\n\naway\n"
	ds, err := DeliverMany(boxes, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range ds {
		got, err := os.ReadFile(d.Path)
		if err != nil || string(got) != msg || d.Size != int64(len(msg)) || d.WireSize != wireSize([]byte(msg)) {
			t.Errorf("box %d: %+v content %q, %v", i, d, got, err)
		}
		if n := nlink(t, d.Path); n != 1 {
			t.Errorf("box %d: link count %d, want 1 (copied)", i, n)
		}
	}
}
