package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/internal/testutil"
)

// PostfixConfig configures a private Postfix instance.
type PostfixConfig struct {
	// Main holds main.cf settings added to (or replacing) the defaults:
	// loopback only, no DNS, nothing local, mail for the listed domains
	// only through what the test configures (virtual_transport,
	// mailbox_command ...).
	Main map[string]string
	// Passwd, when set, are /etc/passwd lines Postfix should see in
	// addition to the real file (local(8) delivers only to users it can
	// getpwnam). Postfix then runs in a private mount namespace with a
	// copy of /etc/passwd bind-mounted over the real one: the machine's
	// file is never touched. Needs root.
	Passwd []string
	// Listen is the address smtpd binds and inet_interfaces; default
	// 127.0.0.1.
	Listen string
	// Wrap, when set, runs Postfix's master through it: e.g. inside a
	// network namespace (vm-tests) with `ip netns exec`.
	Wrap func(argv []string) []string
	// Ready, when set, replaces the wait for the SMTP banner (which a test
	// outside Wrap's namespace could not reach).
	Ready func(addr string) error
	// QueueDir puts the queue on a chosen disk (a benchmark's file system);
	// default: inside the instance's temporary directory.
	QueueDir string
}

// Postfix is a private Postfix instance: its own configuration, queue
// and data directories, listening on a loopback port, logging to a file.
type Postfix struct {
	Dir      string
	ConfDir  string
	QueueDir string
	Port     int
	LogFile  string
	proc     *Proc
	listen   string
}

// StartPostfix configures and starts a private Postfix (root: Postfix's
// master runs as root and drops to the postfix user) and waits for its
// SMTP banner.
func StartPostfix(t testing.TB, cfg PostfixConfig) *Postfix {
	t.Helper()
	testutil.NeedRoot(t)
	postfix := testutil.NeedCommand(t, "postfix")
	if _, err := user.Lookup("postfix"); err != nil {
		t.Fatalf("the postfix user is missing (is the Debian postfix package installed?): %v", err)
	}
	dir := ShortTempDir(t, "postfix-")
	os.Chmod(dir, 0o755)
	listen := cfg.Listen
	if listen == "" {
		listen = "127.0.0.1"
	}
	p := &Postfix{Dir: dir, ConfDir: filepath.Join(dir, "etc"), QueueDir: filepath.Join(dir, "queue"),
		LogFile: filepath.Join(dir, "maillog"), Port: FreePort(t), listen: listen}
	if cfg.QueueDir != "" {
		p.QueueDir = cfg.QueueDir
	}
	for _, d := range []string{p.ConfDir, p.QueueDir, filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	main := map[string]string{
		"compatibility_level":      "3.6",
		"queue_directory":          p.QueueDir,
		"data_directory":           filepath.Join(dir, "data"),
		"mail_owner":               "postfix",
		"setgid_group":             "postdrop",
		"inet_interfaces":          listen,
		"inet_protocols":           "ipv4",
		"myhostname":               "mx.clustertest.test",
		"mydomain":                 "clustertest.test",
		"myorigin":                 "$myhostname",
		"mydestination":            "",
		"mynetworks":               "127.0.0.0/8",
		"relay_domains":            "",
		"smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
		"alias_maps":               "",
		"alias_database":           "",
		"maillog_file":             p.LogFile,
		"maillog_file_prefixes":    dir,
		"smtp_dns_support_level":   "disabled",
		"lmtp_host_lookup":         "native",
		"biff":                     "no",
		"append_dot_mydomain":      "no",
		// Retry soon in tests: a deferred message would otherwise wait
		// for minutes.
		"queue_run_delay":                     "2s",
		"minimal_backoff_time":                "2s",
		"maximal_backoff_time":                "4s",
		"delay_warning_time":                  "0",
		"smtputf8_enable":                     "no",
		"local_recipient_maps":                "",
		"unknown_local_recipient_reject_code": "550",
	}
	for k, v := range cfg.Main {
		main[k] = v
	}
	keys := make([]string, 0, len(main))
	for k := range main {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var mc strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&mc, "%s = %s\n", k, main[k])
	}
	// Only the services these tests need, none chrooted (the chroot would
	// need a copy of /etc and the libraries under the queue directory).
	master := fmt.Sprintf(`%s:%d inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`, listen, p.Port)
	if err := os.WriteFile(filepath.Join(p.ConfDir, "main.cf"), []byte(mc.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.ConfDir, "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
	// The queue subdirectories with their owners and modes, as
	// postfix-files describes them.
	// check verifies inet_interfaces against the local addresses, so it
	// runs where master will.
	wrap := func(argv ...string) *exec.Cmd {
		if cfg.Wrap != nil {
			argv = cfg.Wrap(argv)
		}
		return exec.Command(argv[0], argv[1:]...)
	}
	if out, err := wrap(postfix, "-c", p.ConfDir, "set-permissions").CombinedOutput(); err != nil {
		t.Logf("postfix set-permissions: %v\n%s", err, out)
	}
	if out, err := wrap(postfix, "-c", p.ConfDir, "check").CombinedOutput(); err != nil {
		t.Fatalf("postfix check: %v\n%s", err, out)
	}
	argv := []string{postfix, "-c", p.ConfDir, "start-fg"}
	if len(cfg.Passwd) > 0 {
		testutil.NeedCommand(t, "unshare")
		real, err := os.ReadFile("/etc/passwd")
		if err != nil {
			t.Fatal(err)
		}
		pw := filepath.Join(dir, "passwd")
		if err := os.WriteFile(pw, []byte(strings.TrimRight(string(real), "\n")+"\n"+strings.Join(cfg.Passwd, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		argv = []string{"unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount --bind "$PW" /etc/passwd && exec "$@"`, "sh"}
		argv = append(argv, postfix, "-c", p.ConfDir, "start-fg")
		if cfg.Wrap != nil {
			argv = cfg.Wrap(argv)
		}
		p.proc = Start(t, "postfix", argv, []string{"PW=" + pw})
	} else {
		if cfg.Wrap != nil {
			argv = cfg.Wrap(argv)
		}
		p.proc = Start(t, "postfix", argv, nil)
	}
	t.Cleanup(func() {
		// master detaches into its own session: stopping the postfix
		// command is not enough.
		p.stopMaster(postfix)
		if t.Failed() {
			b, _ := os.ReadFile(p.LogFile)
			t.Logf("--- postfix maillog:\n%s", b)
		}
	})
	if cfg.Ready != nil {
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := cfg.Ready(p.Addr())
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("postfix never answered on %s: %v", p.Addr(), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	} else {
		WaitTCP(t, p.Addr(), 30*time.Second)
	}
	return p
}

// Addr is the SMTP address.
func (p *Postfix) Addr() string { return fmt.Sprintf("%s:%d", p.listen, p.Port) }

// Log returns the instance's mail log so far.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(p.LogFile)
	return string(b)
}

// QueueCount counts the messages in the queue (incoming, active,
// deferred, hold, maildrop).
func (p *Postfix) QueueCount() int {
	n := 0
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		filepath.WalkDir(filepath.Join(p.QueueDir, q), func(_ string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
	}
	return n
}

// WaitQueueEmpty waits until the queue holds no message.
func (p *Postfix) WaitQueueEmpty(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for p.QueueCount() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("postfix queue still holds %d messages after %v; log:\n%s", p.QueueCount(), timeout, p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the instance.
func (p *Postfix) Stop() {
	p.stopMaster("postfix")
	p.proc.Stop(syscall.SIGTERM)
}

// stopMaster stops the master daemon by its pid file and waits for it and
// its children to go, killing them after 10 s.
func (p *Postfix) stopMaster(postfix string) {
	b, err := os.ReadFile(filepath.Join(p.QueueDir, "pid", "master.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	exec.Command(postfix, "-c", p.ConfDir, "stop").Run()
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Services master started are in its process group.
	syscall.Kill(-pid, syscall.SIGKILL)
}
