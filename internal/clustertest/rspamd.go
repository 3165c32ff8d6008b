package clustertest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"correo/internal/testutil"
)

// Rspamd is a private rspamd (Debian's package) with only its proxy
// worker, in milter mode, scanning by itself (self_scan): no controller,
// no Redis, no normal worker. Its DNS resolver is a local stub
// (StartDNS) serving only the records a test gives and NXDOMAIN for
// everything else, so no test asks the Internet and none waits on DNS
// timeouts.
type Rspamd struct {
	Dir     string
	Port    int // the milter port, on 127.0.0.1
	LogFile string
	// Proc is the main process; Proc.Stop stops rspamd early (a milter
	// that went away).
	Proc *Proc
}

// StartRspamd configures and starts rspamd in the foreground as root
// (its workers run as _rspamd) and waits until the milter port answers
// option negotiation. The hyperscan databases rspamd compiles at start
// (tens of seconds on a busy machine) are kept between runs in a cache
// directory (RspamdCacheDir); a warm start takes a few seconds. records
// (master-file syntax, as Zone takes them) are what rspamd's DNS knows.
func StartRspamd(t testing.TB, records ...string) *Rspamd {
	t.Helper()
	testutil.NeedRoot(t)
	rspamd := testutil.NeedCommand(t, "rspamd")
	u, err := user.Lookup("_rspamd")
	if err != nil {
		t.Fatalf("the _rspamd user (made by Debian's rspamd package): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := ShortTempDir(t, "rspamd-")
	os.Chmod(dir, 0o755)
	r := &Rspamd{Dir: dir, Port: FreePort(t), LogFile: filepath.Join(dir, "log", "rspamd.log")}
	local := filepath.Join(dir, "local")
	for _, d := range []string{"local/local.d", "run", "db", "log"} {
		p := filepath.Join(dir, d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chown(p, uid, gid)
	}
	cache := RspamdCacheDir(t, uid, gid)
	dns := StartDNS(t, Zone(t, records...))
	files := map[string]string{
		"rspamd.conf": fmt.Sprintf(`# private instance for correo's tests
.include "$CONFDIR/common.conf"
options {
  pidfile = "$RUNDIR/rspamd.pid";
  .include "$CONFDIR/options.inc"
  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}
logging {
  type = "file";
  filename = "$LOGDIR/rspamd.log";
  level = "info";
}
worker "rspamd_proxy" {
  bind_socket = "127.0.0.1:%d";
  milter = yes;
  timeout = 120s;
  upstream "local" {
    default = yes;
    self_scan = yes;
  }
  count = 1;
  max_retries = 5;
  discard_on_reject = false;
  quarantine_on_reject = false;
  spam_header = "X-Spam";
  reject_message = "Spam message rejected";
}
`, r.Port),
		// DNS: the stub, answering at once. The hyperscan cache: shared.
		"local/local.d/options.inc": fmt.Sprintf(`dns {
  nameserver = ["%s"];
  timeout = 1s;
  retransmits = 2;
}
hs_cache_dir = "%s";
`, dns, cache),
		// The headers rspamd adds in milter mode, also for loopback and
		// authenticated clients.
		"local/local.d/milter_headers.conf": `use = ["x-spamd-result", "x-rspamd-server", "x-rspamd-queue-id", "authentication-results", "x-spam-status"];
skip_local = false;
skip_authenticated = false;
`,
		// Nothing that would reach the Internet: rspamd.com's fuzzy
		// servers and its maps.
		"local/local.d/fuzzy_check.conf":   "enabled = false;\n",
		"local/local.d/multimap.conf":      "enabled = false;\n",
		"local/local.d/rspamd_update.conf": "enabled = false;\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.Proc = Start(t, "rspamd", []string{rspamd, "-f", "-c", filepath.Join(dir, "rspamd.conf"), "-u", u.Username, "-g", u.Username,
		"--var", "LOCAL_CONFDIR=" + local, "--var", "RUNDIR=" + filepath.Join(dir, "run"),
		"--var", "DBDIR=" + filepath.Join(dir, "db"), "--var", "LOGDIR=" + filepath.Join(dir, "log")}, nil)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(r.LogFile)
			if len(b) > 20000 {
				b = b[len(b)-20000:]
			}
			t.Logf("--- rspamd log (end):\n%s", b)
		}
	})
	// A cold start compiles hyperscan databases: generous, the machine
	// may be busy. The wait ends as soon as rspamd answers.
	if err := waitMilter(r.Addr(), r.Proc, 5*time.Minute); err != nil {
		t.Fatalf("rspamd's milter on %s: %v", r.Addr(), err)
	}
	return r
}

// Addr is the milter's address, host:port.
func (r *Rspamd) Addr() string { return fmt.Sprintf("127.0.0.1:%d", r.Port) }

// Log is rspamd's log so far.
func (r *Rspamd) Log() string {
	b, _ := os.ReadFile(r.LogFile)
	return string(b)
}

// RspamdCacheDir is where rspamd's compiled hyperscan databases are kept
// between test runs: a directory below the temporary directory, owned by
// _rspamd (whose workers write and read it, and who cannot reach root's
// home). Files are named by their content's hash, so runs and rspamd
// versions never mistake one for another.
func RspamdCacheDir(t testing.TB, uid, gid int) string {
	t.Helper()
	d := filepath.Join(os.TempDir(), "correo-rspamd-cache")
	if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	st, err := os.Lstat(d)
	if err != nil {
		t.Fatal(err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !st.IsDir() || !ok || (sys.Uid != 0 && int(sys.Uid) != uid) {
		t.Fatalf("%s is not a directory of root's or _rspamd's: remove it", d)
	}
	if err := os.Chown(d, uid, gid); err != nil {
		t.Fatal(err)
	}
	return d
}

// waitMilter waits until addr answers a milter option negotiation (the
// port is bound before the worker that serves it has started).
func waitMilter(addr string, p *Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.Done():
			return fmt.Errorf("rspamd exited: %v", p.err)
		default:
		}
		if last = optneg(addr); last == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("no answer after %v: %v", timeout, last)
}

// optneg sends SMFIC_OPTNEG (protocol 6) and reads the answer.
func optneg(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	pkt := []byte{0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 0, 0x31, 0, 0, 0, 0}
	if _, err := c.Write(pkt); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	var n uint32
	if err := binary.Read(br, binary.BigEndian, &n); err != nil {
		return err
	}
	if n < 13 || n > 1024 {
		return fmt.Errorf("option negotiation answer of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return err
	}
	if b[0] != 'O' {
		return fmt.Errorf("answer %q to option negotiation", b[0])
	}
	// A polite end, so rspamd does not log an error.
	c.Write([]byte{0, 0, 0, 1, 'Q'})
	return nil
}
