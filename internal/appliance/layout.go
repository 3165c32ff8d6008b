package appliance

import (
	"crypto/rand"
	"debug/pe"
	"fmt"
	"strings"
)

// Sizes in bytes. The partitions start and end on MiB boundaries, as
// every partitioning tool does nowadays: aligned for 4 KiB sectors, SSD
// erase blocks and RAID stripes alike.
const (
	sectorSize = 512
	mib        = 1 << 20
)

// GPT partition type GUIDs: the EFI system partition, which the firmware
// searches for \EFI\BOOT\BOOTX64.EFI, and the Discoverable Partitions
// Specification's x86-64 root, so tools such as systemd-repart and
// systemd-gpt-auto-generator know the root partition for what it is.
const (
	typeESP    = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	typeRootX8 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
)

// Partition is a byte range of the image.
type Partition struct {
	Start, Size int64
}

// End is the first byte after the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

// Layout is where everything goes in the image: the primary GPT in the
// first MiB, the ESP, the root partition, and the last MiB left for the
// backup GPT (33 sectors of it used).
type Layout struct {
	Size      int64
	ESP, Root Partition
}

// minRootMB is the smallest root partition worth making: anything
// smaller cannot hold even a minimal Debian.
const minRootMB = 64

// computeLayout places an ESP of espMB and a root partition filling the
// rest of an image of sizeMB.
func computeLayout(sizeMB, espMB int) (Layout, error) {
	if espMB < 33 {
		// FAT32 needs 65525 clusters: 33 MiB at one sector per cluster.
		return Layout{}, fmt.Errorf("EFI system partition of %d MiB is too small for FAT32: give at least 33 MiB", espMB)
	}
	l := Layout{Size: int64(sizeMB) * mib}
	l.ESP = Partition{Start: 1 * mib, Size: int64(espMB) * mib}
	l.Root = Partition{Start: l.ESP.End(), Size: l.Size - mib - l.ESP.End()}
	if l.Root.Size < minRootMB*mib {
		return Layout{}, fmt.Errorf("an image of %d MiB leaves %d MiB for the root partition after the %d MiB ESP and 2 MiB of partition tables: give at least %d MiB",
			sizeMB, l.Root.Size/mib, espMB, espMB+2+minRootMB)
	}
	return l, nil
}

// autoSizeMB is the image size for root content of contentBytes: the
// content plus a quarter (ext4's inode tables, journal and block
// rounding) plus headroom for the host's own data (logs, queue, mail),
// which systemd-repart can grow into the rest of the disk later.
func autoSizeMB(contentBytes int64, espMB int) int {
	rootMB := (contentBytes*5/4+mib-1)/mib + 512
	return int(rootMB) + espMB + 2
}

// sfdiskScript is the partition table for sfdisk: GPT, both partitions
// with their types, names and the given GUIDs (the root's is what the
// kernel command line names).
func sfdiskScript(l Layout, diskGUID, espGUID, rootGUID string) string {
	s := func(b int64) int64 { return b / sectorSize }
	var b strings.Builder
	fmt.Fprintf(&b, "label: gpt\nlabel-id: %s\nunit: sectors\nfirst-lba: %d\n", diskGUID, s(l.ESP.Start))
	fmt.Fprintf(&b, "start=%d, size=%d, type=%s, uuid=%s, name=\"esp\"\n", s(l.ESP.Start), s(l.ESP.Size), typeESP, espGUID)
	fmt.Fprintf(&b, "start=%d, size=%d, type=%s, uuid=%s, name=\"root\"\n", s(l.Root.Start), s(l.Root.Size), typeRootX8, rootGUID)
	return b.String()
}

// kernelCmdline is the command line built into the UKI: the root
// partition by its GPT GUID (stable whatever the disk is called on the
// machine that boots it), read-write from the start (systemd-remount-fs is
// masked in the rootfs), and the console on both the screen and the first
// serial port; the last console= is /dev/console, where systemd's status
// and the boot outcome line go: a rack host's serial-over-LAN, QEMU's log.
func kernelCmdline(rootGUID string, extra []string) string {
	args := []string{"root=PARTUUID=" + strings.ToLower(rootGUID), "rootfstype=ext4", "rw", "console=tty0", "console=ttyS0,115200n8"}
	return strings.Join(append(args, extra...), " ")
}

// ukiSection is one section objcopy adds to the stub.
type ukiSection struct {
	Name string
	Size int64
}

// placeSections gives each section a virtual address after the stub's
// image ends (imageEnd, ImageBase included), aligned to align, in order,
// so that none overlaps the stub or another: fixed addresses (the 0x2000000
// of old recipes) break as soon as a kernel outgrows the gap they leave.
func placeSections(imageEnd, align uint64, secs []ukiSection) []uint64 {
	up := func(v uint64) uint64 { return (v + align - 1) / align * align }
	vmas := make([]uint64, len(secs))
	next := up(imageEnd)
	for i, s := range secs {
		vmas[i] = next
		next = up(next + uint64(s.Size))
	}
	return vmas
}

// stubEnd reads the stub's PE headers: where its image ends (ImageBase
// included, as objcopy's --change-section-vma wants) and its section
// alignment.
func stubEnd(path string) (end, align uint64, err error) {
	f, err := pe.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the UEFI stub %s: %w", path, err)
	}
	defer f.Close()
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		return 0, 0, fmt.Errorf("UEFI stub %s is not a 64-bit PE image: install systemd-boot-efi for amd64", path)
	}
	for _, s := range f.Sections {
		size := max(s.VirtualSize, s.Size)
		end = max(end, uint64(s.VirtualAddress)+uint64(size))
	}
	return oh.ImageBase + end, max(uint64(oh.SectionAlignment), 4096), nil
}

// newGUID is a random (version 4) GUID in the form sfdisk and the kernel's
// PARTUUID= take.
func newGUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("drawing a GUID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
