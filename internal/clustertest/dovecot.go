package clustertest

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"correo/internal/testutil"
)

// DovecotConfig configures a private Dovecot LMTP server.
type DovecotConfig struct {
	// MailDir is the root of the Maildirs (<MailDir>/<user>/Maildir);
	// empty means a directory of the instance. Put it on the disk being
	// measured: fsync on tmpfs costs nothing.
	MailDir string
	// Processes is how many lmtp processes are kept ready and reused
	// (Dovecot's high-performance mode: service_count = 0 and
	// process_min_avail); 0 keeps Dovecot's stock one-process-per-
	// connection mode.
	Processes int
}

// Dovecot is a private Dovecot instance serving only LMTP on loopback:
// any user name is accepted (a static userdb), mail is stored in
// Maildirs owned by an unprivileged system user.
type Dovecot struct {
	Dir      string
	MailDir  string
	Port     int
	LogFile  string
	proc     *Proc
	uid, gid int
}

// StartDovecot configures and starts Dovecot (root: its master drops
// privileges) and waits until the LMTP port answers.
func StartDovecot(t testing.TB, cfg DovecotConfig) *Dovecot {
	t.Helper()
	testutil.NeedRoot(t)
	dovecot := testutil.NeedCommand(t, "dovecot")
	for _, f := range []string{"/usr/lib/dovecot/lmtp"} {
		if _, err := os.Stat(f); err != nil {
			if os.Getenv(testutil.StrictEnv) != "" {
				t.Fatalf("%s missing: install dovecot-lmtpd (make test does)", f)
			}
			t.Skipf("%s missing: install dovecot-lmtpd", f)
		}
	}
	// Mail belongs to an ordinary unprivileged user: Dovecot refuses to
	// deliver as root.
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := ShortTempDir(t, "dovecot-")
	os.Chmod(dir, 0o755)
	d := &Dovecot{Dir: dir, MailDir: cfg.MailDir, Port: FreePort(t), LogFile: filepath.Join(dir, "dovecot.log"), uid: uid, gid: gid}
	if d.MailDir == "" {
		d.MailDir = filepath.Join(dir, "mail")
	}
	if err := os.MkdirAll(d.MailDir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(d.MailDir, uid, gid)
	perf := ""
	if cfg.Processes > 0 {
		perf = fmt.Sprintf("  service_count = 0\n  process_min_avail = %d\n  process_limit = %d\n", cfg.Processes, max(cfg.Processes*4, 64))
	}
	conf := fmt.Sprintf(`# private instance for correo's tests and benchmarks
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[2]s
info_log_path = %[2]s
protocols = lmtp
listen = 127.0.0.1
ssl = no
first_valid_uid = 1
first_valid_gid = 1
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:%[3]s/%%n/Maildir
mail_fsync = optimized
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=%[4]d gid=%[5]d home=%[3]s/%%n allow_all_users=yes
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = %[6]d
  }
%[7]s}
`, dir, d.LogFile, d.MailDir, uid, gid, d.Port, perf)
	d.proc = runDovecot(t, "dovecot", dovecot, dir, conf, d.LogFile, d.Addr())
	return d
}

// runDovecot writes conf into dir and runs a private Dovecot master on it
// until the test ends, waiting for addr to accept connections; its log
// is printed if the test failed.
func runDovecot(t testing.TB, name, dovecot, dir, conf, logFile, addr string) *Proc {
	t.Helper()
	cf := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := Start(t, name, []string{dovecot, "-F", "-c", cf}, nil)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("--- %s log:\n%s", name, b)
		}
	})
	WaitTCP(t, addr, 30*time.Second)
	return p
}

// Addr is the LMTP address.
func (d *Dovecot) Addr() string { return fmt.Sprintf("127.0.0.1:%d", d.Port) }

// Maildir is a user's Maildir.
func (d *Dovecot) Maildir(user string) string { return filepath.Join(d.MailDir, user, "Maildir") }
