package clustertest

import (
	"fmt"
	"testing"
)

// DovecotPOP3User is one user of a private Dovecot POP3 server.
type DovecotPOP3User = DovecotUser

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
type DovecotPOP3 = DovecotServer

// StartDovecotPOP3 configures and starts Dovecot's POP3 server (root: its
// master drops privileges) and waits until the port answers.
func StartDovecotPOP3(t testing.TB, cfg DovecotPOP3Config) *DovecotPOP3 {
	t.Helper()
	perf := ""
	if cfg.LoginProcesses > 0 {
		perf = fmt.Sprintf("  service_count = 0\n  process_min_avail = %d\n", cfg.LoginProcesses)
	}
	return startDovecotMail(t, dovecotMail{proto: "pop3", pkg: "dovecot-pop3d", users: cfg.Users, login: perf, settings: cfg.Settings})
}
