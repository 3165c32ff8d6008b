package clustertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/pwadmin"
	"correo/src/pwclient"
)

// HostSpec is one host of a test cluster.
type HostSpec struct {
	Name    string
	Address string
	Roles   []string
	// DataDir is a storage host's mail root; empty means <cluster dir>/mail-<name>.
	DataDir string
	// TOML is added to the host's tables as is, e.g. "[host.smtpd]\n...".
	TOML string
	// TLS gives the host a [host.tls] pair in the cluster directory,
	// created self-signed by the first daemon that loads it (loopback).
	TLS bool
}

// Spec describes a test cluster profile. Zero fields take defaults: network
// 127.0.0.0/8, domain correo.test, layout first3, placement letters,
// passwd timeout 3s (how long a client waits for a silent passwdd: a
// loaded machine answers a cheap login well within it), bcrypt cost 4.
type Spec struct {
	Network       string
	Domains       []string
	Layout        string
	Placement     string
	PasswdTimeout string
	Hosts         []HostSpec
	// RunAs is cluster.run_as, the account daemons drop root for.
	RunAs string
	// TrustedNetwork sets cluster.trusted_network (logins without TLS).
	TrustedNetwork bool
	// LogLevel is cluster.log.level (default debug, for tests; benchmarks
	// use info, what a host in service runs).
	LogLevel string
	// BcryptCost is cluster.passwd.bcrypt_cost; zero means bcrypt's
	// minimum, 4: test users' hashes are not what tests measure, and a
	// cost-10 check takes over a second under -race on a slow machine.
	// Benchmarks of logins set the production cost.
	BcryptCost int
	// PasswdTOML is added to [cluster.passwd] as is, e.g.
	// "auth_queue = 1\n".
	PasswdTOML string
	// ShutdownGrace is cluster.shutdown_grace (empty: the default, 30s).
	ShutdownGrace string
	// ClusterTOML is added to the [cluster] part of the profile as is,
	// e.g. "[cluster.queue]\nretry = [\"1s\"]\n".
	ClusterTOML string
}

// Cluster is a profile on disk with its key, ports chosen free on every
// host address, and the daemons a test started for it.
type Cluster struct {
	Dir         string
	ProfilePath string
	Profile     *cluster.Profile
	Ring        *keyfile.Ring
	KeyPath     string
}

// NewCluster writes the profile and a fresh cluster key.
func NewCluster(t testing.TB, spec Spec) *Cluster {
	t.Helper()
	dir := ShortTempDir(t, "correo-")
	// Traversable by the users an MTA runs pdelivery as.
	os.Chmod(dir, 0o755)
	if spec.Network == "" {
		spec.Network = "127.0.0.0/8"
	}
	if len(spec.Domains) == 0 {
		spec.Domains = []string{"correo.test"}
	}
	if spec.Layout == "" {
		spec.Layout = "first3"
	}
	if spec.Placement == "" {
		spec.Placement = "letters"
	}
	if spec.PasswdTimeout == "" {
		spec.PasswdTimeout = "3s"
	}
	var addrs []string
	for _, h := range spec.Hosts {
		addrs = append(addrs, h.Address)
	}
	key := filepath.Join(dir, "cluster.key")
	ring, err := keyfile.Create(key)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[cluster]\nname = \"t\"\ndomains = [%s]\nnetwork = %q\nkey_file = %q\nlayout = %q\nplacement = %q\ntrusted_network = %v\n",
		quoteList(spec.Domains), spec.Network, key, spec.Layout, spec.Placement, spec.TrustedNetwork)
	if spec.RunAs != "" {
		fmt.Fprintf(&b, "run_as = %q\n", spec.RunAs)
	}
	if spec.ShutdownGrace != "" {
		fmt.Fprintf(&b, "shutdown_grace = %q\n", spec.ShutdownGrace)
	}
	if spec.BcryptCost == 0 {
		spec.BcryptCost = 4
	}
	fmt.Fprintf(&b, "[cluster.passwd]\nudp_port = %d\ntcp_port = %d\ntimeout = %q\nbcrypt_cost = %d\n",
		FreePort(t, addrs...), FreePort(t, addrs...), spec.PasswdTimeout, spec.BcryptCost)
	b.WriteString(spec.PasswdTOML)
	if spec.LogLevel == "" {
		spec.LogLevel = "debug"
	}
	fmt.Fprintf(&b, "[cluster.log]\ntarget = \"stderr\"\nlevel = %q\n", spec.LogLevel)
	fmt.Fprintf(&b, "[cluster.ports]\nlmtp = %d\nsmtp = %d\n", FreePort(t, addrs...), FreePort(t, addrs...))
	fmt.Fprintf(&b, "pop3 = %d\npop3s = %d\npop3_backend = %d\nimap = %d\nimaps = %d\nimap_backend = %d\nmailbox_move = %d\n", FreePort(t, addrs...), FreePort(t, addrs...), FreePort(t, addrs...), FreePort(t, addrs...), FreePort(t, addrs...), FreePort(t, addrs...), FreePort(t, addrs...))
	fmt.Fprintf(&b, "metrics = %d\n", FreePorts(t, cluster.MetricsPorts, addrs...))
	b.WriteString(spec.ClusterTOML)
	for _, h := range spec.Hosts {
		fmt.Fprintf(&b, "\n[[host]]\nname = %q\naddress = %q\nroles = [%s]\n", h.Name, h.Address, quoteList(h.Roles))
		for _, r := range h.Roles {
			if r == "storage" {
				dd := h.DataDir
				if dd == "" {
					dd = filepath.Join(dir, "mail-"+h.Name)
				}
				fmt.Fprintf(&b, "[host.storage]\ndata_dir = %q\n", dd)
			}
		}
		if h.TLS {
			fmt.Fprintf(&b, "[host.tls]\ncert = %q\nkey = %q\n", filepath.Join(dir, "tls", h.Name+".crt"), filepath.Join(dir, "tls", h.Name+".key"))
		}
		b.WriteString(h.TOML)
	}
	path := filepath.Join(dir, "cluster.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := cluster.Load(path, cluster.Options{})
	if err != nil {
		t.Fatalf("test profile: %v\n%s", err, b.String())
	}
	return &Cluster{Dir: dir, ProfilePath: path, Profile: p, Ring: ring, KeyPath: key}
}

func quoteList(ss []string) string {
	var q []string
	for _, s := range ss {
		q = append(q, fmt.Sprintf("%q", s))
	}
	return strings.Join(q, ", ")
}

// DataDir is a storage host's mail root.
func (c *Cluster) DataDir(host string) string {
	h, err := c.Profile.Host(host)
	if err != nil || h.Storage == nil {
		return ""
	}
	return h.Storage.DataDir
}

// Maildir is the Maildir path of user on host.
func (c *Cluster) Maildir(host, user string) string {
	p, err := c.Profile.LayoutScheme().MaildirPath(c.DataDir(host), user)
	if err != nil {
		panic(err)
	}
	return p
}

// StateDir is a daemon's state directory in the cluster directory.
func (c *Cluster) StateDir(host, program string) string {
	return filepath.Join(c.Dir, host, program)
}

// StartDaemon runs a correo daemon for host with -profile, -host and
// -state, and waits until it is ready.
func (c *Cluster) StartDaemon(t testing.TB, program, host string, race bool, extra ...string) *Proc {
	t.Helper()
	bin := Build(t, program, race)
	argv := append([]string{bin, "-profile", c.ProfilePath, "-host", host, "-state", c.StateDir(host, program)}, extra...)
	return StartNotify(t, program+"@"+host, argv, nil)
}

// StartPasswdd starts the passwd server of host (race-built).
func (c *Cluster) StartPasswdd(t testing.TB, host string) *Proc {
	return c.StartDaemon(t, "passwdd", host, true)
}

// Admin connects to the primary's admin port.
func (c *Cluster) Admin(t testing.TB) *pwadmin.Client {
	t.Helper()
	prim, _ := c.Profile.PasswdServers()
	a, err := c.Profile.Listen(prim.Name, cluster.SvcPasswdAdmin)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := pwadmin.Dial(context.Background(), a.String(), c.Ring)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ac.Close() })
	return ac
}

// AddUsers adds users through the admin protocol. A zero UID gets one
// from 10000 up, a zero GID 5000.
func (c *Cluster) AddUsers(t testing.TB, users ...directory.User) {
	t.Helper()
	ac := c.Admin(t)
	for i, u := range users {
		if u.UID == 0 {
			u.UID = uint32(10000 + i)
		}
		if u.GID == 0 {
			u.GID = 5000
		}
		if _, err := ac.Do(pwadmin.Request{Op: pwadmin.OpUserAdd, User: &u}); err != nil {
			t.Fatalf("adding user %s: %v", u.Name, err)
		}
	}
}

// ImportUsers adds many users at once.
func (c *Cluster) ImportUsers(t testing.TB, users []directory.User) {
	t.Helper()
	ac := c.Admin(t)
	if _, err := ac.Do(pwadmin.Request{Op: pwadmin.OpImportBegin}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(users); i += 5000 {
		if _, err := ac.Do(pwadmin.Request{Op: pwadmin.OpImportChunk, Chunk: pwadmin.UsersChunk(users[i:min(i+5000, len(users))])}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ac.Do(pwadmin.Request{Op: pwadmin.OpImportCommit}); err != nil {
		t.Fatal(err)
	}
}

// ModUser changes a user.
func (c *Cluster) ModUser(t testing.TB, name string, patch directory.Patch) {
	t.Helper()
	if _, err := c.Admin(t).Do(pwadmin.Request{Op: pwadmin.OpUserMod, Name: name, Patch: &patch}); err != nil {
		t.Fatalf("changing user %s: %v", name, err)
	}
}

// Client is a passwd client for the cluster, closed at the end of the test.
func (c *Cluster) Client(t testing.TB) *pwclient.Client {
	t.Helper()
	pc, err := pwclient.FromProfile(c.Profile, c.Ring, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}
