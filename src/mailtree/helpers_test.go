package mailtree

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// base is an arbitrary past instant with nanoseconds, so that a copy that
// kept only seconds (or microseconds) would show.
var base = time.Date(2024, 12, 3, 8, 5, 45, 123456789, time.UTC)

func at(i int) time.Time { return base.Add(time.Duration(i) * time.Hour) }

// body is deterministic message contents of n bytes, distinct per seed.
func body(seed string, n int) []byte {
	b := make([]byte, 0, n)
	line := fmt.Sprintf("From: %s@example.org\r\nSubject: test %s\r\n\r\n", seed, seed)
	for len(b) < n {
		b = append(b, line...)
	}
	return b[:n]
}

func writeFile(t testing.TB, path string, data []byte, mode os.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t testing.TB, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func chtime(t testing.TB, path string, mtime time.Time) {
	t.Helper()
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// msgName is a Maildir file name as pdeliveryd writes it.
func msgName(i int, size int, info string) string {
	n := fmt.Sprintf("%d.M%dP%d.mx1,S=%d,W=%d", 1733212345+i, 123456+i, 789, size, size+size/40)
	if info != "" {
		n += ":2," + info
	}
	return n
}

// makeMaildir lays out a realistic Maildir++ with things that must not be
// copied. Directory mtimes are set last to fixed past instants, so that a
// later change to a directory always changes its mtime.
func makeMaildir(t testing.TB, root string) {
	t.Helper()
	for _, d := range []string{"", "cur", "new", "tmp"} {
		mkdir(t, filepath.Join(root, d), 0o700)
	}
	writeFile(t, filepath.Join(root, "cur", msgName(1, 1234, "FS")), body("one", 1234), 0o600, at(1))
	writeFile(t, filepath.Join(root, "cur", msgName(2, 2000, "S")), body("two", 2000), 0o600, at(2))
	writeFile(t, filepath.Join(root, "cur", msgName(3, 0, "")), nil, 0o640, at(3)) // empty file, odd mode
	writeFile(t, filepath.Join(root, "new", msgName(4, 4096, "")), body("four", 4096), 0o600, at(4))
	writeFile(t, filepath.Join(root, "tmp", msgName(5, 10, "")), body("five", 10), 0o600, at(5))
	writeFile(t, filepath.Join(root, "correo-uidlist"), []byte("correo-uidlist 1 V1733212345 N5 M9 G3 F0\n1 2 1234 1733212346 c :2,FS 1733212346.M123457P789.mx1,S=1234,W=1264\nend 1\n"), 0o600, at(6))
	writeFile(t, filepath.Join(root, "correo-uidvalidity"), []byte("1733212345\n"), 0o600, at(7))
	writeFile(t, filepath.Join(root, "correo-defaults"), nil, 0o600, at(8))
	writeFile(t, filepath.Join(root, "correo-keywords"), []byte("a $Junk\nb Work\n"), 0o600, at(9))
	// Not part of the mailbox:
	for _, n := range []string{"correo-mailstore.lock", "correo-pop3.lock", "correo-moving", "correo-uidlist.tmp", ".mailtree-1.1"} {
		writeFile(t, filepath.Join(root, n), []byte("x"), 0o600, at(10))
	}
	if err := os.Symlink("/etc", filepath.Join(root, "etc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "cur", msgName(6, 100, "S"))); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}

	for fi, folder := range []string{".Sent", ".Archive.2024"} {
		f := filepath.Join(root, folder)
		for _, d := range []string{"", "cur", "new", "tmp"} {
			mkdir(t, filepath.Join(f, d), 0o700)
		}
		writeFile(t, filepath.Join(f, "maildirfolder"), nil, 0o600, at(20+fi))
		writeFile(t, filepath.Join(f, "correo-uidlist"), []byte("correo-uidlist 1 V1 N3 M3 G1 F0\nend 2\n"), 0o600, at(22+fi))
		writeFile(t, filepath.Join(f, "correo-mailstore.lock"), nil, 0o600, at(24))
		for i := range 2 {
			writeFile(t, filepath.Join(f, "cur", msgName(100*(fi+1)+i, 3000+i, "S")), body(folder, 3000+i), 0o600, at(30+i))
		}
	}
	writeFile(t, filepath.Join(root, ".Sent", "correo-specialuse"), []byte("\\Sent\n"), 0o600, at(40))
	mkdir(t, filepath.Join(root, ".Archive.2024"), 0o750)

	// Directory mtimes last, deepest first.
	var dirs []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i, d := range slices.Backward(dirs) {
		chtime(t, d, at(100+i))
	}
}

// copyPass runs one pass of a move from src into st as the transport
// would: the source's manifest goes over the wire, files are opened,
// hashed while sent, and committed with the trailing checksum.
func copyPass(t testing.TB, src string, st *Stage) (fetch, remove []Entry) {
	t.Helper()
	sm, err := Scan(src)
	if err != nil {
		t.Fatal(err)
	}
	var wire bytes.Buffer
	if err := sm.Encode(&wire); err != nil {
		t.Fatal(err)
	}
	sm, err = DecodeManifest(&wire, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := st.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	fetch, remove = Diff(sm, dm)
	for _, e := range remove {
		if err := st.Remove(e); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range fetch {
		if err := sendOne(src, st, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	return fetch, remove
}

func sendOne(src string, st *Stage, e Entry) error {
	if e.Dir {
		return st.Put(e, nil, nil)
	}
	f, cur, err := Open(src, e)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // gone since the scan: the next pass sees it
	}
	if err != nil {
		return err
	}
	defer f.Close()
	in, err := st.Create(cur)
	if err != nil {
		return err
	}
	defer in.Abort()
	h := NewHashReader(f)
	if _, err := io.Copy(in, io.LimitReader(h, cur.Size)); err != nil {
		return err
	}
	return in.Commit(h.Sum())
}

// sameTrees checks, beyond Verify, every listed file's bytes and every
// entry's mode and mtime (directories included) straight from the disk.
// With atime, it checks that each file's atime is its mtime, which holds
// only until something reads the file (relatime updates an atime not
// later than the mtime).
func sameTrees(t *testing.T, src, dst string, atime bool) {
	t.Helper()
	sm, err := Scan(src)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := Scan(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(sm, dm); err != nil {
		t.Fatal(err)
	}
	for _, e := range sm.Entries {
		a, b := filepath.Join(src, e.Path), filepath.Join(dst, e.Path)
		sa, err := os.Lstat(a)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := os.Lstat(b)
		if err != nil {
			t.Fatal(err)
		}
		if sa.Mode() != sb.Mode() {
			t.Errorf("%s: mode %v on source, %v on target", e.Path, sa.Mode(), sb.Mode())
		}
		if !sa.ModTime().Equal(sb.ModTime()) {
			t.Errorf("%s: mtime %v on source, %v on target", e.Path, sa.ModTime(), sb.ModTime())
		}
		if e.Dir {
			continue
		}
		var stb unix.Stat_t
		if err := unix.Lstat(b, &stb); err != nil {
			t.Fatal(err)
		}
		if atime && stb.Atim.Nano() != e.MTime {
			t.Errorf("%s: atime %d on target, want the mtime %d", e.Path, stb.Atim.Nano(), e.MTime)
		}
		da, err := os.ReadFile(a)
		if err != nil {
			t.Fatal(err)
		}
		db, err := os.ReadFile(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(da, db) {
			t.Errorf("%s: contents differ", e.Path)
		}
	}
}

func pathsOf(es []Entry) []string {
	var ps []string
	for _, e := range es {
		ps = append(ps, e.Path)
	}
	return ps
}
