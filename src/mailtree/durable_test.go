package mailtree

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func markerExists(t *testing.T, root string) bool {
	t.Helper()
	_, err := os.Lstat(filepath.Join(root, dirtyMarker))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// TestDirtyMarker: the marker is on disk from the first change of a pass
// to the end of its Sync, and never part of a listing.
func TestDirtyMarker(t *testing.T) {
	st, _ := newStage(t)
	if markerExists(t, st.Root()) {
		t.Fatal("marker in a new stage")
	}
	if err := st.Put(Entry{Path: "cur", Dir: true, Mode: 0o700}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if !markerExists(t, st.Root()) {
		t.Fatal("no marker after a Put")
	}
	data := []byte("x")
	if err := st.Put(Entry{Path: "cur/m", Size: 1, Mode: 0o600}, bytes.NewReader(data), sha(data)); err != nil {
		t.Fatal(err)
	}
	// Neither listed nor taken for a leftover by the stage's own scan in
	// the middle of its pass.
	m, err := st.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if got := pathsOf(m.Entries); !slices.Equal(got, []string{"cur", "cur/m"}) {
		t.Errorf("Manifest in a pass = %v", got)
	}
	if !markerExists(t, st.Root()) {
		t.Fatal("Manifest removed the marker of the pass in progress")
	}
	if m, err := Scan(st.Root()); err != nil || len(m.Entries) != 2 {
		t.Errorf("Scan of the stage = %v, %v; want cur and cur/m only", m, err)
	}
	if err := (Entry{Path: dirtyMarker, Size: 1}).Check(); err == nil {
		t.Errorf("Check accepts the marker's path")
	}
	if err := st.Remove(Entry{Path: dirtyMarker}); err == nil {
		t.Errorf("Remove of the marker succeeded")
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	if markerExists(t, st.Root()) {
		t.Fatal("marker left by Sync")
	}
	if err := st.Remove(Entry{Path: "cur/m"}); err != nil {
		t.Fatal(err)
	}
	if !markerExists(t, st.Root()) {
		t.Fatal("no marker after a Remove")
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	in, err := st.Create(Entry{Path: "cur/n", Size: 1, Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Abort()
	if !markerExists(t, st.Root()) {
		t.Fatal("no marker after a Create")
	}
}

// TestCommitAfterSync: a file created before a Sync and committed after it
// is in the next pass, under a new marker.
func TestCommitAfterSync(t *testing.T) {
	st, _ := newStage(t)
	in, err := st.Create(Entry{Path: "m", Size: 1, Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Abort()
	in.Write([]byte("x"))
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := in.Commit(sha([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	if !markerExists(t, st.Root()) {
		t.Fatal("a Commit after Sync changed the tree without the marker")
	}
}

// syncedStage is a stage after a pass of makeMaildir, and that Maildir.
func syncedStage(t *testing.T) (src, root string) {
	t.Helper()
	dir := t.TempDir()
	src, root = filepath.Join(dir, "src"), filepath.Join(dir, "stage")
	makeMaildir(t, src)
	// Read-only directories and files, which the emptying must get past.
	mkdir(t, filepath.Join(src, ".ro/cur"), 0o700)
	writeFile(t, filepath.Join(src, ".ro/cur/m"), []byte("m"), 0o400, at(1))
	mkdir(t, filepath.Join(src, ".ro/cur"), 0o500)
	mkdir(t, filepath.Join(src, ".ro"), 0o500)
	t.Cleanup(func() {
		os.Chmod(filepath.Join(src, ".ro/cur"), 0o700)
		os.Chmod(filepath.Join(src, ".ro"), 0o700)
	})
	st, err := OpenStage(root)
	if err != nil {
		t.Fatal(err)
	}
	copyPass(t, src, st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(root, ".ro")); err != nil || fi.Mode().Perm() != 0o500 {
		t.Fatalf("stage's .ro: %v, %v; want a 0500 directory", fi, err)
	}
	return src, root
}

// TestOpenStageEmptiesInterrupted: a stage found with the marker (a pass
// killed, or the host crashed, before its Sync) is emptied, and the next
// pass copies everything again.
func TestOpenStageEmptiesInterrupted(t *testing.T) {
	src, root := syncedStage(t)
	// A temporary file and the marker, as a pass that died leaves them.
	writeFile(t, filepath.Join(root, "cur", tempPrefix+"4242.7"), []byte("half"), 0o600, at(1))
	writeFile(t, filepath.Join(root, dirtyMarker), nil, 0o600, at(1))
	st, err := OpenStage(root)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := listAll(t, root); len(got) != 0 {
		t.Fatalf("stage of an interrupted pass not emptied: %v", got)
	}
	fetch, remove := copyPass(t, src, st)
	sm, _ := Scan(src)
	if len(fetch) != len(sm.Entries) || len(remove) != 0 {
		t.Errorf("pass after emptying: fetch %d, remove %d; want all %d fetched", len(fetch), len(remove), len(sm.Entries))
	}
	sameTrees(t, src, root, false)
}

// TestOpenStageKeepsSynced: without the marker, what was synced is kept.
func TestOpenStageKeepsSynced(t *testing.T) {
	src, root := syncedStage(t)
	st, err := OpenStage(root)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if fetch, remove := copyPass(t, src, st); len(fetch)+len(remove) != 0 {
		t.Errorf("pass over a synced stage: fetch %v, remove %v", pathsOf(fetch), pathsOf(remove))
	}
}

// TestCloseWithoutSync: a pass abandoned without Sync leaves the marker,
// so the next open of the stage starts over.
func TestCloseWithoutSync(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "stage")
	st, err := OpenStage(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(Entry{Path: "cur", Dir: true, Mode: 0o700}, nil, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = OpenStage(root)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := listAll(t, root); len(got) != 0 {
		t.Errorf("stage of an abandoned pass: %v", got)
	}
}

// TestManifestEmptiesInterrupted: a marker that is not this Stage's, found
// by Manifest, empties the stage too.
func TestManifestEmptiesInterrupted(t *testing.T) {
	st, _ := newStage(t)
	writeFile(t, filepath.Join(st.Root(), "cur/m"), []byte("m"), 0o600, at(1))
	writeFile(t, filepath.Join(st.Root(), dirtyMarker), nil, 0o600, at(1))
	m, err := st.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Entries) != 0 {
		t.Errorf("Manifest of an interrupted stage = %v", pathsOf(m.Entries))
	}
	if got := listAll(t, st.Root()); len(got) != 0 {
		t.Errorf("left: %v", got)
	}
}

// TestSyncfsFailureSticks: after a failed syncfs the pass's data may be
// lost and a second syncfs would not say so: the stage refuses to go on,
// keeps the marker, and is emptied when reopened.
func TestSyncfsFailureSticks(t *testing.T) {
	syncFS = func(int) error { return unix.EIO }
	defer func() { syncFS = unix.Syncfs }()
	dir := t.TempDir()
	root := filepath.Join(dir, "stage")
	st, err := OpenStage(root)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(Entry{Path: "cur", Dir: true, Mode: 0o700}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Sync(); !errors.Is(err, unix.EIO) {
		t.Fatalf("Sync = %v, want EIO", err)
	}
	syncFS = unix.Syncfs
	if err := st.Sync(); !errors.Is(err, unix.EIO) {
		t.Errorf("second Sync = %v, want the first one's EIO", err)
	}
	if err := st.Put(Entry{Path: "new", Dir: true, Mode: 0o700}, nil, nil); err == nil || !strings.Contains(err.Error(), "reopen") {
		t.Errorf("Put after a failed syncfs: %v", err)
	}
	if !markerExists(t, root) {
		t.Fatal("marker removed after a failed syncfs")
	}
	st.Close()
	st2, err := OpenStage(root)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if got := listAll(t, root); len(got) != 0 {
		t.Errorf("reopened after a failed syncfs: %v", got)
	}
}

// TestSyncDuringPuts: Syncs among concurrent Puts (for -race): no error,
// nothing lost, and no marker after the last Sync.
func TestSyncDuringPuts(t *testing.T) {
	st, _ := newStage(t)
	if err := st.Put(Entry{Path: "cur", Dir: true, Mode: 0o700}, nil, nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				data := body(fmt.Sprint(g, i), 100)
				e := Entry{Path: fmt.Sprintf("cur/%d.%d", g, i), Size: 100, Mode: 0o600, MTime: at(i).UnixNano()}
				if err := st.Put(e, bytes.NewReader(data), sha(data)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			if err := st.Sync(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	if markerExists(t, st.Root()) {
		t.Error("marker left after the last Sync")
	}
	m, err := st.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Entries) != 101 {
		t.Errorf("%d entries, want 101", len(m.Entries))
	}
}
