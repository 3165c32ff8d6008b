package mailtree

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkCopy2000 is a full pass of a 2 000-message INBOX (4 KiB each)
// into an empty stage: Scan, wire round trip of the manifest, Diff, Open,
// hash, Put and Sync, as a move's first pass does. The figure depends on
// the disk's fsync cost, one per message file: it is printed, not judged.
func BenchmarkCopy2000(b *testing.B) {
	const n, size = 2000, 4096
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	for _, d := range []string{"cur", "new", "tmp"} {
		mkdir(b, filepath.Join(src, d), 0o700)
	}
	for i := range n {
		writeFile(b, filepath.Join(src, "cur", msgName(i, size, "S")), body(fmt.Sprint(i), size), 0o600, at(i))
	}
	writeFile(b, filepath.Join(src, "correo-uidlist"), body("uidlist", 100*n), 0o600, at(0))
	b.SetBytes(n*size + 100*n)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		b.StopTimer()
		stageRoot := filepath.Join(dir, fmt.Sprint("stage", i))
		i++
		st, err := OpenStage(stageRoot)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		fetch, _ := copyPass(b, src, st)
		b.StopTimer()
		if len(fetch) != n+4 {
			b.Fatalf("fetched %d entries, want %d", len(fetch), n+4)
		}
		st.Close()
		if err := os.RemoveAll(stageRoot); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
