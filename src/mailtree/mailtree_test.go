package mailtree

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestScanLists(t *testing.T) {
	src := filepath.Join(t.TempDir(), "user")
	makeMaildir(t, src)
	m, err := Scan(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Check(); err != nil {
		t.Fatalf("Scan's manifest fails Check: %v", err)
	}
	want := []string{
		".Archive.2024", ".Archive.2024/correo-uidlist", ".Archive.2024/cur",
		".Archive.2024/cur/" + msgName(200, 3000, "S"), ".Archive.2024/cur/" + msgName(201, 3001, "S"),
		".Archive.2024/maildirfolder", ".Archive.2024/new", ".Archive.2024/tmp",
		".Sent", ".Sent/correo-specialuse", ".Sent/correo-uidlist", ".Sent/cur",
		".Sent/cur/" + msgName(100, 3000, "S"), ".Sent/cur/" + msgName(101, 3001, "S"),
		".Sent/maildirfolder", ".Sent/new", ".Sent/tmp",
		"correo-defaults", "correo-keywords", "correo-uidlist", "correo-uidvalidity",
		"cur", "cur/" + msgName(1, 1234, "FS"), "cur/" + msgName(2, 2000, "S"), "cur/" + msgName(3, 0, ""),
		"new", "new/" + msgName(4, 4096, ""),
		"tmp",
	}
	if got := pathsOf(m.Entries); !slices.Equal(got, want) {
		t.Errorf("Scan listed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, e := range m.Entries {
		switch e.Path {
		case "cur/" + msgName(1, 1234, "FS"):
			if e.Size != 1234 || e.MTime != at(1).UnixNano() || e.Mode != 0o600 || e.Dir {
				t.Errorf("%+v: wrong size, mtime, mode or kind", e)
			}
		case "cur/" + msgName(3, 0, ""):
			if e.Mode != 0o640 {
				t.Errorf("%+v: mode %#o, want 0640", e, e.Mode)
			}
		case ".Archive.2024":
			if !e.Dir || e.Mode != 0o750 || e.Size != 0 {
				t.Errorf("%+v: want a 0750 directory", e)
			}
		}
	}
}

func TestScanMissingRoot(t *testing.T) {
	m, err := Scan(filepath.Join(t.TempDir(), "never-received-mail"))
	if err != nil || len(m.Entries) != 0 {
		t.Fatalf("Scan of a missing root = %v, %v; want an empty manifest", m, err)
	}
}

// TestCopyAndDelta is a whole move: a full pass, then the changes of a
// live mailbox and a second pass that carries exactly those.
func TestCopyAndDelta(t *testing.T) {
	dir := t.TempDir()
	src, dstRoot := filepath.Join(dir, "src"), filepath.Join(dir, "target", "d", "user")
	makeMaildir(t, src)
	st, err := OpenStage(dstRoot)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if fi, err := os.Stat(dstRoot); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("stage root: %v, %v; want a 0700 directory", fi, err)
	}

	fetch, remove := copyPass(t, src, st)
	if len(remove) != 0 {
		t.Errorf("first pass removes %v from an empty stage", pathsOf(remove))
	}
	sm, _ := Scan(src)
	if len(fetch) != len(sm.Entries) {
		t.Errorf("first pass fetched %d entries, source has %d", len(fetch), len(sm.Entries))
	}
	sameTrees(t, src, dstRoot, true)
	for _, n := range []string{"tmp/" + msgName(5, 10, ""), "correo-moving", "correo-pop3.lock", "correo-mailstore.lock", "correo-uidlist.tmp", "etc", "fifo", ".Sent/correo-mailstore.lock"} {
		if _, err := os.Lstat(filepath.Join(dstRoot, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was copied (%v)", n, err)
		}
	}

	// Nothing changed: a pass has nothing to do.
	if fetch, remove := copyPass(t, src, st); len(fetch)+len(remove) != 0 {
		t.Fatalf("pass over an unchanged tree: fetch %v, remove %v", pathsOf(fetch), pathsOf(remove))
	}

	// Live use.
	newMsg := "new/" + msgName(50, 777, "")
	writeFile(t, filepath.Join(src, newMsg), body("fifty", 777), 0o600, at(50))
	oldName, newName := "cur/"+msgName(2, 2000, "S"), "cur/"+msgName(2, 2000, "ST")
	if err := os.Rename(filepath.Join(src, oldName), filepath.Join(src, newName)); err != nil {
		t.Fatal(err)
	}
	gone := "cur/" + msgName(1, 1234, "FS")
	if err := os.Remove(filepath.Join(src, gone)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(src, "correo-uidlist"), []byte("correo-uidlist 1 V1733212345 N6 M12 G4 F0\nend 0\n"), 0o600, at(51))
	if err := os.RemoveAll(filepath.Join(src, ".Archive.2024")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"", "/cur", "/new", "/tmp"} {
		mkdir(t, filepath.Join(src, ".Drafts"+d), 0o700)
	}
	writeFile(t, filepath.Join(src, ".Drafts/maildirfolder"), nil, 0o600, at(52))
	draft := ".Drafts/cur/" + msgName(60, 500, "D")
	writeFile(t, filepath.Join(src, draft), body("draft", 500), 0o600, at(53))
	// A delivery in progress in the new folder: not carried.
	writeFile(t, filepath.Join(src, ".Drafts/tmp/partial"), []byte("par"), 0o600, at(54))

	fetch, remove = copyPass(t, src, st)
	var fetchFiles, fetchDirs []string
	for _, e := range fetch {
		if e.Dir {
			fetchDirs = append(fetchDirs, e.Path)
		} else {
			fetchFiles = append(fetchFiles, e.Path)
		}
	}
	if want := []string{".Drafts/cur/" + msgName(60, 500, "D"), ".Drafts/maildirfolder", "correo-uidlist", newName, newMsg}; !slices.Equal(fetchFiles, want) {
		t.Errorf("delta fetched files\n%v\nwant\n%v", fetchFiles, want)
	}
	// The new folder, and the directories whose contents changed (their
	// mtime moved on the source).
	if want := []string{".Drafts", ".Drafts/cur", ".Drafts/new", ".Drafts/tmp", "cur", "new"}; !slices.Equal(fetchDirs, want) {
		t.Errorf("delta fetched directories %v, want %v", fetchDirs, want)
	}
	wantRemove := []string{
		oldName, gone,
		".Archive.2024/tmp", ".Archive.2024/new", ".Archive.2024/maildirfolder",
		".Archive.2024/cur/" + msgName(201, 3001, "S"), ".Archive.2024/cur/" + msgName(200, 3000, "S"),
		".Archive.2024/cur", ".Archive.2024/correo-uidlist", ".Archive.2024",
	}
	if got := pathsOf(remove); !slices.Equal(got, wantRemove) {
		t.Errorf("delta removed\n%v\nwant\n%v", got, wantRemove)
	}
	sameTrees(t, src, dstRoot, false)
}

// TestKindChange: a path that changed between file and directory is
// removed and fetched again, in both directions.
func TestKindChange(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeFile(t, filepath.Join(src, "a"), []byte("file"), 0o600, at(1))
	mkdir(t, filepath.Join(src, "b/c"), 0o700)
	writeFile(t, filepath.Join(src, "b/c/d"), []byte("deep"), 0o600, at(2))
	st, err := OpenStage(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	copyPass(t, src, st)
	sameTrees(t, src, st.Root(), false)

	os.Remove(filepath.Join(src, "a"))
	mkdir(t, filepath.Join(src, "a"), 0o700)
	writeFile(t, filepath.Join(src, "a/x"), []byte("x"), 0o600, at(3))
	os.RemoveAll(filepath.Join(src, "b"))
	writeFile(t, filepath.Join(src, "b"), []byte("now a file"), 0o600, at(4))

	fetch, remove := copyPass(t, src, st)
	if got, want := pathsOf(remove), []string{"b/c/d", "b/c", "b", "a"}; !slices.Equal(got, want) {
		t.Errorf("removed %v, want %v", got, want)
	}
	if got, want := pathsOf(fetch), []string{"a", "a/x", "b"}; !slices.Equal(got, want) {
		t.Errorf("fetched %v, want %v", got, want)
	}
	sameTrees(t, src, st.Root(), false)
}

func newStage(t *testing.T) (*Stage, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := OpenStage(filepath.Join(dir, "stage"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, dir
}

// listAll lists everything under dir, hidden files and links included.
func listAll(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestPutRefusesBadBody(t *testing.T) {
	data := []byte("Subject: hi\r\n\r\nbody\r\n")
	tests := []struct {
		name string
		body []byte
		size int64
		sum  []byte
		want string
	}{
		{"wrong checksum", data, int64(len(data)), sha([]byte("other")), "SHA-256 mismatch"},
		{"short body", data[:5], int64(len(data)), sha(data[:5]), "got 5 bytes"},
		{"long body", data, int64(len(data) - 1), sha(data), "more than the announced"},
		{"truncated checksum", data, int64(len(data)), sha(data)[:16], "checksum of 16 bytes"},
		{"no checksum", data, int64(len(data)), nil, "checksum of 0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := newStage(t)
			if err := st.Put(Entry{Path: "cur", Dir: true, Mode: 0o700}, nil, nil); err != nil {
				t.Fatal(err)
			}
			e := Entry{Path: "cur/msg", Size: tt.size, MTime: at(1).UnixNano(), Mode: 0o600}
			err := st.Put(e, bytes.NewReader(tt.body), tt.sum)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Put = %v, want an error containing %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "cur/msg") {
				t.Errorf("error %q does not name the file", err)
			}
			if err := st.Sync(); err != nil { // removes the dirty marker
				t.Fatal(err)
			}
			if got := listAll(t, st.Root()); !slices.Equal(got, []string{"cur"}) {
				t.Errorf("left behind: %v", got)
			}
			// And a good one afterwards works.
			good := Entry{Path: "cur/msg", Size: int64(len(data)), MTime: at(1).UnixNano(), Mode: 0o600}
			if err := st.Put(good, bytes.NewReader(data), sha(data)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPutRefusesBadPaths(t *testing.T) {
	for _, p := range []string{"../x", "a/../../x", "/etc/passwd", "cur/\x00", "", ".", "..", "cur/", "a//b", "./x",
		"correo-moving", "cur/.mailtree-1.2", "tmp/x", ".Sent/tmp/x", strings.Repeat("a", 256)} {
		for _, isDir := range []bool{false, true} {
			st, dir := newStage(t)
			before := listAll(t, dir)
			data := []byte("x")
			e := Entry{Path: p, Dir: isDir, Mode: 0o600}
			if !isDir {
				e.Size = 1
			}
			if err := st.Put(e, bytes.NewReader(data), sha(data)); err == nil {
				t.Errorf("Put(%q, dir=%v) succeeded", p, isDir)
			}
			if after := listAll(t, dir); !slices.Equal(before, after) {
				t.Errorf("Put(%q) changed the file system: %v -> %v", p, before, after)
			}
		}
	}
}

// TestSymlinkInStage: a link planted in the stage is never written
// through, whatever the operation.
func TestSymlinkInStage(t *testing.T) {
	st, _ := newStage(t)
	elsewhere := t.TempDir()
	writeFile(t, filepath.Join(elsewhere, "victim"), []byte("keep"), 0o600, at(1))
	if err := os.Symlink(elsewhere, filepath.Join(st.Root(), "cur")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(elsewhere, "victim"), filepath.Join(st.Root(), "link")); err != nil {
		t.Fatal(err)
	}
	data := []byte("evil")
	file := func(p string) Entry { return Entry{Path: p, Size: 4, Mode: 0o600} }
	steps := []struct {
		name string
		do   func() error
	}{
		{"put file through link", func() error { return st.Put(file("cur/victim"), bytes.NewReader(data), sha(data)) }},
		{"put new file through link", func() error { return st.Put(file("cur/new"), bytes.NewReader(data), sha(data)) }},
		{"put dir over link", func() error { return st.Put(Entry{Path: "cur", Dir: true, Mode: 0o700}, nil, nil) }},
		{"put dir through link", func() error { return st.Put(Entry{Path: "cur/sub", Dir: true, Mode: 0o700}, nil, nil) }},
		{"remove through link", func() error { return st.Remove(Entry{Path: "cur/victim"}) }},
	}
	for _, s := range steps {
		err := s.do()
		if err == nil {
			t.Errorf("%s: succeeded", s.name)
		} else if !strings.Contains(err.Error(), "symbolic link") && !strings.Contains(err.Error(), "remove it first") {
			t.Errorf("%s: unclear error %q", s.name, err)
		}
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, elsewhere); !slices.Equal(got, []string{"victim"}) {
		t.Errorf("outside the stage: %v", got)
	}
	// A file put over a link replaces the link, not its target.
	if err := st.Put(file("link"), bytes.NewReader(data), sha(data)); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(elsewhere, "victim")); string(b) != "keep" {
		t.Errorf("link target now holds %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(st.Root(), "link")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("link not replaced by a file: %v %v", fi, err)
	}
	// Removing the link removes the link only.
	if err := st.Remove(Entry{Path: "cur", Dir: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "victim")); err != nil {
		t.Errorf("removing the link harmed its target: %v", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	other := filepath.Join(dir, "other")
	writeFile(t, filepath.Join(other, "cur/secret"), []byte("other user's mail"), 0o600, at(1))
	writeFile(t, filepath.Join(src, "cur/ok"), []byte("mine"), 0o600, at(1))
	if err := os.Symlink(filepath.Join(other, "cur"), filepath.Join(src, "lnk")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(other, "cur/secret"), filepath.Join(src, "cur/slink")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(src, "cur/fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		e    Entry
		want string
	}{
		{Entry{Path: "lnk/secret", Size: 17}, "symbolic link"},
		{Entry{Path: "cur/slink", Size: 17}, "symbolic link"},
		{Entry{Path: "cur/fifo"}, "not a regular file"},
		{Entry{Path: "cur", Dir: true}, "directory"},
		{Entry{Path: "../other/cur/secret"}, `".." component`},
		{Entry{Path: "cur/missing"}, "no such file"},
	}
	for _, tt := range tests {
		f, _, err := Open(src, tt.e)
		if err == nil {
			f.Close()
			t.Errorf("Open(%q) succeeded", tt.e.Path)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", tt.e.Path, err, tt.want)
		}
	}
	if _, _, err := Open(src, Entry{Path: "cur/missing"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a vanished file: %v, want fs.ErrNotExist", err)
	}
	// The current state is what Open reports, not the scanned one.
	f, cur, err := Open(src, Entry{Path: "cur/ok", Size: 99, MTime: 5, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if cur.Size != 4 || cur.MTime != at(1).UnixNano() || cur.Mode != 0o600 {
		t.Errorf("Open reported %+v, want the file's current size, mtime and mode", cur)
	}
}

func TestStageRemove(t *testing.T) {
	st, _ := newStage(t)
	root := st.Root()
	writeFile(t, filepath.Join(root, ".Old/cur/m"), []byte("m"), 0o600, at(1))
	writeFile(t, filepath.Join(root, ".Old/tmp/partial"), []byte("p"), 0o600, at(1))
	writeFile(t, filepath.Join(root, ".Old/correo-mailstore.lock"), nil, 0o600, at(1))
	dm, err := st.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	_, remove := Diff(&Manifest{}, dm)
	if len(remove) != 4 { // cur/m, tmp, cur, .Old
		t.Fatalf("remove %v", pathsOf(remove))
	}
	for _, e := range remove {
		if err := st.Remove(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Remove(Entry{Path: "never/there"}); err != nil {
		t.Errorf("removing a missing path: %v", err)
	}
	// A directory with a listed entry left in it is not emptied by force.
	writeFile(t, filepath.Join(root, "d/keep"), nil, 0o600, at(1))
	if err := st.Remove(Entry{Path: "d", Dir: true}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("removing a non-empty directory: %v", err)
	}
	os.Remove(filepath.Join(root, "d/keep"))
	os.Remove(filepath.Join(root, "d"))
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, root); len(got) != 0 {
		t.Errorf("left: %v", got)
	}
}

// TestManifestDropsLeftovers: a crash mid-transfer leaves a temporary
// file; a resumed move neither lists nor keeps it.
func TestManifestDropsLeftovers(t *testing.T) {
	st, _ := newStage(t)
	writeFile(t, filepath.Join(st.Root(), "cur/.mailtree-4242.7"), []byte("half"), 0o600, at(1))
	// A transfer in progress in this process is left alone.
	if err := st.Put(Entry{Path: "new", Dir: true, Mode: 0o700}, nil, nil); err != nil {
		t.Fatal(err)
	}
	in, err := st.Create(Entry{Path: "new/m", Size: 2, Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("h"))
	m, err := st.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if got := pathsOf(m.Entries); !slices.Equal(got, []string{"cur", "new"}) {
		t.Errorf("Manifest = %v", got)
	}
	if _, err := os.Lstat(filepath.Join(st.Root(), "cur/.mailtree-4242.7")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover kept: %v", err)
	}
	in.Write([]byte("i"))
	if err := in.Commit(sha([]byte("hi"))); err != nil {
		t.Fatalf("transfer in progress during Manifest: %v", err)
	}
}

// TestSyncOncePerPass: durability costs a fixed number of flushes per
// pass, whatever the number of files: the marker (file and root) when the
// pass starts, one syncfs and the root's fsync when Sync ends it.
func TestSyncOncePerPass(t *testing.T) {
	var fsyncs, syncfss []int
	fsyncFD = func(fd int) error { fsyncs = append(fsyncs, fd); return unix.Fsync(fd) }
	syncFS = func(fd int) error { syncfss = append(syncfss, fd); return unix.Syncfs(fd) }
	defer func() { fsyncFD, syncFS = unix.Fsync, unix.Syncfs }()
	st, _ := newStage(t)
	if len(fsyncs)+len(syncfss) != 0 {
		t.Fatalf("opening a new stage: %d fsyncs, %d syncfs; want none", len(fsyncs), len(syncfss))
	}
	for _, d := range []string{"cur", "new"} {
		if err := st.Put(Entry{Path: d, Dir: true, Mode: 0o700, MTime: at(9).UnixNano()}, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		data := body("m", 100+i)
		e := Entry{Path: "cur/" + msgName(i, len(data), "S"), Size: int64(len(data)), MTime: at(i).UnixNano(), Mode: 0o600}
		if err := st.Put(e, bytes.NewReader(data), sha(data)); err != nil {
			t.Fatal(err)
		}
	}
	if len(fsyncs) != 2 || fsyncs[1] != st.fd || len(syncfss) != 0 {
		t.Errorf("200 files put: fsyncs %v, syncfs %v; want the marker's and the root's (%d) fsync only", fsyncs, syncfss, st.fd)
	}
	fsyncs = nil
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(syncfss, []int{st.fd}) || !slices.Equal(fsyncs, []int{st.fd}) {
		t.Errorf("Sync: syncfs %v, fsyncs %v; want one of each, on the root (%d)", syncfss, fsyncs, st.fd)
	}
	fi, err := os.Stat(filepath.Join(st.Root(), "cur"))
	if err != nil || !fi.ModTime().Equal(at(9)) {
		t.Errorf("cur's mtime not set by Sync: %v %v", fi.ModTime(), err)
	}
	fsyncs, syncfss = nil, nil
	if err := st.Sync(); err != nil || len(fsyncs)+len(syncfss) != 0 {
		t.Errorf("second Sync: %v, %d fsyncs, %d syncfs; want none", err, len(fsyncs), len(syncfss))
	}
	// A remove starts a pass too.
	if err := st.Remove(Entry{Path: "new", Dir: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	if len(fsyncs) != 3 || len(syncfss) != 1 {
		t.Errorf("a pass of one remove: %d fsyncs, %d syncfs; want 3 and 1", len(fsyncs), len(syncfss))
	}
}

func TestSyncAppliesReadOnlyDirModeLast(t *testing.T) {
	st, _ := newStage(t)
	if err := st.Put(Entry{Path: "ro", Dir: true, Mode: 0o500, MTime: at(1).UnixNano()}, nil, nil); err != nil {
		t.Fatal(err)
	}
	data := []byte("x")
	if err := st.Put(Entry{Path: "ro/f", Size: 1, Mode: 0o400, MTime: at(2).UnixNano()}, bytes.NewReader(data), sha(data)); err != nil {
		t.Fatal(err)
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	m, err := st.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	want := &Manifest{Entries: []Entry{
		{Path: "ro", Dir: true, Mode: 0o500, MTime: at(1).UnixNano()},
		{Path: "ro/f", Size: 1, Mode: 0o400, MTime: at(2).UnixNano()},
	}}
	if !slices.Equal(m.Entries, want.Entries) {
		t.Errorf("stage = %+v, want %+v", m.Entries, want.Entries)
	}
	os.Chmod(filepath.Join(st.Root(), "ro"), 0o700) // for t.TempDir's cleanup as non-root
}

func TestPutNeedsParent(t *testing.T) {
	st, _ := newStage(t)
	data := []byte("x")
	err := st.Put(Entry{Path: "cur/m", Size: 1, Mode: 0o600}, bytes.NewReader(data), sha(data))
	if err == nil || !strings.Contains(err.Error(), "put the parent directory first") {
		t.Errorf("Put without its parent: %v", err)
	}
	err = st.Put(Entry{Path: "a/b", Dir: true, Mode: 0o700}, nil, nil)
	if err == nil {
		t.Errorf("Put of a directory without its parent succeeded")
	}
}
