package netns

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/nss/nsstest"
	"correo/src/runner"
	"correo/vm-tests/scenario"
)

// example is the profile every test boots (adjusted by LoadProfile).
const example = "../../hosts/example.toml"

// Prefixes name this test process's namespaces and links, so two runs of
// the suite (two sessions, a developer and CI) cannot trip over each
// other: one for the shared cluster, one for clusters a test boots for
// itself, which may run beside it. They stay short because link names
// have 15 bytes.
var (
	sharedPrefix = fmt.Sprintf("t%04x", os.Getpid()&0xffff)
	ownPrefix    = fmt.Sprintf("u%04x", os.Getpid()&0xffff)
)

// nsCluster is scenario.Cluster over the namespace runner. Every host
// shares this machine's file system, so a path on a host is a path here;
// what a real host keeps under /var/lib the runner keeps under its state
// directory, and its rewritten profile says so.
type nsCluster struct {
	r    *runner.Runner
	logs *clustertest.SyncBuffer
	// nss holds lib/libnss_correo.so.2 and nsswitch.conf for commands on the
	// hosts; empty when the module could not be built (no gcc), and then
	// commands resolve users from /etc/passwd only.
	nss string
}

// boot starts p in namespaces named with prefix, with the given state
// directory and programs. The caller owns Down.
func boot(p *cluster.Profile, state, bin, prefix string) (*nsCluster, error) {
	c := &nsCluster{logs: &clustertest.SyncBuffer{}}
	c.r = &runner.Runner{Profile: p, StateDir: state, BinDir: bin,
		Log: slog.New(slog.NewTextHandler(c.logs, nil)), ReadyTimeout: 30 * time.Second,
		Netns:      &runner.Netns{Prefix: prefix, Outside: scenario.OutsidePrefix},
		ExtraZones: scenario.ExtraZones()}
	if err := c.r.Up(context.Background()); err != nil {
		return nil, fmt.Errorf("booting %s in namespaces %s-*: %v\n%s", p.Source, prefix, err, c.logs.String())
	}
	if lib, err := nsstest.Build(); err == nil {
		c.nss = filepath.Join(state, "nss")
		err = os.MkdirAll(filepath.Join(c.nss, "lib"), 0o755)
		if err == nil {
			var data []byte
			if data, err = os.ReadFile(lib); err == nil {
				err = os.WriteFile(filepath.Join(c.nss, "lib", "libnss_correo.so.2"), data, 0o755)
			}
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(c.nss, "nsswitch.conf"), []byte("passwd: files correo\ngroup: files correo\n"), 0o644)
		}
		if err != nil {
			c.r.Down()
			return nil, fmt.Errorf("installing the NSS module for the hosts' commands: %w", err)
		}
	} else {
		c.r.Log.Warn("commands on the hosts run without libnss_correo", "err", err)
	}
	return c, nil
}

// needs skips (or fails, under CORREO_STRICT) where a cluster cannot boot.
func needs(t testing.TB) {
	t.Helper()
	testutil.NeedRoot(t)
	for _, c := range []string{"ip", "nsd", "rsyslogd", "unshare"} {
		testutil.NeedCommand(t, c)
	}
}

// bootOwn boots a cluster for one test alone, torn down at its end.
func bootOwn(t testing.TB) *nsCluster {
	t.Helper()
	needs(t)
	p, err := scenario.LoadProfile(example)
	if err != nil {
		t.Fatal(err)
	}
	return bootOwnProfile(t, p, filepath.Join(t.TempDir(), "state"))
}

func bootOwnProfile(t testing.TB, p *cluster.Profile, state string) *nsCluster {
	t.Helper()
	c, err := boot(p, state, clustertest.BuildAll(t, false), ownPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.r.Down()
		if t.Failed() {
			c.dumpLogs(t)
		}
	})
	return c
}

// shared is the cluster the scenarios of scenario.Shared run on one after
// the other, as the nspawn suite runs them on its one boot: booted by the
// first test that needs it, replaced after a test that failed or left it
// changed, and torn down by TestMain.
var shared struct {
	mu  sync.Mutex
	c   *nsCluster
	dir string
}

// sharedCluster returns the shared cluster, booting it if there is none.
// When the test ends it checks that every daemon still runs: a scenario
// must leave the cluster as it found it.
func sharedCluster(t *testing.T) *nsCluster {
	t.Helper()
	needs(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c == nil {
		p, err := scenario.LoadProfile(example)
		if err != nil {
			t.Fatal(err)
		}
		dir, err := os.MkdirTemp("", "correo-netns-")
		if err != nil {
			t.Fatal(err)
		}
		c, err := boot(p, filepath.Join(dir, "state"), clustertest.BuildAll(t, false), sharedPrefix)
		if err != nil {
			os.RemoveAll(dir)
			t.Fatal(err)
		}
		shared.c, shared.dir = c, dir
	}
	c := shared.c
	// Registered before the scenario's own cleanups, so it runs after
	// them: after they restarted what the scenario stopped.
	t.Cleanup(func() {
		if down := c.notRunning(); len(down) > 0 {
			t.Errorf("the scenario left the shared cluster with %s not running", strings.Join(down, ", "))
		}
		if t.Failed() {
			c.dumpLogs(t)
			t.Log("the next test boots a fresh cluster")
			dropShared()
		}
	})
	return c
}

// dropShared tears the shared cluster down.
func dropShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c != nil {
		shared.c.r.Down()
		os.RemoveAll(shared.dir)
		shared.c, shared.dir = nil, ""
	}
}

// notRunning lists the runner's processes (as "program on host") that no
// longer run.
func (c *nsCluster) notRunning() []string {
	specs, _, err := c.r.Plan()
	if err != nil {
		return []string{"(no plan: " + err.Error() + ")"}
	}
	var down []string
	for _, s := range specs {
		if !c.r.Running(s.Host, s.Name) {
			down = append(down, s.Name+" on "+s.Host)
		}
	}
	return down
}

// dumpLogs logs the runner's log and the end of every daemon's log.
func (c *nsCluster) dumpLogs(t testing.TB) {
	t.Logf("runner log:\n%s", c.logs.String())
	filepath.Walk(c.r.StateDir, func(path string, info os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(path, ".log") && !info.IsDir() {
			b, _ := os.ReadFile(path)
			if len(b) > 3000 {
				b = b[len(b)-3000:]
			}
			t.Logf("--- %s:\n%s", path, b)
		}
		return nil
	})
}

func (c *nsCluster) Profile() *cluster.Profile { return c.r.Profile }
func (c *nsCluster) ProfilePath() string       { return c.r.ProfilePath }

func (c *nsCluster) In(host string, f func() error) error {
	return runner.InNetns(c.r.Netns.Name(host), f)
}

// Command runs argv under `ip netns exec` in a private mount namespace
// that gives it the host's view: the host's resolv.conf (the cluster DNS)
// and, on the profile's hosts, nsswitch.conf with correo, the NSS module
// overlaid on the library directory, and the host's nssd socket at the
// module's default path (/run/correo, on a private /run). A correo
// program's name becomes the runner's build of it.
func (c *nsCluster) Command(host string, argv ...string) []string {
	if len(argv) > 0 && !strings.Contains(argv[0], "/") {
		if bin := filepath.Join(c.r.BinDir, argv[0]); fileExists(bin) {
			argv = append([]string{bin}, argv[1:]...)
		}
	}
	script := `mount --bind "$1" /etc/resolv.conf && shift`
	args := []string{filepath.Join(c.r.StateDir, host, "resolv.conf")}
	if host != scenario.Outside && c.nss != "" {
		script += ` && mount --bind "$1" /etc/nsswitch.conf` +
			` && mount -t overlay overlay -o lowerdir="$2":/usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu` +
			` && mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/correo && mount --bind "$3" /run/correo` +
			// The module's default socket, as on a real host.
			` && unset CORREO_NSS_SOCKET && shift 3`
		args = append(args, filepath.Join(c.nss, "nsswitch.conf"), filepath.Join(c.nss, "lib"), c.r.NSSDir(host))
	}
	script += ` && exec "$@"`
	line := []string{"ip", "netns", "exec", c.r.Netns.Name(host), "unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"}
	return append(append(line, args...), argv...)
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}

func (c *nsCluster) Path(host, path string) string { return path }

func (c *nsCluster) StateDir(host, daemon string) string {
	return filepath.Join(c.r.StateDir, host, daemon)
}

// Stop leaves a daemon that no longer runs alone: after a Kill the
// runner has already reaped it.
func (c *nsCluster) Stop(host, daemon string) error {
	if !c.r.Running(host, daemon) {
		return c.planned(host, daemon)
	}
	return c.r.Stop(host, daemon, false)
}

// Kill kills daemon's process group with SIGKILL; nothing restarts it.
func (c *nsCluster) Kill(host, daemon string) error { return c.r.Stop(host, daemon, true) }

func (c *nsCluster) Start(ctx context.Context, host, daemon string) error {
	if c.r.Running(host, daemon) {
		return nil
	}
	return c.r.Start(ctx, host, daemon)
}

// planned says whether the runner would run daemon on host at all: a
// misspelt name must not pass for a stopped daemon.
func (c *nsCluster) planned(host, daemon string) error {
	specs, _, err := c.r.Plan()
	if err != nil {
		return err
	}
	for _, s := range specs {
		if s.Host == host && s.Name == daemon {
			return nil
		}
	}
	return fmt.Errorf("the cluster runs no %s on %s", daemon, host)
}

func (c *nsCluster) SetLink(host string, up bool) error { return c.r.SetLink(host, up) }

func (c *nsCluster) CentralLog(host string) ([]byte, error) {
	dir := c.r.LoghostDir()
	if dir == "" {
		return nil, fmt.Errorf("the profile has no loghost: %w", fs.ErrNotExist)
	}
	if host == "" {
		return os.ReadFile(filepath.Join(dir, "all.log"))
	}
	return os.ReadFile(filepath.Join(dir, "hosts", host+".log"))
}

var _ scenario.Cluster = (*nsCluster)(nil)
