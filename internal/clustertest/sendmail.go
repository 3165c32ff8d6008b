package clustertest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"correo/internal/testutil"
)

// SendmailCache is where .ci/sendmail unpacks Debian's Sendmail. It is
// never installed with apt: sendmail-bin and postfix both provide
// mail-transport-agent, and installing one removes the other.
const SendmailCache = "/var/cache/correo/sendmail"

// NeedSendmail returns the unpacked Sendmail's root (SendmailCache),
// running .ci/sendmail to download and unpack it when it is missing. A
// failure (no network, no apt) skips the test, or fails it under
// CORREO_STRICT, with the script's message.
func NeedSendmail(t testing.TB) string {
	t.Helper()
	testutil.NeedRoot(t)
	if _, err := os.Stat(filepath.Join(SendmailCache, "usr/libexec/sendmail/sendmail")); err == nil {
		return SendmailCache
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", ".ci", "sendmail")
	out, err := exec.Command(script, SendmailCache).CombinedOutput()
	if err == nil {
		return SendmailCache
	}
	msg := fmt.Sprintf("unpacking Debian's Sendmail into %s with %s failed (%v): %s; run that script as root with network access to the Debian mirror", SendmailCache, script, err, strings.TrimSpace(string(out)))
	if os.Getenv(testutil.StrictEnv) != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// SendmailConfig configures a private Sendmail.
type SendmailConfig struct {
	// Local are the .mc lines under test that configure the local mailer
	// (LOCAL_MAILER_PATH, LOCAL_MAILER_ARGS, MODIFY_MAILER_FLAGS ...),
	// put before MAILER(`local').
	Local []string
	// Domains are the domains delivered by the local mailer
	// (LOCAL_DOMAIN): the cluster's.
	Domains []string
	// NSSLib, when set, is a libnss_correo.so.2 Sendmail's getpwnam
	// reaches ("passwd: files correo") through an overlay on the library
	// directory, with NSSSocketDir (where nssd listens as nssd.sock)
	// mounted on /run/correo, the module's built-in socket directory.
	NSSLib       string
	NSSSocketDir string
}

// Sendmail is a private Sendmail. It runs no daemon: each Run is one
// sendmail command (delivery in the foreground, -bp, -q) in a private
// mount and UTS namespace (its host name is mx.correo.test) where the instance directory is /run/sendmail. Sendmail
// refuses to write its alias database, queue and status files under a
// world-writable directory such as /tmp (DontBlameSendmail's
// WorldWritableDirPathSafe is not accepted), so the instance lives on a
// tmpfs /run of that namespace: the machine's /etc/mail, /var/spool and
// /run are never touched.
type Sendmail struct {
	Dir  string // on the machine; /run/sendmail inside Run
	Bin  string
	CF   string // path inside Run
	cfg  SendmailConfig
	lib  string
	conf string // nsswitch.conf
}

// SendmailRoot is the instance directory as Sendmail sees it.
const SendmailRoot = "/run/sendmail"

// NewSendmail writes a private sendmail.mc (loopback, no DNS, no probing
// of interfaces, every file under SendmailRoot) and builds sendmail.cf
// from it with m4 and Debian's cf tree.
func NewSendmail(t testing.TB, cfg SendmailConfig) *Sendmail {
	t.Helper()
	cache := NeedSendmail(t)
	m4 := testutil.NeedCommand(t, "m4")
	testutil.NeedCommand(t, "unshare")
	dir := ShortTempDir(t, "sendmail-")
	// Sendmail checks every directory up to its files: root's, not
	// writable by others.
	os.Chmod(dir, 0o755)
	s := &Sendmail{Dir: dir, Bin: filepath.Join(cache, "usr/libexec/sendmail/sendmail"),
		CF: SendmailRoot + "/sendmail.cf", cfg: cfg}
	r := SendmailRoot
	var mc strings.Builder
	mc.WriteString("divert(-1)\ndivert(0)dnl\n")
	for _, l := range []string{
		"define(`MAIL_SETTINGS_DIR', `" + r + "/etc/')dnl",
		"OSTYPE(`linux')dnl",
		"define(`QUEUE_DIR', `" + r + "/queue')dnl",
		"define(`confPID_FILE', `" + r + "/sendmail.pid')dnl",
		"define(`STATUS_FILE', `" + r + "/sendmail.st')dnl",
		"define(`confHOST_STATUS_DIRECTORY', `" + r + "/host_status')dnl",
		"define(`confDEAD_LETTER_DROP', `" + r + "/dead.letter')dnl",
		// No DNS: hosts come from a private hosts file only, the name is
		// fixed and addresses are not canonified.
		"define(`confSERVICE_SWITCH_FILE', `" + r + "/etc/service.switch')dnl",
		"define(`confHOSTS_FILE', `" + r + "/etc/hosts')dnl",
		"define(`confDONT_PROBE_INTERFACES', `True')dnl",
		"define(`confDOMAIN_NAME', `mx.correo.test')dnl",
		"FEATURE(`nocanonify')dnl",
		// Retry a deferred message at once when the test runs -q.
		"define(`confMIN_QUEUE_AGE', `0')dnl",
		// DaemonPortOptions: loopback only, though no daemon is started.
		"DAEMON_OPTIONS(`Port=" + fmt.Sprint(FreePort(t)) + ", Addr=127.0.0.1, Name=MTA')dnl",
	} {
		mc.WriteString(l + "\n")
	}
	for _, d := range cfg.Domains {
		fmt.Fprintf(&mc, "LOCAL_DOMAIN(`%s')dnl\n", d)
	}
	for _, l := range cfg.Local {
		mc.WriteString(l + "\n")
	}
	mc.WriteString("MAILER(`local')dnl\nMAILER(`smtp')dnl\n")
	files := map[string]string{
		"sendmail.mc":          mc.String(),
		"etc/service.switch":   "hosts files\naliases files\n",
		"etc/hosts":            "127.0.0.1 localhost mx.correo.test\n",
		"etc/aliases":          "postmaster: root\nMAILER-DAEMON: postmaster\n",
		"etc/local-host-names": "",
		"etc/trusted-users":    "",
		"etc/relay-domains":    "",
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"queue", "host_status"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfDir := filepath.Join(cache, "usr/share/sendmail/cf")
	cmd := exec.Command(m4, "-D_CF_DIR_="+cfDir+"/", filepath.Join(cfDir, "m4/cf.m4"), filepath.Join(dir, "sendmail.mc"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("m4 building sendmail.cf from %s: %v %s", filepath.Join(dir, "sendmail.mc"), err, stderr.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "sendmail.cf"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg.NSSLib != "" {
		s.lib = filepath.Join(dir, "nsslib")
		os.Mkdir(s.lib, 0o755)
		data, err := os.ReadFile(cfg.NSSLib)
		if err != nil {
			t.Fatalf("the NSS module for Sendmail: %v", err)
		}
		if err := os.WriteFile(filepath.Join(s.lib, "libnss_correo.so.2"), data, 0o755); err != nil {
			t.Fatal(err)
		}
		s.conf = filepath.Join(dir, "nsswitch.conf")
		os.WriteFile(s.conf, []byte("passwd: files correo\ngroup: files correo\nshadow: files\nhosts: files\n"), 0o644)
	}
	if code, out := s.Run(t, "", "-bi"); code != 0 {
		t.Fatalf("sendmail -bi (the alias database): exit %d\n%s", code, out)
	}
	return s
}

// MC is the generated sendmail.mc.
func (s *Sendmail) MC(t testing.TB) string {
	b, err := os.ReadFile(filepath.Join(s.Dir, "sendmail.mc"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Mailer is the sendmail.cf definition of mailer name (its M line and
// continuation lines).
func (s *Sendmail) Mailer(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "sendmail.cf"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "M"+name+",") || (len(out) > 0 && strings.HasPrefix(l, "\t")) {
			out = append(out, l)
		} else if len(out) > 0 {
			break
		}
	}
	return strings.Join(out, "\n")
}

// Run runs sendmail -C sendmail.cf with args and stdin in the instance's
// mount namespace and returns its exit code and output.
func (s *Sendmail) Run(t testing.TB, stdin string, args ...string) (int, string) {
	t.Helper()
	script := `set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir /run/sendmail /run/correo
mount --bind "$SM_DIR" /run/sendmail
# Sendmail must resolve its own host name, or it sleeps a minute and
# retries ("My unqualified host name ... unknown; sleeping for retry"):
# a name of its own, in a hosts file of its own.
hostname mx.correo.test
mount --bind "$SM_DIR/etc/hosts" /etc/hosts
if [ -n "$SM_NSSLIB" ]; then
  mount --bind "$SM_NSSCONF" /etc/nsswitch.conf
  mount -t overlay overlay -o lowerdir="$SM_NSSLIB":/usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu
  mount --bind "$SM_NSSSOCK" /run/correo
fi
exec "$@"
`
	argv := append([]string{"-m", "-u", "--propagation", "private", "sh", "-c", script, "sh", s.Bin, "-C", s.CF}, args...)
	cmd := exec.Command("unshare", argv...)
	cmd.Env = append(os.Environ(), "SM_DIR="+s.Dir, "SM_NSSLIB="+s.lib, "SM_NSSCONF="+s.conf, "SM_NSSSOCK="+s.cfg.NSSSocketDir)
	cmd.Stdin = strings.NewReader(stdin)
	var out SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sendmail: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String()
		} else if err != nil {
			t.Fatalf("sendmail %v: %v\n%s", args, err, out.String())
		}
		return 0, out.String()
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("sendmail %v hung for 2 minutes:\n%s", args, out.String())
		return 0, ""
	}
}

// QueueFiles lists the queue's control files (qf*): one per queued message.
func (s *Sendmail) QueueFiles(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, n := range testutil.DirNames(t, filepath.Join(s.Dir, "queue")) {
		if strings.HasPrefix(n, "qf") {
			out = append(out, n)
		}
	}
	return out
}
