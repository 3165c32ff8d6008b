package nspawn

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/internal/nspawn"
	"correo/internal/rootfs"
	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/dkimkeys"
	"correo/src/hostplan"
	"correo/src/keyfile"
	"correo/src/nss/nsstest"
	"correo/src/runner"
	"correo/src/tlsconf"
	"correo/vm-tests/scenario"
)

// prefix names this process's bridge and namespaces, so two runs on one
// machine (CI and a developer) cannot collide.
var prefix = fmt.Sprintf("s%04x", os.Getpid()&0xffff)

// Cluster is hosts/example.toml booted as nspawn machines on one bridge,
// plus the Outside namespace; it implements scenario.Cluster.
type Cluster struct {
	profile  *cluster.Profile
	machines map[string]*nspawn.Machine
	dir      string
	bridge   string
	outside  string // the Outside namespace
	resolv   string // Outside's resolv.conf: the cluster's DNS
	// BootTime is from the first machine started to every host's
	// daemons ready.
	BootTime time.Duration
	// States is each host's `systemctl is-system-running` after boot.
	States map[string]string
}

var _ scenario.Cluster = (*Cluster)(nil)

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// bootCluster renders every host of the adjusted example profile with
// correoctl host render (the programs, the NSS module and a new cluster
// key included), lays each tree and the scenarios' extra files over the
// shared Debian root file system, and boots them all at once.
func bootCluster(t *testing.T) *Cluster {
	t.Helper()
	testutil.NeedRoot(t)
	for _, c := range []string{"systemd-nspawn", "mmdebstrap", "nsenter", "ip"} {
		testutil.NeedCommand(t, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	base, err := rootfs.Ensure(ctx, rootfs.Options{Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := programs(t, dir)
	key := filepath.Join(dir, "cluster.key")
	if _, err := keyfile.Create(key); err != nil {
		t.Fatal(err)
	}
	p, err := scenario.LoadProfile("../../hosts/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	profPath := filepath.Join(dir, "profile.toml")
	if err := scenario.WriteProfile(p, profPath); err != nil {
		t.Fatal(err)
	}
	// The relays' DKIM keys, as `correoctl dkim new` would make them for
	// each domain; the records go beside the written profile, where its
	// dkim_records points.
	dkimKeys := filepath.Join(dir, "dkim-keys")
	if _, err := dkimkeys.Ensure(filepath.Join(dir, p.Cluster.MailAuth.DKIMRecords), dkimKeys, p.Cluster.Domains, time.Now(), -1); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{profile: p, machines: map[string]*nspawn.Machine{}, dir: dir, bridge: prefix + "br",
		outside: prefix + "-" + scenario.Outside, States: map[string]string{}}
	t.Cleanup(c.down)
	if err := c.network(); err != nil {
		t.Fatal(err)
	}
	extra := filepath.Join(dir, "extra")
	if err := c.extraTree(extra); err != nil {
		t.Fatal(err)
	}
	layers := map[string][]string{}
	for _, h := range p.Hosts {
		tree := filepath.Join(dir, "trees", h.Name)
		args := []string{"host", "render", "-profile", profPath, "-host", h.Name, "-root", tree, "-bin", bin, "-key", key, "-dkim-keys", dkimKeys}
		if h.TLS != nil {
			// What an operator brings from their CA; self-signed here.
			crt, crtKey := filepath.Join(dir, "tls", h.Name+".crt"), filepath.Join(dir, "tls", h.Name+".key")
			if err := tlsconf.SelfSigned(crt, crtKey, []string{h.Name + "." + p.Cluster.DNS.Zone}, []net.IP{h.Addr().AsSlice()}); err != nil {
				t.Fatal(err)
			}
			args = append(args, "-tls-cert", crt, "-tls-key", crtKey)
		}
		out, err := exec.Command(filepath.Join(bin, "correoctl"), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("correoctl host render %s: %v\n%s", h.Name, err, out)
		}
		layers[h.Name] = []string{filepath.Join(extra, h.Name), tree, base}
	}
	start := time.Now()
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(p.Hosts))
	for i, h := range p.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := nspawn.Boot(ctx, nspawn.Config{Name: h.Name, Layers: layers[h.Name],
				Dir: filepath.Join(dir, "machines", h.Name), Bridge: c.bridge})
			if err != nil {
				errs[i] = err
				return
			}
			mu.Lock()
			c.machines[h.Name] = m
			mu.Unlock()
			if errs[i] = m.AttachNetns(prefix + "-" + h.Name); errs[i] != nil {
				return
			}
			state, err := m.WaitBooted(ctx)
			mu.Lock()
			c.States[h.Name] = state
			mu.Unlock()
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = c.waitDaemons(ctx, h.Name)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	c.BootTime = time.Since(start)
	return c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// programs gathers what `host render -bin` installs: the correo programs
// (built without the race detector: they run as the hosts' own) and the
// NSS module.
func programs(t *testing.T, dir string) string {
	bin := clustertest.BuildAll(t, false)
	lib := nsstest.NeedLib(t)
	out := filepath.Join(dir, "bin")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range hostplan.ProgramNames() {
		src := filepath.Join(bin, name)
		if name == "libnss_correo.so.2" {
			src = lib
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// network makes the bridge and the Outside namespace (192.0.2.10/24 with
// an on-link route to the cluster, and the cluster DNS as resolver).
func (c *Cluster) network() error {
	out := scenario.OutsidePrefix
	steps := [][]string{
		{"ip", "link", "add", c.bridge, "type", "bridge"},
		{"ip", "link", "set", c.bridge, "up"},
		{"ip", "netns", "add", c.outside},
		{"ip", "link", "add", prefix + "vo", "type", "veth", "peer", "name", "eth0", "netns", c.outside},
		{"ip", "link", "set", prefix + "vo", "master", c.bridge},
		{"ip", "link", "set", prefix + "vo", "up"},
		{"ip", "-n", c.outside, "addr", "add", out.String(), "dev", "eth0"},
		{"ip", "-n", c.outside, "link", "set", "eth0", "up"},
		{"ip", "-n", c.outside, "link", "set", "lo", "up"},
		{"ip", "-n", c.outside, "route", "add", c.profile.NetworkPrefix().String(), "dev", "eth0"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return err
		}
	}
	var resolv strings.Builder
	for _, e := range c.profile.Endpoints(cluster.SvcDNS) {
		fmt.Fprintf(&resolv, "nameserver %s\n", e.Addr.Addr())
	}
	c.resolv = filepath.Join(c.dir, "outside-resolv.conf")
	return os.WriteFile(c.resolv, []byte(resolv.String()), 0o644)
}

// extraTree writes, per host, the files the scenarios need beyond the
// rendered tree: a route to the Internet (Outside) on every host, and the
// Internet's zones on the dns hosts.
func (c *Cluster) extraTree(dir string) error {
	out := scenario.OutsidePrefix.Masked()
	for _, h := range c.profile.Hosts {
		files := map[string]string{
			"etc/systemd/network/10-correo.network.d/outside.conf": "[Route]\nDestination=" + out.String() + "\nScope=link\n",
		}
		if h.HasRole(cluster.RoleDNS) {
			var conf strings.Builder
			for name, text := range scenario.ExtraZones() {
				zf := filepath.Join(hostplan.NSDZoneDir, name+".zone")
				files[strings.TrimPrefix(zf, "/")] = text
				fmt.Fprintf(&conf, "zone:\n    name: %q\n    zonefile: %q\n", name, zf)
			}
			files["etc/nsd/nsd.conf.d/scenario.conf"] = conf.String()
		}
		for name, text := range files {
			p := filepath.Join(dir, h.Name, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitDaemons waits until every correo unit of the host is active: the
// daemons are Type=notify, so active means READY=1 was sent.
func (c *Cluster) waitDaemons(ctx context.Context, host string) error {
	units, err := hostplan.Units(c.profile, host)
	if err != nil {
		return err
	}
	m := c.machines[host]
	// Bounded well inside the test's own timeout, so a daemon that never
	// becomes ready is reported with its journal instead of a goroutine
	// dump.
	deadline := time.Now().Add(daemonReadyTimeout)
	for _, u := range units {
		for {
			out, _ := m.Run(ctx, "systemctl", "is-active", u.Name)
			state := strings.TrimSpace(string(out))
			if state == "active" {
				break
			}
			if state == "failed" || ctx.Err() != nil || time.Now().After(deadline) {
				diag := context.Background()
				list, _ := m.Run(diag, "systemctl", "list-units", "--all", "--no-pager", "correo-*")
				log, _ := m.Run(diag, "journalctl", "-b", "--no-pager", "-n", "60", "-u", u.Name)
				return fmt.Errorf("%s: %s is %q after %s:\n%s\n%s", host, u.Name, state, daemonReadyTimeout, list, log)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// daemonReadyTimeout bounds one host's wait for its daemons after
// systemd reports the boot finished.
const daemonReadyTimeout = 3 * time.Minute

func (c *Cluster) down() {
	var wg sync.WaitGroup
	for _, m := range c.machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Shutdown(30 * time.Second)
		}()
	}
	wg.Wait()
	run("ip", "link", "del", prefix+"vo")
	run("ip", "netns", "del", c.outside)
	run("ip", "link", "del", c.bridge)
}

// Machine is one host's container.
func (c *Cluster) Machine(host string) *nspawn.Machine { return c.machines[host] }

func (c *Cluster) Profile() *cluster.Profile { return c.profile }

func (c *Cluster) ProfilePath() string { return hostplan.Data.ProfilePath }

func (c *Cluster) In(host string, f func() error) error {
	if host == scenario.Outside {
		return runner.InNetns(c.outside, f)
	}
	m, ok := c.machines[host]
	if !ok {
		return fmt.Errorf("no host %q", host)
	}
	return runner.InNetns(m.NetnsName, f)
}

func (c *Cluster) Command(host string, argv ...string) []string {
	if host == scenario.Outside {
		return append([]string{"ip", "netns", "exec", c.outside, "unshare", "-m", "--propagation", "private",
			"sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$@"`, c.resolv}, argv...)
	}
	argv = append([]string(nil), argv...)
	if p, ok := hostplan.Programs()[argv[0]]; ok {
		argv[0] = p
	}
	return c.machines[host].Command(argv...)
}

func (c *Cluster) Path(host, path string) string {
	if host == scenario.Outside {
		return path
	}
	return filepath.Join(c.machines[host].Root, path)
}

func (c *Cluster) StateDir(host, daemon string) string {
	return hostplan.Data.StateRoot + "/" + daemon
}

func (c *Cluster) systemctl(host string, args ...string) error {
	m, ok := c.machines[host]
	if !ok {
		return fmt.Errorf("no host %q", host)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := m.Run(ctx, append([]string{"systemctl"}, args...)...)
	return err
}

// units are daemon's units on host: its socket units, then its service.
// Stopping the service alone would leave its sockets listening, and the
// next connection would start it again.
func (c *Cluster) units(host, daemon string) []string {
	us, _ := hostplan.Units(c.profile, host)
	var out []string
	for _, u := range us {
		if strings.HasPrefix(u.Name, "correo-"+daemon+"-") && strings.HasSuffix(u.Name, ".socket") {
			out = append(out, u.Name)
		}
	}
	return append(out, hostplan.UnitName(daemon))
}

func (c *Cluster) Stop(host, daemon string) error {
	return c.systemctl(host, append([]string{"stop"}, c.units(host, daemon)...)...)
}

func (c *Cluster) Kill(host, daemon string) error {
	// The main process only, as a crash would: the daemons fork nothing,
	// and a kill of the whole control group fails inside nspawn on a
	// cgroup v1 machine (EIO), which would fail the step.
	return c.systemctl(host, "kill", "--kill-whom=main", "--signal=KILL", hostplan.UnitName(daemon))
}

func (c *Cluster) Start(ctx context.Context, host, daemon string) error {
	// A daemon killed over and over may have hit its start limit.
	units := c.units(host, daemon)
	c.systemctl(host, append([]string{"reset-failed"}, units...)...)
	return c.systemctl(host, append([]string{"start"}, units...)...)
}

func (c *Cluster) SetLink(host string, up bool) error {
	m, ok := c.machines[host]
	if !ok {
		return fmt.Errorf("no host %q", host)
	}
	state := "down"
	if up {
		state = "up"
	}
	return run("ip", "link", "set", m.Veth(), state)
}

func (c *Cluster) CentralLog(host string) ([]byte, error) {
	hs := c.profile.HostsWithRole(cluster.RoleLoghost)
	if len(hs) == 0 {
		return nil, errors.New("the profile has no loghost")
	}
	name := "all.log"
	if host != "" {
		name = filepath.Join("hosts", host+".log")
	}
	b, err := os.ReadFile(c.Path(hs[0].Name, filepath.Join(hostplan.LoghostDir, name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("central log of %q: %w", host, err)
	}
	return b, err
}

// addr is a host's profile address.
func (c *Cluster) addr(host string) netip.Addr {
	h, _ := c.profile.Host(host)
	return h.Addr()
}
