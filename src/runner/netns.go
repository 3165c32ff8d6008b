package runner

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"

	"correo/src/cluster"
	"correo/src/dkimkeys"
	"correo/src/tlsconf"
)

// Netns boots a profile's hosts in network namespaces of this machine,
// with the profile's own addresses, joined by one bridge: the cluster of
// hosts/example.toml on one box. An extra namespace, "outside", stands for
// the Internet (a sender's relay, a foreign MX); it reaches the cluster
// network on the same link and gets the cluster DNS as resolver.
//
// Nothing of the machine's own configuration changes: namespaces and links
// are created and removed by the runner, and each daemon sees its host's
// resolv.conf through a bind mount in a private mount namespace, not
// through /etc/netns.
type Netns struct {
	// Prefix names the namespaces (<prefix>-<host>, <prefix>-outside) and
	// links (<prefix>br, <prefix>v<n>); default "correo".
	Prefix string
	// Outside is the outside namespace's address and network; default
	// 192.0.2.10/24 (TEST-NET-1, documentation only).
	Outside netip.Prefix
}

const outsideName = "outside"

func (n *Netns) prefix() string {
	if n.Prefix == "" {
		return "correo"
	}
	return n.Prefix
}

func (n *Netns) outside() netip.Prefix {
	if !n.Outside.IsValid() {
		return netip.MustParsePrefix("192.0.2.10/24")
	}
	return n.Outside
}

// Name is the namespace of a host (or "outside").
func (n *Netns) Name(host string) string { return n.prefix() + "-" + host }

func (n *Netns) bridge() string { return n.prefix() + "br" }

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setup creates the bridge, one namespace per host plus outside, and
// addresses and routes. On failure it removes what it made.
func (n *Netns) setup(p *cluster.Profile) (err error) {
	defer func() {
		if err != nil {
			n.teardown(p)
		}
	}()
	if os.Geteuid() != 0 {
		return errors.New("booting in network namespaces needs root")
	}
	br := n.bridge()
	if err := run("ip", "link", "add", br, "type", "bridge"); err != nil {
		return err
	}
	if err := run("ip", "link", "set", br, "up"); err != nil {
		return err
	}
	network := p.NetworkPrefix()
	out := n.outside()
	type member struct {
		ns    string
		addr  netip.Prefix
		route netip.Prefix
	}
	var members []member
	for _, h := range p.Hosts {
		members = append(members, member{n.Name(h.Name), netip.PrefixFrom(h.Addr(), network.Bits()), out.Masked()})
	}
	members = append(members, member{n.Name(outsideName), out, network})
	for i, m := range members {
		veth := fmt.Sprintf("%sv%d", n.prefix(), i)
		steps := [][]string{
			{"ip", "netns", "add", m.ns},
			{"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", m.ns},
			{"ip", "link", "set", veth, "master", br},
			{"ip", "link", "set", veth, "up"},
			{"ip", "-n", m.ns, "addr", "add", m.addr.String(), "dev", "eth0"},
			{"ip", "-n", m.ns, "link", "set", "eth0", "up"},
			{"ip", "-n", m.ns, "link", "set", "lo", "up"},
			// The other side is on the same link: an on-link route, no router.
			{"ip", "-n", m.ns, "route", "add", m.route.String(), "dev", "eth0"},
		}
		for _, s := range steps {
			if err := run(s...); err != nil {
				return err
			}
		}
	}
	return nil
}

// teardown removes every namespace and link of this prefix, including
// leftovers of an earlier run that crashed.
func (n *Netns) teardown(p *cluster.Profile) {
	// Deleting a namespace frees its end of a veth pair later, from a
	// kernel work queue: the host end can outlive "ip netns del" by some
	// milliseconds, and a boot right after (scenario 7 boots twice) then
	// finds its name taken. Deleting the host end first removes both ends
	// at once.
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(links), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, n.prefix()+"v") {
			run("ip", "link", "del", name)
		}
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], n.prefix()+"-") {
			run("ip", "netns", "del", f[0])
		}
	}
	run("ip", "link", "del", n.bridge())
}

// wrap makes argv run in the host's namespace, with the host's
// resolv.conf bind-mounted over /etc/resolv.conf in a private mount
// namespace. ip, unshare and sh each exec the next, so the pid the runner
// holds is the daemon's.
func (n *Netns) wrap(host, resolv string, binds [][2]string, argv []string) []string {
	script := `mount --bind "$1" /etc/resolv.conf && shift`
	args := []string{resolv}
	for _, b := range binds {
		script += ` && mount --bind "$1" "$2" && shift 2`
		args = append(args, b[0], b[1])
	}
	script += ` && exec "$@"`
	out := []string{"ip", "netns", "exec", n.Name(host), "unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"}
	return append(append(out, args...), argv...)
}

// SetLink takes a host's link to the cluster network down, as a machine
// that died or lost its cable: packets to and from it vanish without an
// answer (no ICMP), so only timeouts tell its peers. up brings the link
// back with its routes. host may be "outside".
func (r *Runner) SetLink(host string, up bool) error {
	if r.Netns == nil {
		return fmt.Errorf("taking %s's link down: the cluster does not run in network namespaces", host)
	}
	ns := r.Netns.Name(host)
	if !up {
		return run("ip", "-n", ns, "link", "set", "eth0", "down")
	}
	if err := run("ip", "-n", ns, "link", "set", "eth0", "up"); err != nil {
		return err
	}
	// The kernel drops the routes through a link that goes down and does
	// not restore them: the on-link route to the other side that setup
	// added must come back, or the host stays cut off from it.
	route := r.Netns.outside().Masked()
	if host == outsideName {
		route = r.Profile.NetworkPrefix()
	}
	return run("ip", "-n", ns, "route", "replace", route.String(), "dev", "eth0")
}

// NSSDir is where a host's nssd keeps its socket in netns mode; mount it
// over the socket's directory to resolve names as that host does.
func (r *Runner) NSSDir(host string) string { return filepath.Join(r.StateDir, host, "nss-run") }

// InNetns runs f with the calling goroutine's thread inside the named
// network namespace: sockets f opens live there, so a test or a probe can
// talk to a host by its profile address. Only sockets opened by f's own
// goroutine are inside: a goroutine f starts runs on another thread, in
// the machine's namespace, where the profile's addresses lead to the real
// network. Anything that dials from several goroutines must run as a
// process under `ip netns exec` instead.
func InNetns(name string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", name))
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering network namespace %s: %w", name, err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// A thread stuck in another namespace must not serve other
			// goroutines: keep it locked so it dies with this one.
			panic(fmt.Sprintf("cannot return to the original network namespace: %v", err))
		}
	}()
	return f()
}

// localProfile rewrites a real cluster's profile for booting on this
// machine: every file the hosts would keep under /var/lib (cluster key,
// DKIM keys, each storage host's mail, TLS pairs, the NSS socket) moves
// under the state directory, so the hosts do not share paths and nothing outside the
// state directory is written. It returns the path of the rewritten file.
func localProfile(p *cluster.Profile, state string) (string, error) {
	cp := struct {
		Cluster cluster.Cluster `toml:"cluster"`
		Hosts   []cluster.Host  `toml:"host"`
	}{Cluster: p.Cluster, Hosts: append([]cluster.Host(nil), p.Hosts...)}
	cp.Cluster.KeyFile = filepath.Join(state, "cluster.key")
	cp.Cluster.NSS.Socket = filepath.Join(state, "nssd", "nssd.sock")
	cp.Cluster.Moves.JournalDir = filepath.Join(state, "moves")
	for i := range cp.Hosts {
		h := &cp.Hosts[i]
		dir := filepath.Join(state, h.Name)
		if h.Storage != nil {
			s := *h.Storage
			s.DataDir = filepath.Join(dir, "mail")
			h.Storage = &s
		}
		if h.TLS != nil {
			t := cluster.TLS{Cert: filepath.Join(dir, "tls", h.Name+".crt"), Key: filepath.Join(dir, "tls", h.Name+".key")}
			h.TLS = &t
			if _, err := os.Stat(t.Cert); errors.Is(err, os.ErrNotExist) {
				if err := tlsconf.SelfSigned(t.Cert, t.Key, []string{h.Name + "." + p.Cluster.DNS.Zone}, []net.IP{h.Addr().AsSlice()}); err != nil {
					return "", err
				}
			}
		}
	}
	if cp.Cluster.MailAuth.DKIMRecords != "" {
		// The profile's own records publish keys whose private halves live
		// on its relays, not here: like the cluster key, a local boot makes
		// its own, once, and keeps them in the state directory.
		cp.Cluster.MailAuth.DKIMRecords = "dkim.toml"
		cp.Cluster.MailAuth.DKIMKeyDir = filepath.Join(state, "dkim")
		if _, err := dkimkeys.Ensure(filepath.Join(state, "dkim.toml"), cp.Cluster.MailAuth.DKIMKeyDir, p.Cluster.Domains, time.Now(), -1); err != nil {
			return "", err
		}
	}
	path := filepath.Join(state, "profile.toml")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(f, "# %s rewritten by correo's runner to boot on one machine; do not edit\n", p.Source)
	if err := toml.NewEncoder(f).Encode(cp); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// netnsUp removes leftovers of an earlier run, rewrites the profile for
// this machine, creates the namespaces and writes each host's resolver
// configuration: the cluster's own DNS servers, as on real hosts.
func (r *Runner) netnsUp() error {
	n := r.Netns
	n.teardown(r.Profile)
	path, err := localProfile(r.Profile, r.StateDir)
	if err != nil {
		return fmt.Errorf("rewriting the profile for this machine: %w", err)
	}
	p, err := cluster.Load(path, cluster.Options{SkipFiles: true})
	if err != nil {
		return fmt.Errorf("the rewritten profile does not load: %w", err)
	}
	r.Profile, r.ProfilePath = p, path
	var resolv strings.Builder
	for _, e := range p.Endpoints(cluster.SvcDNS) {
		fmt.Fprintf(&resolv, "nameserver %s\n", e.Addr.Addr())
	}
	fmt.Fprintf(&resolv, "search %s\noptions timeout:1 attempts:2\n", p.Cluster.DNS.Zone)
	for _, h := range append(p.Hosts, cluster.Host{Name: outsideName}) {
		dir := filepath.Join(r.StateDir, h.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(resolv.String()), 0o644); err != nil {
			return err
		}
	}
	return n.setup(p)
}

// OutsideResolv is the resolv.conf the outside namespace should use.
func (r *Runner) OutsideResolv() string { return filepath.Join(r.StateDir, outsideName, "resolv.conf") }
