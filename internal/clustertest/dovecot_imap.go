package clustertest

import (
	"fmt"
	"testing"
)

// DovecotIMAPConfig configures a private Dovecot IMAP server.
type DovecotIMAPConfig struct {
	Users []DovecotUser
	// LoginProcesses > 0 is Dovecot's documented high-performance mode:
	// imap-login processes are reused (service_count = 0) and that many
	// kept ready (process_min_avail). 0 is the stock mode, one login
	// process per connection. Either way each logged-in session has its
	// own imap process.
	LoginProcesses int
	// MaxConnections > 0 sizes the instance for that many concurrent
	// sessions (Dovecot's defaults stop near 1 000, and at 10 per user
	// and client address): imap processes (process_limit), clients of
	// every service (default_client_limit: stats, anvil and auth see one
	// per session), sessions per user and address
	// (mail_max_userip_connections), and this process's descriptor limit,
	// which the master and its services inherit (RaiseFDLimit).
	MaxConnections int
	// Settings is appended to dovecot.conf as is: top-level settings, and
	// service blocks, which Dovecot merges with the same service's block
	// above.
	Settings string
}

// DovecotIMAP is a private Dovecot instance serving only IMAP on
// loopback, without TLS, with plaintext logins allowed.
type DovecotIMAP = DovecotServer

// StartDovecotIMAP configures and starts Dovecot's IMAP server (root: its
// master drops privileges) and waits until the port answers.
func StartDovecotIMAP(t testing.TB, cfg DovecotIMAPConfig) *DovecotIMAP {
	t.Helper()
	m := dovecotMail{proto: "imap", pkg: "dovecot-imapd", users: cfg.Users, settings: cfg.Settings}
	if cfg.LoginProcesses > 0 {
		m.login = fmt.Sprintf("  service_count = 0\n  process_min_avail = %d\n", cfg.LoginProcesses)
	}
	if n := cfg.MaxConnections; n > 0 {
		// A margin for sessions still closing, and each imap process's
		// own descriptors in the services it talks to.
		limit := n + n/10 + 100
		RaiseFDLimit(t, uint64(4*limit+1024))
		m.top = fmt.Sprintf("default_client_limit = %d\n", limit)
		m.service = fmt.Sprintf("  process_limit = %d\n", limit)
		m.settings = fmt.Sprintf("protocol imap {\n  mail_max_userip_connections = %d\n}\n", limit) + m.settings
	}
	return startDovecotMail(t, m)
}
