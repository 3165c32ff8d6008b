package clustertest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"correo/internal/testutil"
)

// DovecotInstance is a private Dovecot whose configuration the test
// writes itself (passdb, userdb and mail settings of its own), with the
// instance's paths and two loopback ports filled in by StartDovecotConf.
type DovecotInstance struct {
	Dir                string
	LogFile            string
	IMAPPort, POP3Port int
	Proc               *Proc
}

// IMAPAddr and POP3Addr are the listeners' addresses.
func (d *DovecotInstance) IMAPAddr() string { return fmt.Sprintf("127.0.0.1:%d", d.IMAPPort) }
func (d *DovecotInstance) POP3Addr() string { return fmt.Sprintf("127.0.0.1:%d", d.POP3Port) }

// Log returns the instance's log so far.
func (d *DovecotInstance) Log() string {
	b, _ := os.ReadFile(d.LogFile)
	return string(b)
}

// StartDovecotConf starts a private Dovecot serving IMAP and POP3 on
// loopback, without TLS, plaintext logins allowed. auth is appended to
// the configuration as is: the passdb and userdb blocks and any mail
// settings. Needs root (Dovecot's master drops privileges) and
// dovecot-imapd and dovecot-pop3d.
func StartDovecotConf(t testing.TB, auth string) *DovecotInstance {
	t.Helper()
	testutil.NeedRoot(t)
	dovecot := testutil.NeedCommand(t, "dovecot")
	for _, p := range []string{"imap", "pop3"} {
		if _, err := os.Stat("/usr/lib/dovecot/" + p); err != nil {
			if os.Getenv(testutil.StrictEnv) != "" {
				t.Fatalf("/usr/lib/dovecot/%s missing: install dovecot-%sd (make test does)", p, p)
			}
			t.Skipf("/usr/lib/dovecot/%s missing: install dovecot-%sd", p, p)
		}
	}
	dir := ShortTempDir(t, "dovecot-")
	os.Chmod(dir, 0o755)
	d := &DovecotInstance{Dir: dir, LogFile: filepath.Join(dir, "dovecot.log"), IMAPPort: FreePort(t), POP3Port: FreePort(t)}
	conf := fmt.Sprintf(`# private instance for correo's tests
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[2]s
info_log_path = %[2]s
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
first_valid_gid = 1
default_internal_user = dovecot
default_login_user = dovenull
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[3]d
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[4]d
  }
  inet_listener pop3s {
    port = 0
  }
}
`, dir, d.LogFile, d.IMAPPort, d.POP3Port) + auth
	d.Proc = runDovecot(t, "dovecot", dovecot, dir, conf, d.LogFile, d.IMAPAddr())
	WaitTCP(t, d.POP3Addr(), 30e9)
	return d
}
