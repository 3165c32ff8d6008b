package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"correo/internal/testutil"
)

// needFile is NeedCommand for a file a package installs.
func needFile(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if os.Getenv(testutil.StrictEnv) != "" {
		t.Fatalf("%s is required by this test but missing: install %s (make deps)", path, pkg)
	}
	t.Skipf("%s missing; install %s (make deps)", path, pkg)
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(content, "->") {
			if err := os.Symlink(strings.TrimPrefix(content, "->"), p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// copyRange copies partition p of img to its own file.
func copyRange(t *testing.T, img, to string, p Partition) {
	t.Helper()
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, io.NewSectionReader(src, p.Start, p.Size)); err != nil {
		t.Fatal(err)
	}
}

func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// TestBuild writes an image from a small stand-in rootfs (the real one
// takes a minute to build and vm-tests/image boots it) and reads it back
// with other tools than the ones that wrote it: the partition table, the
// boot image's sections on the ESP, and the root file system's files,
// links and owners, the tree's winning over the rootfs's.
func TestBuild(t *testing.T) {
	testutil.NeedRoot(t)
	for _, tool := range append(tools, [2]string{"debugfs", "e2fsprogs"}, [2]string{"e2fsck", "e2fsprogs"}) {
		testutil.NeedCommand(t, tool[0])
	}
	stub := "/" + stubPath
	needFile(t, stub, "systemd-boot-efi")

	dir := t.TempDir()
	rootfs, tree := filepath.Join(dir, "rootfs"), filepath.Join(dir, "tree")
	writeFiles(t, rootfs, map[string]string{
		"boot/vmlinuz-6.1.0-9-amd64":    "not a kernel, but objcopy does not mind",
		"boot/initrd.img-6.1.0-9-amd64": "not an initramfs either",
		"vmlinuz":                       "->boot/vmlinuz-6.1.0-9-amd64",
		"initrd.img":                    "->boot/initrd.img-6.1.0-9-amd64",
		"usr/lib/os-release":            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
		"etc/os-release":                "->../usr/lib/os-release",
		"etc/hostname":                  "builder\n",
		"etc/shadow":                    "root:*:19000:0:99999:7:::\n",
		"usr/bin/tool":                  "#!/bin/sh\n",
		"var/lib/owned":                 "owned by 1234",
	})
	if err := os.Chmod(filepath.Join(rootfs, "etc/shadow"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(rootfs, "var/lib/owned"), 1234, 1235); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, tree, map[string]string{
		"etc/hostname":                          "store1\n",
		"etc/systemd/system/nsd.service":        "->/dev/null",
		"usr/libexec/correo/pdeliveryd":         "a program",
		"etc/systemd/network/10-correo.network": "[Match]\nName=en*\n",
	})

	out := filepath.Join(dir, "out", "store1.img")
	if err := os.Mkdir(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := Build(context.Background(), Options{RootFS: rootfs, Tree: tree, Out: out, Stub: stub, Cmdline: []string{"panic=30"}, Log: &log})
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, log.String())
	}
	t.Logf("%s", log.String())

	st, err := os.Stat(out)
	if err != nil || st.Size() != res.Layout.Size {
		t.Fatalf("image %s: %v, size %d, want %d", out, err, st.Size(), res.Layout.Size)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "out", ".*")); len(left) > 0 {
		t.Errorf("work files left next to the image: %v", left)
	}

	t.Run("partition table", func(t *testing.T) {
		var pt struct {
			PartitionTable struct {
				Label      string
				Partitions []struct {
					Start, Size int64
					Type, UUID  string
					Name        string
				}
			}
		}
		if err := json.Unmarshal([]byte(output(t, "sfdisk", "--json", out)), &pt); err != nil {
			t.Fatal(err)
		}
		ps := pt.PartitionTable.Partitions
		if pt.PartitionTable.Label != "gpt" || len(ps) != 2 {
			t.Fatalf("partition table %+v, want GPT with two partitions", pt.PartitionTable)
		}
		for i, want := range []struct {
			p         Partition
			typ, name string
		}{{res.Layout.ESP, typeESP, "esp"}, {res.Layout.Root, typeRootX8, "root"}} {
			got := ps[i]
			if got.Start*sectorSize != want.p.Start || got.Size*sectorSize != want.p.Size || got.Type != want.typ || got.Name != want.name {
				t.Errorf("partition %d = %+v, want %+v type %s name %s", i+1, got, want.p, want.typ, want.name)
			}
		}
		if !strings.EqualFold(ps[1].UUID, res.RootGUID) {
			t.Errorf("root partition GUID %s, the command line names %s", ps[1].UUID, res.RootGUID)
		}
		if !strings.Contains(res.Cmdline, "root=PARTUUID="+res.RootGUID) || !strings.HasSuffix(res.Cmdline, " panic=30") {
			t.Errorf("command line %q", res.Cmdline)
		}
	})

	t.Run("boot image on the ESP", func(t *testing.T) {
		esp := out + "@@" + strconv.FormatInt(res.Layout.ESP.Start, 10)
		uki := filepath.Join(dir, "BOOTX64.EFI")
		output(t, "mcopy", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI", uki)
		for section, want := range map[string]string{
			".cmdline": res.Cmdline,
			".linux":   "not a kernel, but objcopy does not mind",
			".initrd":  "not an initramfs either",
			".osrel":   "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
		} {
			f := filepath.Join(dir, "section"+section)
			output(t, "objcopy", "-O", "binary", "--only-section="+section, uki, f)
			got, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			// PE sections are padded to the file alignment with zeros.
			if g := string(bytes.TrimRight(got, "\x00")); g != want {
				t.Errorf("section %s = %q, want %q", section, g, want)
			}
		}
		// fsck.fat takes no offset: check a copy of the partition.
		part := filepath.Join(dir, "esp.img")
		copyRange(t, out, part, res.Layout.ESP)
		if s := output(t, "fsck.fat", "-v", "-n", part); !strings.Contains(s, "32 bit entries") || !strings.Contains(s, "2048 hidden sectors") {
			t.Errorf("the ESP is not FAT32 starting at sector 2048:\n%s", s)
		}
	})

	t.Run("root file system", func(t *testing.T) {
		fs := out + "?offset=" + strconv.FormatInt(res.Layout.Root.Start, 10)
		output(t, "e2fsck", "-fn", fs)
		cat := func(p string) string { return output(t, "debugfs", "-R", "cat "+p, fs) }
		stat := func(p string) string { return output(t, "debugfs", "-R", "stat "+p, fs) }
		if got := cat("/etc/hostname"); got != "store1\n" {
			t.Errorf("/etc/hostname = %q: the tree's file must win over the rootfs's", got)
		}
		if got := cat("/usr/bin/tool"); got != "#!/bin/sh\n" {
			t.Errorf("/usr/bin/tool = %q: the rootfs's files must be there", got)
		}
		if got := cat("/usr/libexec/correo/pdeliveryd"); got != "a program" {
			t.Errorf("/usr/libexec/correo/pdeliveryd = %q: the tree's files must be there", got)
		}
		if s := stat("/etc/systemd/system/nsd.service"); !strings.Contains(s, "Type: symlink") || !strings.Contains(s, `"/dev/null"`) {
			t.Errorf("the tree's mask is not a link to /dev/null:\n%s", s)
		}
		if s := stat("/var/lib/owned"); !strings.Contains(s, "User:  1234") || !strings.Contains(s, "Group:  1235") {
			t.Errorf("owner not kept:\n%s", s)
		}
		if s := stat("/etc/shadow"); !strings.Contains(s, "Mode:  0640") {
			t.Errorf("mode not kept:\n%s", s)
		}
	})

	t.Run("too small an image is refused", func(t *testing.T) {
		small := filepath.Join(dir, "out", "small.img")
		_, err := Build(context.Background(), Options{RootFS: rootfs, Tree: tree, Out: small, Stub: stub, SizeMB: 100})
		if err == nil || !strings.Contains(err.Error(), "give at least") {
			t.Fatalf("Build of a 100 MiB image = %v; want an error saying what size to give", err)
		}
		if _, err := os.Stat(small); err == nil {
			t.Error("a refused build left an image")
		}
	})
}
