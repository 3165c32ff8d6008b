// Package rootfs builds the one Debian bookworm root file system every
// correo host runs on, and keeps it in a cache.
//
// One tree serves both ways a host boots on a machine: as a
// systemd-nspawn container (vm-tests/nspawn, with the tree read-only under
// an overlay) and as the root partition of an appliance image
// (internal/appliance). That is why it carries a kernel, an initramfs, udev
// and the systemd-boot stub although a container needs none of them: one
// build (about 700 MB, a minute and a half) is cheaper than two, and the
// containers then test the very files the image ships. What makes a host
// a particular host (units, network address, configuration, programs) is
// not in it: that is the host's rendered tree (`correoctl host render`),
// laid over this one.
//
// The tree is built by mmdebstrap from the machine's own apt source, so it
// works wherever apt does (here: a mirror, no Internet). It is cached under
// CacheDir in a directory named for a hash of its recipe (suite, variant,
// packages, customize hook): change the recipe and the next Ensure builds a
// new tree; keep it and Ensure returns at once. A build happens in a
// temporary directory next to the cache entry and is renamed into place
// only when complete, under a lock, so concurrent callers build once and a
// crashed build is never mistaken for a finished one.
package rootfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// CacheEnv overrides DefaultCacheDir (and is overridden by
// Options.CacheDir).
const CacheEnv = "CORREO_ROOTFS_CACHE"

// DefaultCacheDir keeps trees where a Debian system keeps rebuildable
// caches.
const DefaultCacheDir = "/var/cache/correo/rootfs"

// Suite and Variant are the Debian release and mmdebstrap variant built.
// minbase is the Essential set plus apt; Packages adds the rest.
const (
	Suite   = "bookworm"
	Variant = "minbase"
)

// Packages is installed on top of the minbase variant.
var Packages = []string{
	// systemd as PID 1, with the D-Bus systemctl and networkd talk over.
	"systemd", "systemd-sysv", "dbus",
	"iproute2",
	// The DNS role's authoritative server and the syslog daemon every
	// host forwards with (the loghost receives with it). Their
	// configuration, and nsd's mask on hosts without the dns role, come
	// from the host's rendered tree.
	"nsd", "rsyslog",
	// The relay verifies remote MX certificates against the system roots.
	"ca-certificates",
	// The appliance image: a kernel, an initramfs to find the root
	// partition, udev (without it the kernel's modules for the NIC are
	// not loaded and networkd waits forever for links to be
	// "initialized"), and the UEFI stub the image's boot loader is built
	// from, so the image's boot path comes from the same Debian as the
	// rest of it.
	"linux-image-amd64", "initramfs-tools", "udev", "systemd-boot-efi",
	// initramfs-tools compresses with zstd (initramfs.conf) and falls
	// back to gzip without it: zstd unpacks several times faster, which
	// counts under QEMU's emulated CPU.
	"zstd",
}

// CustomizeHook runs once the packages are installed, with the tree's path
// as $1 (mmdebstrap's --customize-hook). Everything in it makes a boot
// reach `systemctl is-system-running` = running both in a container and
// under QEMU, without a person at the console.
const CustomizeHook = `set -eu
root="$1"
# Addresses come from the rendered tree's /etc/systemd/network/*.network.
systemctl --root="$root" enable systemd-networkd.service
# remount-fs has nothing to do (the image's kernel command line mounts the
# root read-write; a container's root is nspawn's) and failed once under
# nspawn, leaving the boot "degraded". firstboot would prompt for a locale
# and a root password on the console and wait forever.
systemctl --root="$root" mask systemd-remount-fs.service systemd-firstboot.service
# An appliance is updated by writing a new image, not by apt.
systemctl --root="$root" disable apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true
# An empty machine-id is not a "first boot" (no presets applied over the
# rendered units, no firstboot), and systemd gives every boot an id of its
# own: each container, and each image on its first boot, which then
# commits it to disk (machine-id(5)). dbus falls back to the same file.
: > "$root/etc/machine-id"
# The host's own name and resolver come from its rendered tree, never
# from the machine that built the tree.
rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
# The boot outcome on the console: the one line a person at a serial
# console (and vm-tests) reads to know the host is up. Type=simple, so its
# own job does not keep the boot from finishing while it waits.
cat > "$root/usr/lib/systemd/system/correo-boot-status.service" <<'EOF'
[Unit]
Description=Report the boot outcome on the console
After=multi-user.target

[Service]
ExecStart=/bin/sh -c 'state=$(systemctl is-system-running --wait); echo "correo-boot-status: $state"; [ "$state" = running ] || systemctl --failed --no-legend --plain'
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
EOF
systemctl --root="$root" enable correo-boot-status.service
`

// BootStatusPrefix starts the line correo-boot-status.service writes on the
// console when the boot is over; the state follows ("running",
// "degraded", ...).
const BootStatusPrefix = "correo-boot-status: "

// recipeVersion changes when the way a tree is built changes in a way
// Packages and CustomizeHook do not show (mmdebstrap options).
const recipeVersion = "1"

// Options says where the cache lives and where a build's output goes.
type Options struct {
	// CacheDir holds the trees; "" means $CORREO_ROOTFS_CACHE, or
	// DefaultCacheDir.
	CacheDir string
	// Sources is the apt source the tree is built from; "" means the
	// machine's own (/etc/apt/sources.list.d/debian.sources, or
	// /etc/apt/sources.list).
	Sources string
	// Log receives mmdebstrap's output; nil discards it.
	Log io.Writer
}

// Key names a tree in the cache: the suite and a hash of everything that
// decides its content.
func Key() string {
	return key(Suite, Variant, Packages, CustomizeHook)
}

func key(suite, variant string, packages []string, hook string) string {
	pk := slices.Clone(packages)
	slices.Sort(pk)
	h := sha256.New()
	// Length-prefixed fields: no two recipes hash the same text.
	for _, f := range []string{recipeVersion, suite, variant, strings.Join(pk, ","), hook} {
		fmt.Fprintf(h, "%d:%s\n", len(f), f)
	}
	return suite + "-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// CacheDir is the directory Ensure keeps trees in under opts.
func (o Options) cacheDir() string {
	if o.CacheDir != "" {
		return o.CacheDir
	}
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	return DefaultCacheDir
}

// Cached returns the tree for the current recipe if it is already built.
// Tests that run without the apt mirror (in a private network namespace)
// use it to tell "not built yet" from a failed build.
func Cached(opts Options) (string, bool) {
	dir := filepath.Join(opts.cacheDir(), Key())
	st, err := os.Stat(dir)
	return dir, err == nil && st.IsDir()
}

// Ensure returns the directory of the tree for the current recipe,
// building it first if the cache has none. It needs root (mmdebstrap's
// root mode) and the apt mirror.
func Ensure(ctx context.Context, opts Options) (string, error) {
	cache := opts.cacheDir()
	k := Key()
	final := filepath.Join(cache, k)
	if dir, ok := Cached(opts); ok {
		return dir, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("rootfs: making the cache directory: %w (set %s to a writable directory)", err, CacheEnv)
	}
	unlock, err := lock(ctx, filepath.Join(cache, k+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	// Another caller may have finished the build while we waited.
	if dir, ok := Cached(opts); ok {
		return dir, nil
	}
	// Holding the lock, any build directory for this key is what a
	// crashed or killed build left: never usable, only in the way.
	stale, _ := filepath.Glob(filepath.Join(cache, "."+k+".build-*"))
	for _, s := range stale {
		if err := os.RemoveAll(s); err != nil {
			return "", fmt.Errorf("rootfs: removing %s, left by an interrupted build: %w", s, err)
		}
	}
	src := opts.Sources
	if src == "" {
		if src, err = aptSource("/etc/apt"); err != nil {
			return "", err
		}
	}
	tmp, err := os.MkdirTemp(cache, "."+k+".build-")
	if err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	if err := runBuild(ctx, tmp, src, opts.Log); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		os.RemoveAll(tmp)
		// A cache shared without working locks (NFS): someone else's
		// finished tree is as good as ours.
		if dir, ok := Cached(opts); ok {
			return dir, nil
		}
		return "", fmt.Errorf("rootfs: moving the finished tree into the cache: %w", err)
	}
	return final, nil
}

// runBuild is build; the tests replace it to check the cache's locking
// and clean-up without a real (minute-long) build.
var runBuild = build

// build runs mmdebstrap into dir. mmdebstrap's root mode mounts /proc,
// /sys and /dev inside the tree; a private mount namespace makes sure
// none of those mounts outlives it, even if it is killed.
func build(ctx context.Context, dir, sources string, log io.Writer) error {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return errors.New("rootfs: mmdebstrap is not installed: apt-get install mmdebstrap (or run `make deps`)")
	}
	if log == nil {
		log = io.Discard
	}
	args := mmdebstrapArgs(dir, sources)
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "mmdebstrap"}, args...)...)
	cmd.Stdout = log
	// Keep the tail of stderr for the error: mmdebstrap says there what
	// went wrong (an unreachable mirror, a package that does not exist).
	tail := &tailBuffer{max: 4096}
	cmd.Stderr = io.MultiWriter(log, tail)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	// Killing unshare alone would leave mmdebstrap and apt running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("rootfs: mmdebstrap %s from %s failed after %s: %v\n%s\n(check that apt can reach the mirror in %s: apt-get update)",
			Suite, sources, time.Since(start).Round(time.Second), err, tail.String(), sources)
	}
	return nil
}

// mmdebstrapArgs is the command line that builds the tree into dir.
func mmdebstrapArgs(dir, sources string) []string {
	return []string{
		"--mode=root",
		"--variant=" + Variant,
		"--include=" + strings.Join(Packages, ","),
		"--aptopt=Acquire::Retries \"3\"",
		"--customize-hook=" + CustomizeHook,
		Suite, dir, sources,
	}
}

// aptSource finds the machine's apt source under etcApt (/etc/apt): the
// deb822 file Debian 12 installs, or the classic one-line list.
func aptSource(etcApt string) (string, error) {
	for _, p := range []string{
		filepath.Join(etcApt, "sources.list.d", "debian.sources"),
		filepath.Join(etcApt, "sources.list"),
	} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Size() > 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("rootfs: no apt source in %s/sources.list.d/debian.sources or %s/sources.list: set Options.Sources to a sources file that reaches a Debian %s mirror", etcApt, etcApt, Suite)
}

// lock takes an exclusive flock on path, waiting for ctx. The kernel drops
// it when the holder dies, so a crashed build never blocks the next one.
func lock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("rootfs: opening the build lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("rootfs: locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("rootfs: waiting for another build of the same tree (lock %s): %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return strings.TrimSpace(string(t.b)) }
