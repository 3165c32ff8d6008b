package clustertest

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"correo/internal/testutil"
)

// DovecotPOP3User is one user of a private Dovecot POP3 server.
type DovecotPOP3User struct {
	Name string
	// Hash is the password in a scheme Dovecot knows, with its prefix:
	// "{SHA512-CRYPT}$6$...", "{PLAIN}secret".
	Hash string
	// Maildir is the user's existing Maildir (for instance correo's, to
	// compare both servers on the same mailbox). It must be readable and
	// writable by the unprivileged user Dovecot runs mail processes as
	// (see DovecotPOP3.UID): Dovecot moves new/ to cur/ and writes its
	// index files there.
	Maildir string
}

// DovecotPOP3Config configures a private Dovecot POP3 server.
type DovecotPOP3Config struct {
	Users []DovecotPOP3User
	// LoginProcesses > 0 is Dovecot's documented high-performance mode:
	// pop3-login processes are reused (service_count = 0) and that many
	// kept ready (process_min_avail). 0 is the stock mode, one login
	// process per connection.
	LoginProcesses int
	// Settings is appended to dovecot.conf as is: top-level settings, and
	// service blocks, which Dovecot merges with the same service's block
	// above (a benchmark's auth cache and process limits).
	Settings string
}

// DovecotPOP3 is a private Dovecot instance serving only POP3 on
// loopback, without TLS, with plaintext logins allowed.
type DovecotPOP3 struct {
	Dir      string
	Port     int
	LogFile  string
	UID, GID int
	// Proc is the master process; stopping it early (Proc.Stop) empties
	// Dovecot's auth cache for a benchmark's next cold phase.
	Proc *Proc
}

// StartDovecotPOP3 configures and starts Dovecot's POP3 server (root: its
// master drops privileges) and waits until the port answers.
func StartDovecotPOP3(t testing.TB, cfg DovecotPOP3Config) *DovecotPOP3 {
	t.Helper()
	testutil.NeedRoot(t)
	dovecot := testutil.NeedCommand(t, "dovecot")
	if _, err := os.Stat("/usr/lib/dovecot/pop3"); err != nil {
		if os.Getenv(testutil.StrictEnv) != "" {
			t.Fatalf("/usr/lib/dovecot/pop3 missing: install dovecot-pop3d (make test does)")
		}
		t.Skip("/usr/lib/dovecot/pop3 missing: install dovecot-pop3d")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := ShortTempDir(t, "dovecot-pop3-")
	os.Chmod(dir, 0o755)
	d := &DovecotPOP3{Dir: dir, Port: FreePort(t), LogFile: filepath.Join(dir, "dovecot.log"), UID: uid, GID: gid}
	// passwd-file: user:password:uid:gid:gecos:home:shell:extra. The
	// Maildir is given per user (userdb_mail), so any layout works.
	var pw strings.Builder
	for _, usr := range cfg.Users {
		home := filepath.Dir(usr.Maildir)
		fmt.Fprintf(&pw, "%s:%s:%d:%d::%s::userdb_mail=maildir:%s\n", usr.Name, usr.Hash, uid, gid, home, usr.Maildir)
	}
	pwFile := filepath.Join(dir, "users")
	if err := os.WriteFile(pwFile, []byte(pw.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	perf := ""
	if cfg.LoginProcesses > 0 {
		perf = fmt.Sprintf("  service_count = 0\n  process_min_avail = %d\n", cfg.LoginProcesses)
	}
	conf := fmt.Sprintf(`# private instance for correo's tests and benchmarks
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[2]s
info_log_path = %[2]s
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
first_valid_gid = 1
default_internal_user = dovecot
default_login_user = dovenull
mail_fsync = optimized
passdb {
  driver = passwd-file
  args = %[3]s
}
userdb {
  driver = passwd-file
  args = %[3]s
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[4]d
  }
  inet_listener pop3s {
    port = 0
  }
%[5]s}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
}
`, dir, d.LogFile, pwFile, d.Port, perf) + cfg.Settings
	d.Proc = runDovecot(t, "dovecot-pop3", dovecot, dir, conf, d.LogFile, d.Addr())
	return d
}

// Addr is the POP3 address.
func (d *DovecotPOP3) Addr() string { return fmt.Sprintf("127.0.0.1:%d", d.Port) }

// ChownTree gives a directory tree to uid:gid (e.g. a correo Maildir to
// the user Dovecot reads it as).
func ChownTree(t testing.TB, root string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}
