package clustertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"correo/internal/testutil"
)

// JournaledExt4 makes a fresh ext4 file system with its default journal
// in a sparse image, mounts it on a loop device and returns the mount
// point; everything is removed after the benchmark.
func JournaledExt4(b *testing.B) string {
	b.Helper()
	mkfs := testutil.NeedCommand(b, "mkfs.ext4")
	mount := testutil.NeedCommand(b, "mount")
	umount := testutil.NeedCommand(b, "umount")
	img := filepath.Join(ShortTempDir(b, "bench-img-"), "spool.img")
	f, err := os.Create(img)
	if err != nil {
		b.Fatal(err)
	}
	f.Truncate(8 << 30)
	f.Close()
	if out, err := exec.Command(mkfs, "-q", "-F", img).CombinedOutput(); err != nil {
		b.Fatalf("mkfs.ext4 %s: %v\n%s", img, err, out)
	}
	mnt := ShortTempDir(b, "bench-mnt-")
	if out, err := exec.Command(mount, "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		b.Fatalf("mounting %s: %v\n%s", img, err, out)
	}
	// Registered after ShortTempDir's removal, so it runs before it.
	b.Cleanup(func() {
		if out, err := exec.Command(umount, mnt).CombinedOutput(); err != nil {
			b.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	os.Chmod(mnt, 0o755)
	return mnt
}
