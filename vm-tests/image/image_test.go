// Package image boots a correo appliance image under QEMU: the image `make
// image` writes for one host of hosts/example.toml, booted by UEFI
// firmware (OVMF) from its own disk, on the profile's network, checked
// from outside by the cluster's own clients.
package image

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/internal/rootfs"
	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/nss/nsstest"
	"correo/src/pwadmin"
	"correo/src/pwclient"
	"correo/src/runner"
)

func TestMain(m *testing.M) {
	code := clustertest.Run(m)
	nsstest.Cleanup()
	os.Exit(code)
}

const (
	profilePath = "../../hosts/example.toml"
	// pw1 is the passwd-primary: its daemons answer from outside with
	// nothing but the cluster key, and need no other host to be up.
	hostName = "pw1"
	ovmf     = "/usr/share/ovmf/OVMF.fd"
)

// TestApplianceBoots builds pw1's image as `make image` does (the same
// mkimage command), boots it under QEMU with TCG (KVM hangs on this kind
// of machine) behind a tap device in a network namespace of its own, and
// checks from outside: passwdd answers sealed queries and admin commands
// on the profile's address, and the boot reached multi-user.target with
// `systemctl is-system-running` = running.
func TestApplianceBoots(t *testing.T) {
	testutil.NeedRoot(t)
	for _, c := range []string{"qemu-system-x86_64", "ip", "sfdisk", "objcopy", "mkfs.fat", "mcopy", "mmd", "mke2fs", "unshare"} {
		testutil.NeedCommand(t, c)
	}
	needFile(t, ovmf, "ovmf")
	needFile(t, "/dev/net/tun", "the tun module (modprobe tun)")
	needRootFS(t)

	p, err := cluster.Load(profilePath, cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	host, err := p.Host(hostName)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "cluster.key")
	ring, err := keyfile.Create(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, hostName+".img")
	buildImage(t, dir, keyPath, img)

	ns := newNetns(t, p, host)
	serial := filepath.Join(dir, "serial.log")
	start := time.Now()
	vm := bootQEMU(t, ns, img, serial, host)

	// Ready: passwdd answers a ping sealed with the cluster key.
	passwd, _ := p.Listen(hostName, cluster.SvcPasswd)
	admin, _ := p.Listen(hostName, cluster.SvcPasswdAdmin)
	var pc *pwclient.Client
	err = runner.InNetns(ns, func() error {
		var err error
		// The sockets are made here, inside the namespace; the client's
		// reader goroutines only use them.
		pc, err = pwclient.New(pwclient.Config{Primary: passwd, Ring: ring, Timeout: 2 * time.Second})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	deadline := bootDeadline(t)
	var ready time.Duration
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		info, err := pc.Ping(ctx, pwclient.Primary)
		cancel()
		if err == nil {
			ready = time.Since(start)
			t.Logf("passwdd on %s answered after %s: %+v", passwd, ready.Round(100*time.Millisecond), info)
			break
		}
		if vm.exited() {
			t.Fatalf("QEMU exited before passwdd answered: %v\n%s", vm.err, tail(serial, 80))
		}
		if time.Now().After(deadline) {
			t.Fatalf("passwdd on %s did not answer within %s of power-on (last: %v); the console:\n%s", passwd, time.Since(start).Round(time.Second), err, tail(serial, 80))
		}
		time.Sleep(time.Second)
	}

	t.Run("passwd admin and query", func(t *testing.T) {
		// An admin command over the sealed TCP stream, then the user
		// read back over the sealed UDP query path.
		err := runner.InNetns(ns, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			adm, err := pwadmin.Dial(ctx, admin.String(), ring)
			if err != nil {
				return fmt.Errorf("dialling passwdd's admin port %s: %w", admin, err)
			}
			defer adm.Close()
			adm.Timeout = 30 * time.Second
			_, err = adm.Do(pwadmin.Request{Op: pwadmin.OpUserAdd, User: &directory.User{Name: "juan", UID: 5001, Gecos: "Juan Perez", Shell: "/bin/sh"}})
			return err
		})
		if err != nil {
			t.Fatalf("adding a user on %s: %v", admin, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		u, err := pc.LookupName(ctx, "juan")
		if err != nil || u.UID != 5001 || u.Storage == "" {
			t.Fatalf("LookupName(juan) on %s = %+v, %v; want uid 5001 placed on a storage host", passwd, u, err)
		}
	})

	t.Run("system running", func(t *testing.T) {
		state, at := waitBootStatus(t, vm, serial, deadline, start)
		if state != "running" {
			t.Fatalf("systemctl is-system-running = %q; the console:\n%s", state, tail(serial, 80))
		}
		// systemd colours its status lines.
		console := ansi.ReplaceAll(readFile(t, serial), nil)
		if want := "Reached target multi-user.target"; !bytes.Contains(console, []byte(want)) {
			t.Errorf("the console never said %q", want)
		}
		t.Logf("systemctl is-system-running = running %s after power-on", at.Round(100*time.Millisecond))
	})

	// The figure this test exists to give: printed as well as logged, so
	// `go test -v` and a failing run's output both carry it.
	msg := fmt.Sprintf("appliance image %s: power-on to passwdd answering in %s (QEMU TCG, UEFI, %d vCPUs)", hostName, ready.Round(100*time.Millisecond), qemuCPUs)
	t.Log(msg)
	fmt.Println(msg)
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

// needFile is testutil.NeedCommand for a file a package provides.
func needFile(t *testing.T, path, what string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if os.Getenv(testutil.StrictEnv) != "" {
		t.Fatalf("%s is required by this test but missing: install %s (make deps)", path, what)
	}
	t.Skipf("%s missing; install %s (make deps)", path, what)
}

// needRootFS makes sure the Debian rootfs is in the cache. The test
// command runs the tests in a network namespace without the apt mirror,
// so it builds the rootfs first (make rootfs); a test run outside it may
// build it here.
func needRootFS(t *testing.T) {
	t.Helper()
	if _, ok := rootfs.Cached(rootfs.Options{}); ok {
		return
	}
	testutil.NeedCommand(t, "mmdebstrap")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	dir, err := rootfs.Ensure(ctx, rootfs.Options{})
	if err == nil {
		t.Logf("built the rootfs %s in %s", dir, time.Since(start).Round(time.Second))
		return
	}
	msg := fmt.Sprintf("the Debian rootfs is not built and building it here failed (the tests run without the apt mirror): run `make rootfs` first\n%v", err)
	if os.Getenv(testutil.StrictEnv) != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// buildImage runs mkimage, the command behind `make image`, on a bin
// directory holding what `make build` leaves in bin/.
func buildImage(t *testing.T, dir, keyPath, img string) {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	progs := clustertest.BuildAll(t, false)
	ents, err := os.ReadDir(progs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		copyFile(t, filepath.Join(progs, e.Name()), filepath.Join(bin, e.Name()))
	}
	copyFile(t, nsstest.NeedLib(t), filepath.Join(bin, "libnss_correo.so.2"))

	mkimage := filepath.Join(dir, "mkimage")
	if out, err := exec.Command("go", "build", "-o", mkimage, "correo/internal/cmd/mkimage").CombinedOutput(); err != nil {
		t.Fatalf("go build mkimage: %v\n%s", err, out)
	}
	start := time.Now()
	out, err := exec.Command(mkimage, "-profile", profilePath, "-host", hostName, "-bin", bin, "-key", keyPath, "-out", img).CombinedOutput()
	if err != nil {
		t.Fatalf("mkimage: %v\n%s", err, out)
	}
	st, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	var used int64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		used = sys.Blocks * 512
	}
	t.Logf("built %s in %s: %d MiB, %d MiB allocated\n%s", img, time.Since(start).Round(100*time.Millisecond), st.Size()>>20, used>>20, out)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// newNetns makes a network namespace holding a tap device with a free
// address of the profile's network, which QEMU's virtual NIC is plugged
// into: the test reaches the image on the profile's own address, and
// nothing touches the machine's network, whether the test runs in the
// test command's private namespace or not.
func newNetns(t *testing.T, p *cluster.Profile, host *cluster.Host) string {
	t.Helper()
	removeStaleNetns()
	name := fmt.Sprintf("correo-img-%d", os.Getpid())
	addr, err := freeAddr(p)
	if err != nil {
		t.Fatal(err)
	}
	prefix := netip.PrefixFrom(addr, p.NetworkPrefix().Bits())
	ip(t, "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ip(t, "-n", name, "link", "set", "lo", "up")
	ip(t, "-n", name, "tuntap", "add", "dev", "tap0", "mode", "tap")
	ip(t, "-n", name, "addr", "add", prefix.String(), "dev", "tap0")
	ip(t, "-n", name, "link", "set", "tap0", "up")
	t.Logf("network namespace %s: tap0 %s, the image's %s at %s", name, prefix, host.Name, host.Addr())
	return name
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// removeStaleNetns deletes the namespaces of earlier runs whose process is
// gone (killed before its cleanup ran).
func removeStaleNetns() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		pid, ok := strings.CutPrefix(e.Name(), "correo-img-")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(pid); err == nil && syscall.Kill(n, 0) == syscall.ESRCH {
			exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
}

// freeAddr is the first address of the profile's network that no host
// has: the outside end of the link.
func freeAddr(p *cluster.Profile) (netip.Addr, error) {
	used := map[netip.Addr]bool{}
	for _, h := range p.Hosts {
		used[h.Addr()] = true
	}
	pfx := p.NetworkPrefix()
	for a := pfx.Addr().Next(); pfx.Contains(a); a = a.Next() {
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s: no free address in %s for the test's end of the link", p.Source, pfx)
}

const qemuCPUs = 2

// vm is a running QEMU.
type vm struct {
	done chan struct{}
	err  error
}

func (v *vm) exited() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// bootQEMU powers the image on: UEFI firmware, the image as a virtio
// disk, a virtio NIC on the namespace's tap, the serial console into a
// file, and nothing else (-nodefaults).
func bootQEMU(t *testing.T, ns, img, serial string, host *cluster.Host) *vm {
	t.Helper()
	a := host.Addr().As4()
	mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", a[1], a[2], a[3])
	args := []string{"netns", "exec", ns, "qemu-system-x86_64",
		"-accel", "tcg", "-bios", ovmf,
		"-m", "1024", "-smp", strconv.Itoa(qemuCPUs),
		"-nodefaults", "-display", "none", "-no-reboot",
		"-serial", "file:" + serial,
		"-drive", "file=" + img + ",format=raw,if=virtio",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=" + mac,
	}
	cmd := exec.Command("ip", args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// ip netns exec becomes QEMU: killing it is killing QEMU, also when
	// the test process dies without its cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting QEMU: %v", err)
	}
	v := &vm{done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
		}
		v.err = err
		close(v.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-v.done
	})
	return v
}

// bootDeadline leaves the boot what the test's own deadline allows (at
// most ten minutes: TCG on a busy two-core machine is slow, not stuck).
func bootDeadline(t *testing.T) time.Time {
	d := time.Now().Add(10 * time.Minute)
	if td, ok := t.Deadline(); ok && td.Add(-30*time.Second).Before(d) {
		d = td.Add(-30 * time.Second)
	}
	return d
}

// waitBootStatus waits for correo-boot-status.service's console line and
// returns the state it reports and when it appeared.
func waitBootStatus(t *testing.T, v *vm, serial string, deadline, start time.Time) (string, time.Duration) {
	t.Helper()
	for {
		sc := bufio.NewScanner(bytes.NewReader(readFile(t, serial)))
		for sc.Scan() {
			if _, state, ok := strings.Cut(sc.Text(), rootfs.BootStatusPrefix); ok {
				return strings.TrimSpace(state), time.Since(start)
			}
		}
		if v.exited() {
			t.Fatalf("QEMU exited before the boot finished: %v\n%s", v.err, tail(serial, 80))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q line on the console within %s of power-on:\n%s", rootfs.BootStatusPrefix, time.Since(start).Round(time.Second), tail(serial, 80))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return b
}

// tail is the last n lines of a file, for a failure message.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no console log: %v)", err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
