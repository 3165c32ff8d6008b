package appliance

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestComputeLayout(t *testing.T) {
	for _, tc := range []struct {
		name          string
		sizeMB, espMB int
		wantErr       string
		rootMB        int64
	}{
		{"typical", 2048, 256, "", 2048 - 1 - 256 - 1},
		{"small ESP", 1024, 33, "", 1024 - 1 - 33 - 1},
		{"smallest root", 256 + 2 + minRootMB, 256, "", minRootMB},
		{"root too small", 256 + 2 + minRootMB - 1, 256, "give at least 322 MiB", 0},
		{"image smaller than the ESP", 100, 256, "give at least", 0},
		{"ESP too small for FAT32", 1024, 32, "too small for FAT32", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := computeLayout(tc.sizeMB, tc.espMB)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("computeLayout = %+v, %v; want an error with %q", l, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Size != int64(tc.sizeMB)*mib {
				t.Errorf("size %d", l.Size)
			}
			if l.ESP.Start != mib || l.ESP.Size != int64(tc.espMB)*mib {
				t.Errorf("ESP %+v: want the first partition at 1 MiB, %d MiB", l.ESP, tc.espMB)
			}
			if l.Root.Start != l.ESP.End() {
				t.Errorf("root starts at %d, the ESP ends at %d", l.Root.Start, l.ESP.End())
			}
			if l.Root.Size != tc.rootMB*mib {
				t.Errorf("root %d MiB, want %d", l.Root.Size/mib, tc.rootMB)
			}
			for _, p := range []Partition{l.ESP, l.Root} {
				if p.Start%mib != 0 || p.Size%mib != 0 {
					t.Errorf("partition %+v not MiB-aligned", p)
				}
			}
			// The backup GPT (33 sectors) needs room at the end.
			if l.Size-l.Root.End() < 33*sectorSize {
				t.Errorf("only %d bytes after the root partition for the backup GPT", l.Size-l.Root.End())
			}
		})
	}
}

func TestAutoSizeFitsTheContent(t *testing.T) {
	for _, content := range []int64{0, 1, 700 * mib, 5 << 30} {
		sizeMB := autoSizeMB(content, 256)
		l, err := computeLayout(sizeMB, 256)
		if err != nil {
			t.Fatalf("content %d: %v", content, err)
		}
		if spare := l.Root.Size - content*5/4; spare < 512*mib {
			t.Errorf("content %d MiB: root %d MiB leaves %d MiB beyond ext4's overhead, want 512", content/mib, l.Root.Size/mib, spare/mib)
		}
	}
}

func TestSfdiskScript(t *testing.T) {
	l, err := computeLayout(1024, 256)
	if err != nil {
		t.Fatal(err)
	}
	got := sfdiskScript(l, "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333")
	want := `label: gpt
label-id: 11111111-1111-4111-8111-111111111111
unit: sectors
first-lba: 2048
start=2048, size=524288, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=22222222-2222-4222-8222-222222222222, name="esp"
start=526336, size=1568768, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=33333333-3333-4333-8333-333333333333, name="root"
`
	if got != want {
		t.Errorf("sfdisk script:\n%s\nwant:\n%s", got, want)
	}
}

func TestKernelCmdline(t *testing.T) {
	for _, tc := range []struct {
		name  string
		guid  string
		extra []string
		want  string
	}{
		{"plain", "0e69dc97-1dd6-4266-85b5-bf3f5cdcd4c1", nil,
			"root=PARTUUID=0e69dc97-1dd6-4266-85b5-bf3f5cdcd4c1 rootfstype=ext4 rw console=tty0 console=ttyS0,115200n8"},
		{"upper-case GUID (sfdisk's output) is lowered", "0E69DC97-1DD6-4266-85B5-BF3F5CDCD4C1", nil,
			"root=PARTUUID=0e69dc97-1dd6-4266-85b5-bf3f5cdcd4c1 rootfstype=ext4 rw console=tty0 console=ttyS0,115200n8"},
		{"extra arguments last, so they win", "0e69dc97-1dd6-4266-85b5-bf3f5cdcd4c1", []string{"systemd.log_level=debug", "panic=30"},
			"root=PARTUUID=0e69dc97-1dd6-4266-85b5-bf3f5cdcd4c1 rootfstype=ext4 rw console=tty0 console=ttyS0,115200n8 systemd.log_level=debug panic=30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kernelCmdline(tc.guid, tc.extra); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestPlaceSections(t *testing.T) {
	for _, tc := range []struct {
		name       string
		end, align uint64
		sizes      []int64
		want       []uint64
	}{
		{"after an unaligned end", 0x19134, 0x1000, []int64{0x100, 0x20, 0x7dd8c0, 0x1cd4bd5}, []uint64{0x1a000, 0x1b000, 0x1c000, 0x7fa000}},
		{"end already aligned", 0x20000, 0x1000, []int64{1}, []uint64{0x20000}},
		{"section exactly one page", 0x1000, 0x1000, []int64{0x1000, 1}, []uint64{0x1000, 0x2000}},
		{"empty section takes no page", 0x1000, 0x1000, []int64{0, 1}, []uint64{0x1000, 0x1000}},
		{"with an image base", 0x140019134, 0x1000, []int64{10, 10}, []uint64{0x14001a000, 0x14001b000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secs := make([]ukiSection, len(tc.sizes))
			for i, s := range tc.sizes {
				secs[i] = ukiSection{Name: "s", Size: s}
			}
			got := placeSections(tc.end, tc.align, secs)
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("section %d at %#x, want %#x", i, got[i], tc.want[i])
				}
				if got[i] < tc.end || got[i]%tc.align != 0 {
					t.Errorf("section %d at %#x: overlaps the stub or unaligned", i, got[i])
				}
				if i > 0 && got[i] < got[i-1]+uint64(tc.sizes[i-1]) {
					t.Errorf("section %d at %#x overlaps section %d", i, got[i], i-1)
				}
			}
		})
	}
}

func TestNewGUID(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		g, err := newGUID()
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(g) {
			t.Fatalf("%s is not a version 4 GUID", g)
		}
		if seen[g] {
			t.Fatalf("%s drawn twice", g)
		}
		seen[g] = true
	}
}

func TestFindKernel(t *testing.T) {
	type entry struct{ path, link string } // link "" → a file
	for _, tc := range []struct {
		name    string
		files   []entry
		want    string // kernel relative to the tree; "" → error
		wantErr string
	}{
		{"Debian's relative links", []entry{
			{"boot/vmlinuz-6.1.0-2-amd64", ""}, {"boot/initrd.img-6.1.0-2-amd64", ""},
			{"boot/vmlinuz-6.1.0-1-amd64", ""}, {"boot/initrd.img-6.1.0-1-amd64", ""},
			{"vmlinuz", "boot/vmlinuz-6.1.0-2-amd64"}, {"initrd.img", "boot/initrd.img-6.1.0-2-amd64"},
		}, "boot/vmlinuz-6.1.0-2-amd64", ""},
		{"absolute links resolve inside the tree", []entry{
			{"boot/vmlinuz-6.1.0-2-amd64", ""}, {"boot/initrd.img-6.1.0-2-amd64", ""},
			{"vmlinuz", "/boot/vmlinuz-6.1.0-2-amd64"}, {"initrd.img", "/boot/initrd.img-6.1.0-2-amd64"},
		}, "boot/vmlinuz-6.1.0-2-amd64", ""},
		{"no links, one kernel", []entry{
			{"boot/vmlinuz-6.1.0-2-amd64", ""}, {"boot/initrd.img-6.1.0-2-amd64", ""},
		}, "boot/vmlinuz-6.1.0-2-amd64", ""},
		{"no links, two kernels", []entry{
			{"boot/vmlinuz-6.1.0-2-amd64", ""}, {"boot/initrd.img-6.1.0-2-amd64", ""},
			{"boot/vmlinuz-6.1.0-1-amd64", ""}, {"boot/initrd.img-6.1.0-1-amd64", ""},
		}, "", "found 2"},
		{"dangling link, one kernel", []entry{
			{"boot/vmlinuz-6.1.0-2-amd64", ""}, {"boot/initrd.img-6.1.0-2-amd64", ""},
			{"vmlinuz", "boot/vmlinuz-gone"}, {"initrd.img", "boot/initrd.img-gone"},
		}, "boot/vmlinuz-6.1.0-2-amd64", ""},
		{"kernel without initramfs", []entry{{"boot/vmlinuz-6.1.0-2-amd64", ""}}, "", "install initramfs-tools"},
		{"no kernel", nil, "", "install linux-image-amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.Mkdir(filepath.Join(root, "boot"), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, e := range tc.files {
				p := filepath.Join(root, e.path)
				var err error
				if e.link != "" {
					err = os.Symlink(e.link, p)
				} else {
					err = os.WriteFile(p, []byte(e.path), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			k, i, err := findKernel(root)
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("findKernel = %s, %s, %v; want an error with %q", k, i, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k != filepath.Join(root, tc.want) {
				t.Errorf("kernel %s, want %s", k, tc.want)
			}
			if want := strings.Replace(k, "vmlinuz", "initrd.img", 1); i != want {
				t.Errorf("initramfs %s, want %s", i, want)
			}
		})
	}
}
