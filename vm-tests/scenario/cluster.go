package scenario

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"correo/src/cluster"
)

// Cluster is a booted hosts/example.toml as the scenarios drive it. Host
// names are the profile's, plus Outside. Every path given to or returned
// by a method is a path as the named host sees it; Path maps it to one
// this test process can open.
type Cluster interface {
	// Profile is the profile as the hosts read it: addresses, roles,
	// ports, data directories and the key file in the hosts' own paths.
	Profile() *cluster.Profile
	// ProfilePath is the profile file on every host: what a correo
	// program run through Command takes as -profile.
	ProfilePath() string

	// In runs f with the calling goroutine's sockets in host's network:
	// a dial from f leaves from host's address. Only f's own goroutine is
	// there (see the package doc); anything that dials from other
	// goroutines runs as a process through Command.
	In(host string, f func() error) error
	// Command is the command line, for this machine, that runs argv on
	// host: in its network, with its /etc (resolv.conf, nsswitch.conf and
	// the NSS module) and /run (nssd's socket). An argv[0] without a slash
	// that names a correo program (pdelivery, correoctl, ...) is that
	// program as installed on the host; any other is looked up in the
	// host's PATH. It adds no flags: pass -profile ProfilePath() where a
	// correo program needs it.
	Command(host string, argv ...string) []string
	// Path is where this process opens host's file or directory path
	// (a Maildir, a queue).
	Path(host, path string) string
	// StateDir is daemon's state directory on host (its -state flag):
	// smtpd keeps its queue in StateDir(host, "smtpd")/queue.
	StateDir(host, daemon string) string

	// Stop stops daemon on host gracefully (SIGTERM; under systemd,
	// systemctl stop correo-<daemon>), and it stays stopped until Start.
	// A daemon that is not running is no error.
	Stop(host, daemon string) error
	// Kill kills daemon on host with SIGKILL (systemctl kill -s KILL).
	// Under systemd Restart=on-failure may bring it back at once: a
	// scenario that needs it down calls Stop after Kill.
	Kill(host, daemon string) error
	// Start starts daemon on host unless it runs, and waits until it is
	// ready (READY=1).
	Start(ctx context.Context, host, daemon string) error
	// SetLink takes host's network link down (packets to and from it
	// vanish without an answer, as with a dead machine) or up again,
	// routes and all.
	SetLink(host string, up bool) error

	// CentralLog is what the loghost filed: for host "" every host's lines
	// (all.log), otherwise host's own file; an error wrapping
	// fs.ErrNotExist when the loghost has none for host yet. Lines read
	// "TIMESTAMP HOSTNAME APP-NAME[PROCID] MSGID STRUCTURED-DATA MSG", the
	// template of the loghost's rsyslog configuration that the runner
	// writes (and, since the host render, src/peerconf).
	CentralLog(host string) ([]byte, error)
}

// Outside is the host name of the Internet: a node on the cluster's
// network that is not in the profile, with the cluster DNS as resolver,
// where senders, customers and foreign MX hosts live.
const Outside = "outside"

// OutsidePrefix is Outside's address and network. The foreign zone in
// ExtraZones points at it, so every implementation must use this one.
var OutsidePrefix = netip.MustParsePrefix("192.0.2.10/24")

// Adjust changes a profile before boot for the scenarios. Every
// implementation applies it, so each host must be rendered from the
// adjusted profile (WriteProfile), not from hosts/example.toml.
func Adjust(p *cluster.Profile) {
	// Test users' hashes are not what the scenarios check: bcrypt's
	// minimum cost keeps logins quick on a loaded machine (cost 10 takes
	// over a second under the race detector).
	p.Cluster.Passwd.BcryptCost = cluster.MinBcryptCost
	// StorageHostDown waits for queued mail to be retried: every second,
	// not the production ladder (1m, 5m, ...). A first attempt is not
	// delayed, so no other scenario notices.
	p.Cluster.Queue.Retry = []cluster.Duration{cluster.Duration(time.Second)}
	// RelaySubmission checks the relay's DKIM signatures against the
	// cluster DNS: the cluster publishes keys from a records file beside
	// the written profile, which each implementation fills with its own
	// fresh keys (dkimkeys.Ensure) and installs on the relays.
	if p.Cluster.MailAuth.DKIMRecords == "" {
		p.Cluster.MailAuth.DKIMRecords = "dkim.toml"
	}
}

// foreignZone is the Internet domain RelaySubmission's customer writes
// to: its MX is on the Outside node.
var foreignZone = fmt.Sprintf(`$ORIGIN foreign.example.
$TTL 60
@	IN	SOA	ns1.correo.example.	hostmaster.foreign.example.	1 3600 900 1209600 60
@	IN	NS	ns1.correo.example.
@	IN	MX	10 mx.foreign.example.
mx	IN	A	%s
`, OutsidePrefix.Addr())

// ExtraZones are zones (name → master file text) the cluster's dns hosts
// must serve besides the cluster's own: the Internet's domains that the
// relay looks up (runner.Runner.ExtraZones).
func ExtraZones() map[string]string {
	return map[string]string{"foreign.example": foreignZone}
}

// LoadProfile loads a profile (hosts/example.toml) without reading its
// files, which live on the hosts, and applies Adjust.
func LoadProfile(path string) (*cluster.Profile, error) {
	p, err := cluster.Load(path, cluster.Options{SkipFiles: true})
	if err != nil {
		return nil, err
	}
	Adjust(p)
	return p, nil
}

// WriteProfile writes p as a TOML profile that loads to the same settings:
// the adjusted profile, for renderers that read a file.
func WriteProfile(p *cluster.Profile, path string) error {
	out := struct {
		Cluster cluster.Cluster `toml:"cluster"`
		Hosts   []cluster.Host  `toml:"host"`
	}{p.Cluster, p.Hosts}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "# %s adjusted for correo's scenarios (vm-tests/scenario.Adjust); do not edit\n", p.Source)
	if err := toml.NewEncoder(f).Encode(out); err != nil {
		f.Close()
		return fmt.Errorf("writing profile %s: %w", path, err)
	}
	return f.Close()
}

// Scenario is one scenario that leaves the cluster as it found it, so a
// suite can run several on one boot.
type Scenario struct {
	Name string
	Run  func(t *testing.T, c Cluster)
}

// Shared lists the scenarios that can share one booted cluster, in an
// order that works (any order does; this one puts the cheap ones first).
// GrowthWithoutMigration is not here: it changes the cluster.
var Shared = []Scenario{
	{"ExampleClusterBoots", ExampleClusterBoots},
	{"NSSOnStorageHost", NSSOnStorageHost},
	{"RelaySubmission", RelaySubmission},
	{"PasswdFailover", PasswdFailover},
	{"StorageHostDown", StorageHostDown},
	{"InternetMailToPOP", InternetMailToPOP},
	{"IMAPThroughProxy", IMAPThroughProxy},
	{"ClientAutoconfig", ClientAutoconfig},
	{"MailboxMove", MailboxMove},
	{"MailboxMoveCrashes", MailboxMoveCrashes},
}
