package mailtree

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The INBOX of BenchmarkCopy2000 and BenchmarkRsync2000, whose figures
// are meant to be read side by side.
const benchMsgs, benchMsgSize = 2000, 4096

// makeBenchInbox lays out the benchmarks' INBOX under dir/src, and returns
// it with its size in bytes. It is flushed to disk, so that neither
// benchmark pays for writing it back (in a move, the source is on another
// host).
func makeBenchInbox(b *testing.B, dir string) (string, int64) {
	b.Helper()
	src := filepath.Join(dir, "src")
	for _, d := range []string{"cur", "new", "tmp"} {
		mkdir(b, filepath.Join(src, d), 0o700)
	}
	for i := range benchMsgs {
		writeFile(b, filepath.Join(src, "cur", msgName(i, benchMsgSize, "S")), body(fmt.Sprint(i), benchMsgSize), 0o600, at(i))
	}
	writeFile(b, filepath.Join(src, "correo-uidlist"), body("uidlist", 100*benchMsgs), 0o600, at(0))
	syncDirFS(b, dir)
	return src, benchMsgs*benchMsgSize + 100*benchMsgs
}

// syncDirFS flushes the file system of dir, so that what an iteration
// left dirty (the last one's removal, the setup) is not charged to the
// next.
func syncDirFS(b *testing.B, dir string) {
	b.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCopy2000 is a full pass of a 2 000-message INBOX (4 KiB each)
// into an empty stage: Scan, wire round trip of the manifest, Diff, Open,
// hash, Put and Sync, as a move's first pass does. Sync's one syncfs, which
// writes the whole pass back, is timed; compare with BenchmarkRsync2000.
func BenchmarkCopy2000(b *testing.B) {
	dir := b.TempDir()
	src, size := makeBenchInbox(b, dir)
	b.SetBytes(size)
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
		if len(fetch) != benchMsgs+4 {
			b.Fatalf("fetched %d entries, want %d", len(fetch), benchMsgs+4)
		}
		st.Close()
		if err := os.RemoveAll(stageRoot); err != nil {
			b.Fatal(err)
		}
		syncDirFS(b, dir)
		b.StartTimer()
	}
}

// BenchmarkRsync2000 copies BenchmarkCopy2000's INBOX with `rsync -a`,
// the yardstick of the move's throughput. rsync does not flush anything
// to disk.
func BenchmarkRsync2000(b *testing.B) {
	rsync, err := exec.LookPath("rsync")
	if err != nil {
		b.Skip("rsync is not installed")
	}
	dir := b.TempDir()
	src, size := makeBenchInbox(b, dir)
	b.SetBytes(size)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		b.StopTimer()
		dst := filepath.Join(dir, fmt.Sprint("dst", i))
		i++
		b.StartTimer()
		if out, err := exec.Command(rsync, "-a", src+"/", dst+"/").CombinedOutput(); err != nil {
			b.Fatalf("rsync: %v\n%s", err, out)
		}
		b.StopTimer()
		if err := os.RemoveAll(dst); err != nil {
			b.Fatal(err)
		}
		syncDirFS(b, dir)
		b.StartTimer()
	}
}
