// Package appliance writes a correo host as a raw disk image: the file a
// person writes to a disk with dd, or boots under QEMU.
//
// The image is GPT with two partitions. The EFI system partition (FAT32)
// holds one file, \EFI\BOOT\BOOTX64.EFI: a Unified Kernel Image, i.e.
// systemd's UEFI stub with the kernel, the initramfs, the kernel command
// line and os-release added as PE sections. The firmware starts it from
// the removable-media path, so no boot loader, no NVRAM entry and no
// configuration are needed. The root partition is ext4 holding the Debian
// root file system (internal/rootfs) with the host's rendered tree laid
// over it.
//
// Everything is written into the image file itself with tools that take a
// file and an offset (sfdisk, mkfs.fat --offset, mtools' @@offset, mke2fs
// -E offset -d): no loop devices and no mounts on the machine, so it
// builds wherever those are not allowed (CI containers). The one mount, an
// overlay merging the tree over the rootfs for mke2fs to read, lives in a
// private mount namespace that dies with mke2fs.
package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Options says what goes into an image and where it is written.
type Options struct {
	// RootFS is the root file system (rootfs.Ensure); its /boot holds the
	// kernel and initramfs that boot it.
	RootFS string
	// Tree is the host's rendered tree, laid over RootFS (its files win).
	// "" builds the bare rootfs.
	Tree string
	// Out is the image file written (replaced atomically if it exists).
	Out string
	// SizeMB is the whole image's size in MiB; 0 fits the content with
	// 512 MiB to spare.
	SizeMB int
	// ESPSizeMB is the EFI system partition's size; 0 means 256.
	ESPSizeMB int
	// Cmdline is added to the kernel command line.
	Cmdline []string
	// Stub is the UEFI stub the boot image is built from; "" takes
	// systemd-boot-efi's from RootFS, or else from this machine.
	Stub string
	// Log receives one line per step; nil discards them.
	Log io.Writer
}

// Result describes a written image.
type Result struct {
	Layout   Layout
	RootGUID string // the root partition's GPT GUID (root=PARTUUID=)
	Cmdline  string
	Kernel   string // the kernel's file name in RootFS/boot
	UKISize  int64
}

const stubPath = "usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// tools lists the programs Build runs and the Debian package of each, for
// an error that says what to install.
var tools = [][2]string{
	{"sfdisk", "fdisk"},
	{"objcopy", "binutils"},
	{"mkfs.fat", "dosfstools"},
	{"mmd", "mtools"},
	{"mcopy", "mtools"},
	{"mke2fs", "e2fsprogs"},
	{"unshare", "util-linux"},
}

// Build writes the image. It needs root: the overlay mount, and reading
// the rootfs's root-only files (/etc/shadow) for mke2fs.
func Build(ctx context.Context, opts Options) (*Result, error) {
	logf := func(format string, a ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "image: "+format+"\n", a...)
		}
	}
	if opts.RootFS == "" || opts.Out == "" {
		return nil, errors.New("appliance: Options.RootFS and Options.Out are required")
	}
	var missing []string
	for _, t := range tools {
		if _, err := lookPath(t[0]); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", t[0], t[1]))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("appliance: missing programs: %s; install them (make deps)", strings.Join(missing, ", "))
	}
	for _, d := range []string{opts.RootFS, opts.Tree} {
		if d == "" {
			continue
		}
		if strings.ContainsAny(d, ":,") {
			// overlayfs's lowerdir= splits on both.
			return nil, fmt.Errorf("appliance: %s: a directory whose path holds ':' or ',' cannot be an overlay layer: move it", d)
		}
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("appliance: %s is not a directory (%v)", d, err)
		}
	}
	espMB := opts.ESPSizeMB
	if espMB == 0 {
		espMB = 256
	}
	kernel, initrd, err := findKernel(opts.RootFS)
	if err != nil {
		return nil, err
	}
	stub := opts.Stub
	if stub == "" {
		stub = filepath.Join(opts.RootFS, stubPath)
		if _, err := os.Stat(stub); err != nil {
			stub = "/" + stubPath
		}
	}

	content, err := contentSize(opts.RootFS, opts.Tree)
	if err != nil {
		return nil, err
	}
	sizeMB := opts.SizeMB
	if sizeMB == 0 {
		sizeMB = autoSizeMB(content, espMB)
	}
	layout, err := computeLayout(sizeMB, espMB)
	if err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	// ext4's own overhead (inode tables, journal) is about a tenth.
	if need := content + content/10; layout.Root.Size < need {
		return nil, fmt.Errorf("appliance: %d MiB of root content does not fit a %d MiB root partition: give an image of at least %d MiB (or 0 to size it automatically)",
			content/mib, layout.Root.Size/mib, autoSizeMB(content, espMB)-512)
	}
	var guids [4]string
	for i := range guids {
		if guids[i], err = newGUID(); err != nil {
			return nil, fmt.Errorf("appliance: %w", err)
		}
	}
	diskGUID, espGUID, rootGUID, fsUUID := guids[0], guids[1], guids[2], guids[3]
	res := &Result{Layout: layout, RootGUID: rootGUID, Cmdline: kernelCmdline(rootGUID, opts.Cmdline), Kernel: filepath.Base(kernel)}

	work, err := os.MkdirTemp(filepath.Dir(opts.Out), "."+filepath.Base(opts.Out)+".build-")
	if err != nil {
		return nil, fmt.Errorf("appliance: making a work directory next to %s: %w", opts.Out, err)
	}
	defer os.RemoveAll(work)
	img := filepath.Join(work, "disk.img")

	start := time.Now()
	f, err := os.Create(img)
	if err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	// Sparse: only what the file systems write takes space.
	err = f.Truncate(layout.Size)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("appliance: sizing %s to %d MiB: %w", img, sizeMB, err)
	}
	logf("%d MiB: ESP %d MiB, root %d MiB (content %d MiB), kernel %s", sizeMB, layout.ESP.Size/mib, layout.Root.Size/mib, content/mib, res.Kernel)

	script := sfdiskScript(layout, diskGUID, espGUID, rootGUID)
	if err := run(ctx, strings.NewReader(script), "sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", img); err != nil {
		return nil, fmt.Errorf("appliance: partitioning: %w", err)
	}

	uki := filepath.Join(work, "BOOTX64.EFI")
	if err := buildUKI(ctx, stub, kernel, initrd, filepath.Join(opts.RootFS, "usr/lib/os-release"), res.Cmdline, work, uki); err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	if st, err := os.Stat(uki); err == nil {
		res.UKISize = st.Size()
		if res.UKISize > layout.ESP.Size*9/10 {
			return nil, fmt.Errorf("appliance: the boot image is %d MiB, too big for a %d MiB ESP: raise ESPSizeMB", res.UKISize/mib, espMB)
		}
	}
	logf("boot image %d MiB, cmdline %q", res.UKISize/mib, res.Cmdline)

	if err := writeESP(ctx, img, layout.ESP, uki); err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	if err := writeRoot(ctx, img, layout.Root, fsUUID, opts.RootFS, opts.Tree, work); err != nil {
		return nil, fmt.Errorf("appliance: %w", err)
	}
	if err := os.Rename(img, opts.Out); err != nil {
		return nil, fmt.Errorf("appliance: moving the finished image to %s: %w", opts.Out, err)
	}
	logf("wrote %s in %s", opts.Out, time.Since(start).Round(100*time.Millisecond))
	return res, nil
}

// findKernel picks the kernel and initramfs that boot the rootfs: the ones
// Debian's /vmlinuz and /initrd.img links name (the newest installed),
// else the only pair in /boot.
func findKernel(root string) (kernel, initrd string, err error) {
	k, kerr := linkInTree(root, "vmlinuz")
	i, ierr := linkInTree(root, "initrd.img")
	if kerr == nil && ierr == nil {
		return k, i, nil
	}
	ks, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(ks) != 1 {
		return "", "", fmt.Errorf("appliance: want one kernel in %s/boot, found %d (%v), and no /vmlinuz and /initrd.img links naming one: install linux-image-amd64 and initramfs-tools in the rootfs", root, len(ks), ks)
	}
	ver := strings.TrimPrefix(filepath.Base(ks[0]), "vmlinuz-")
	i = filepath.Join(root, "boot", "initrd.img-"+ver)
	if _, err := os.Stat(i); err != nil {
		return "", "", fmt.Errorf("appliance: kernel %s has no initramfs %s: install initramfs-tools in the rootfs", ks[0], i)
	}
	return ks[0], i, nil
}

// linkInTree resolves the symlink root/name as the booted system would:
// an absolute target is inside root, not on this machine.
func linkInTree(root, name string) (string, error) {
	target, err := os.Readlink(filepath.Join(root, name))
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, target) // relative targets are relative to root too
	st, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a file", p)
	}
	return p, nil
}

// buildUKI adds the kernel, initramfs, command line and os-release to the
// stub as the sections systemd-stub reads (systemd 252 has no ukify).
func buildUKI(ctx context.Context, stub, kernel, initrd, osrel, cmdline, work, out string) error {
	end, align, err := stubEnd(stub)
	if err != nil {
		return err
	}
	cmdFile := filepath.Join(work, "cmdline")
	if err := os.WriteFile(cmdFile, []byte(cmdline), 0o644); err != nil {
		return err
	}
	files := []struct{ name, path string }{
		{".osrel", osrel}, {".cmdline", cmdFile}, {".linux", kernel}, {".initrd", initrd},
	}
	secs := make([]ukiSection, len(files))
	for i, f := range files {
		st, err := os.Stat(f.path)
		if err != nil {
			return fmt.Errorf("boot image section %s: %w", f.name, err)
		}
		secs[i] = ukiSection{Name: f.name, Size: st.Size()}
	}
	vmas := placeSections(end, align, secs)
	var args []string
	for i, f := range files {
		args = append(args,
			"--add-section", f.name+"="+f.path,
			"--change-section-vma", fmt.Sprintf("%s=%#x", f.name, vmas[i]))
	}
	args = append(args, stub, out)
	if err := run(ctx, nil, "objcopy", args...); err != nil {
		return fmt.Errorf("building the boot image from %s: %w", stub, err)
	}
	return nil
}

// writeESP formats the ESP in place and copies the boot image to the path
// UEFI firmware boots from removable media.
func writeESP(ctx context.Context, img string, p Partition, uki string) error {
	// One sector per cluster: mkfs.fat's default of 4 KiB leaves a
	// 256 MiB partition under FAT32's 65525-cluster minimum, which tools
	// then read as FAT16. Hidden sectors (-h) is where the partition
	// starts, as firmware reading the boot sector expects.
	start := strconv.FormatInt(p.Start/sectorSize, 10)
	if err := run(ctx, nil, "mkfs.fat", "-F", "32", "-s", "1", "-h", start, "-n", "ESP", "--offset="+start,
		img, strconv.FormatInt(p.Size/1024, 10)); err != nil {
		return fmt.Errorf("formatting the ESP: %w", err)
	}
	at := img + "@@" + strconv.FormatInt(p.Start, 10)
	if err := run(ctx, nil, "mmd", "-i", at, "::/EFI", "::/EFI/BOOT"); err != nil {
		return fmt.Errorf("making EFI/BOOT on the ESP: %w", err)
	}
	if err := run(ctx, nil, "mcopy", "-i", at, uki, "::/EFI/BOOT/BOOTX64.EFI"); err != nil {
		return fmt.Errorf("copying the boot image to the ESP: %w", err)
	}
	return nil
}

// writeRoot makes the root ext4 in place from the rootfs with the tree
// over it. The merge is an overlay mounted in a private mount namespace
// (gone with mke2fs): nothing is copied, nothing is mounted on the machine.
func writeRoot(ctx context.Context, img string, p Partition, fsUUID, rootfs, tree, work string) error {
	merged := filepath.Join(work, "merged")
	if err := os.Mkdir(merged, 0o755); err != nil {
		return err
	}
	lower := rootfs
	if tree != "" {
		lower = tree + ":" + rootfs
	}
	const blockSize = 4096
	script := `mount -t overlay correo-image -o ro,lowerdir="$1" "$2" && shift 2 && exec "$@"`
	args := []string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", lower, merged,
		"mke2fs", "-q", "-F", "-t", "ext4", "-b", strconv.Itoa(blockSize), "-L", "root", "-U", fsUUID,
		"-E", "offset=" + strconv.FormatInt(p.Start, 10) + ",root_owner=0:0",
		"-d", merged, img, strconv.FormatInt(p.Size/blockSize, 10)}
	if err := run(ctx, nil, "unshare", args...); err != nil {
		return fmt.Errorf("making the root file system from %s: %w", lower, err)
	}
	return nil
}

// contentSize is what the merged tree takes in 4 KiB blocks, plus an
// inode each: the tree counts fully (it is small, and overrides are rare).
func contentSize(dirs ...string) (int64, error) {
	var total int64
	for _, d := range dirs {
		if d == "" {
			continue
		}
		err := filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			total += 256
			if e.Type().IsRegular() {
				info, err := e.Info()
				if err != nil {
					return err
				}
				total += (info.Size() + 4095) / 4096 * 4096
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("appliance: measuring %s: %w", d, err)
		}
	}
	return total, nil
}

// run runs a program, and on failure returns its output with the error.
func run(ctx context.Context, stdin io.Reader, name string, args ...string) error {
	path, err := lookPath(name)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = stdin
	// mtools refuses FAT geometries that do not match a floppy's or a
	// disk's idea of tracks; ours come from mkfs.fat and are fine.
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// lookPath finds a program on PATH or in the sbin directories a non-root
// PATH leaves out.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p, err := exec.LookPath(filepath.Join(dir, name)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}
