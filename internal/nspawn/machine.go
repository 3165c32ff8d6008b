// Package nspawn boots a host's file tree as a container with systemd as
// PID 1 (systemd-nspawn -b), for tests that run correo hosts the way
// they run in production: rendered units, sysusers, tmpfiles, networkd,
// rsyslog and nsd, all started by systemd.
//
// A machine's root is an overlay mount made by this package: the layers
// (the host's rendered tree, extra test files) over a shared read-only
// Debian root file system (internal/rootfs), with a private upper layer,
// so any number of hosts share one rootfs and leave it untouched. Call
// from a private mount namespace (the test command runs under unshare -m):
// the mounts are then invisible to the rest of the machine and vanish with
// the process.
//
// The host runs no machined, so machines are started with --register=no
// and found by their leader process (the container's PID 1): commands run
// inside with nsenter, and the machine's network namespace is attached
// under a name for `ip netns exec` and runner.InNetns.
package nspawn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config describes one machine.
type Config struct {
	// Name is the machine and host name (at most 12 bytes: the host end of
	// its veth link is "vb-" + Name).
	Name string
	// Layers are the directories stacked into the root, topmost first; the
	// last is the base root file system. None is written to.
	Layers []string
	// Dir holds the machine's upper layer, overlay work directory, root
	// mount point and console log.
	Dir string
	// Bridge is the bridge the machine's veth joins (--network-bridge).
	Bridge string
}

// Machine is a booted container.
type Machine struct {
	Name string
	// Root is the machine's root as this process sees it.
	Root string
	// Leader is the pid of the machine's systemd, as this process sees it.
	Leader int
	// Console is the file systemd-nspawn's console output goes to.
	Console string
	// NetnsName is the name its network namespace is attached under
	// (ip netns), once AttachNetns has run.
	NetnsName string

	cmd  *exec.Cmd
	done chan error
}

// Veth is the host end of the machine's link on the bridge.
func (m *Machine) Veth() string { return "vb-" + m.Name }

// Boot mounts the machine's root and starts systemd-nspawn -b. It returns
// once the container's systemd runs (not when the boot is done: see
// WaitBooted).
func Boot(ctx context.Context, c Config) (*Machine, error) {
	if len(c.Name) > 12 {
		return nil, fmt.Errorf("machine name %q: at most 12 bytes (its link vb-%s must fit in 15)", c.Name, c.Name)
	}
	if len(c.Layers) < 1 {
		return nil, fmt.Errorf("machine %s: no layers", c.Name)
	}
	upper, work, root := filepath.Join(c.Dir, "upper"), filepath.Join(c.Dir, "work"), filepath.Join(c.Dir, "root")
	for _, d := range []string{upper, work, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	opts := "lowerdir=" + strings.Join(c.Layers, ":") + ",upperdir=" + upper + ",workdir=" + work
	if err := syscall.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return nil, fmt.Errorf("machine %s: mounting its root (overlay %s): %w", c.Name, opts, err)
	}
	m := &Machine{Name: c.Name, Root: root, Console: filepath.Join(c.Dir, "console.log"), done: make(chan error, 1)}
	console, err := os.Create(m.Console)
	if err != nil {
		syscall.Unmount(root, syscall.MNT_DETACH)
		return nil, err
	}
	defer console.Close()
	m.cmd = exec.Command("systemd-nspawn", "--directory="+root, "--boot", "--register=no", "--keep-unit",
		"--machine="+c.Name, "--network-bridge="+c.Bridge, "--resolv-conf=off", "--timezone=off",
		"--link-journal=no", "--console=read-only")
	m.cmd.Stdout, m.cmd.Stderr = console, console
	// Its own process group: a Ctrl-C of the test reaches us, and we stop
	// the machines in order.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		syscall.Unmount(root, syscall.MNT_DETACH)
		return nil, fmt.Errorf("machine %s: systemd-nspawn: %w", c.Name, err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	if err := m.findLeader(ctx); err != nil {
		m.Shutdown(5 * time.Second)
		return nil, err
	}
	return m, nil
}

// findLeader waits for nspawn's child that runs systemd.
func (m *Machine) findLeader(ctx context.Context) error {
	pid := m.cmd.Process.Pid
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		for _, f := range strings.Fields(string(b)) {
			child, _ := strconv.Atoi(f)
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", child)); strings.TrimSpace(string(comm)) == "systemd" {
				m.Leader = child
				return nil
			}
		}
		select {
		case err := <-m.done:
			m.done <- err
			return fmt.Errorf("machine %s: systemd-nspawn exited (%v) before the container's systemd ran:\n%s", m.Name, err, m.tail())
		case <-ctx.Done():
			return fmt.Errorf("machine %s: waiting for the container's systemd: %w", m.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tail is the end of the console log, for error messages.
func (m *Machine) tail() string {
	b, _ := os.ReadFile(m.Console)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// Command is the command line that runs argv inside the machine: all its
// namespaces, its root, a clean environment.
func (m *Machine) Command(argv ...string) []string {
	return append([]string{"nsenter", "-t", strconv.Itoa(m.Leader), "-m", "-u", "-i", "-n", "-p", "-r", "-w", "--",
		"/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, argv...)
}

// Run runs argv inside the machine and returns its combined output.
func (m *Machine) Run(ctx context.Context, argv ...string) ([]byte, error) {
	c := m.Command(argv...)
	out, err := exec.CommandContext(ctx, c[0], c[1:]...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s on %s: %w: %s", strings.Join(argv, " "), m.Name, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// WaitBooted waits until systemd has finished booting and returns its
// state: "running", or "degraded" with the failed units.
func (m *Machine) WaitBooted(ctx context.Context) (string, error) {
	for {
		// --wait needs the bus, which may not be up in the first instants.
		out, _ := m.Run(ctx, "systemctl", "is-system-running", "--wait")
		state := strings.TrimSpace(string(out))
		switch {
		case state == "running":
			return state, nil
		case state == "degraded":
			failed, _ := m.Run(ctx, "systemctl", "--failed", "--no-legend", "--no-pager", "--plain")
			report := state + ": " + strings.TrimSpace(string(failed))
			// Each failed unit's own words, so a failure seen once in CI
			// can be understood from its log.
			for _, line := range strings.Split(strings.TrimSpace(string(failed)), "\n") {
				if f := strings.Fields(line); len(f) > 0 {
					log, _ := m.Run(ctx, "journalctl", "-b", "--no-pager", "-n", "15", "-u", f[0])
					report += "\n" + strings.TrimSpace(string(log))
				}
			}
			return report, nil
		}
		select {
		case <-ctx.Done():
			return state, fmt.Errorf("machine %s: boot not finished (%q): %w\n%s", m.Name, state, ctx.Err(), m.tail())
		case err := <-m.done:
			m.done <- err
			return state, fmt.Errorf("machine %s stopped while booting (%v):\n%s", m.Name, err, m.tail())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// AttachNetns names the machine's network namespace (ip netns attach), so
// `ip netns exec NAME` and runner.InNetns reach it.
func (m *Machine) AttachNetns(name string) error {
	out, err := exec.Command("ip", "netns", "attach", name, strconv.Itoa(m.Leader)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns attach %s %d: %v: %s", name, m.Leader, err, out)
	}
	m.NetnsName = name
	return nil
}

// Shutdown asks systemd to power the machine off (nspawn turns SIGTERM
// into that), kills it after timeout, and unmounts its root.
func (m *Machine) Shutdown(timeout time.Duration) error {
	var err error
	if m.cmd.ProcessState == nil {
		m.cmd.Process.Signal(syscall.SIGTERM)
		// Its exit status is the container's: not ours to judge.
		select {
		case <-m.done:
		case <-time.After(timeout):
			m.cmd.Process.Kill()
			<-m.done
			err = fmt.Errorf("machine %s did not power off within %v: killed", m.Name, timeout)
		}
	}
	if m.NetnsName != "" {
		exec.Command("ip", "netns", "del", m.NetnsName).Run()
	}
	if uerr := syscall.Unmount(m.Root, syscall.MNT_DETACH); uerr != nil && !errors.Is(uerr, syscall.EINVAL) {
		err = errors.Join(err, fmt.Errorf("unmounting %s: %w", m.Root, uerr))
	}
	return err
}
