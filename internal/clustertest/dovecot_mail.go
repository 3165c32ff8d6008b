package clustertest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"correo/internal/testutil"
)

// What StartDovecotPOP3 and StartDovecotIMAP share: a private Dovecot
// serving one mail protocol on loopback over existing Maildirs, its users
// in a passwd-file.

// DovecotUser is one user of a private Dovecot POP3 or IMAP server.
type DovecotUser struct {
	Name string
	// Hash is the password in a scheme Dovecot knows, with its prefix:
	// "{SHA512-CRYPT}$6$...", "{PLAIN}secret".
	Hash string
	// Maildir is the user's existing Maildir (for instance correo's, to
	// compare both servers on the same mailbox). It must be readable and
	// writable by the unprivileged user Dovecot runs mail processes as
	// (see DovecotServer.UID): Dovecot moves new/ to cur/ and writes its
	// index files there.
	Maildir string
}

// DovecotServer is a private Dovecot instance serving only POP3 or only
// IMAP on loopback, without TLS, with plaintext logins allowed.
type DovecotServer struct {
	Dir      string
	Port     int
	LogFile  string
	UID, GID int
	// Proc is the master process; stopping it early (Proc.Stop) empties
	// Dovecot's auth cache for a benchmark's next cold phase. Its
	// process tree is the whole instance (ProcTree).
	Proc *Proc
}

// Addr is the POP3 or IMAP address.
func (d *DovecotServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", d.Port) }

// dovecotMail is one protocol's part of a private instance's
// configuration.
type dovecotMail struct {
	proto string // "pop3" or "imap": protocols, the listeners' names
	pkg   string // the Debian package holding /usr/lib/dovecot/<proto>
	users []DovecotUser
	// login is added to service <proto>-login (high-performance mode),
	// service to service <proto>, top to the top level; settings at the
	// very end (the caller's).
	login, service, top, settings string
}

// startDovecotMail configures and starts Dovecot for m (root: its master
// drops privileges) and waits until the port answers.
func startDovecotMail(t testing.TB, m dovecotMail) *DovecotServer {
	t.Helper()
	testutil.NeedRoot(t)
	dovecot := testutil.NeedCommand(t, "dovecot")
	if _, err := os.Stat("/usr/lib/dovecot/" + m.proto); err != nil {
		if os.Getenv(testutil.StrictEnv) != "" {
			t.Fatalf("/usr/lib/dovecot/%s missing: install %s (make test does)", m.proto, m.pkg)
		}
		t.Skipf("/usr/lib/dovecot/%s missing: install %s", m.proto, m.pkg)
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := ShortTempDir(t, "dovecot-"+m.proto+"-")
	os.Chmod(dir, 0o755)
	d := &DovecotServer{Dir: dir, Port: FreePort(t), LogFile: filepath.Join(dir, "dovecot.log"), UID: uid, GID: gid}
	// passwd-file: user:password:uid:gid:gecos:home:shell:extra. The
	// Maildir is given per user (userdb_mail), so any layout works.
	var pw strings.Builder
	for _, usr := range m.users {
		home := filepath.Dir(usr.Maildir)
		fmt.Fprintf(&pw, "%s:%s:%d:%d::%s::userdb_mail=maildir:%s\n", usr.Name, usr.Hash, uid, gid, home, usr.Maildir)
	}
	pwFile := filepath.Join(dir, "users")
	if err := os.WriteFile(pwFile, []byte(pw.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// The other protocol's login service is declared too, its listeners
	// closed: Dovecot's built-in defaults would open them.
	other := "imap"
	if m.proto == "imap" {
		other = "pop3"
	}
	conf := fmt.Sprintf(`# private instance for correo's tests and benchmarks
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[2]s
info_log_path = %[2]s
protocols = %[6]s
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
first_valid_gid = 1
default_internal_user = dovecot
default_login_user = dovenull
mail_fsync = optimized
%[8]spassdb {
  driver = passwd-file
  args = %[3]s
}
userdb {
  driver = passwd-file
  args = %[3]s
}
service %[6]s-login {
  inet_listener %[6]s {
    address = 127.0.0.1
    port = %[4]d
  }
  inet_listener %[6]ss {
    port = 0
  }
%[5]s}
service %[6]s {
%[9]s}
service %[7]s-login {
  inet_listener %[7]s {
    port = 0
  }
  inet_listener %[7]ss {
    port = 0
  }
}
`, dir, d.LogFile, pwFile, d.Port, m.login, m.proto, other, m.top, m.service) + m.settings
	d.Proc = runDovecot(t, "dovecot-"+m.proto, dovecot, dir, conf, d.LogFile, d.Addr())
	return d
}

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

// RaiseFDLimit raises this process's RLIMIT_NOFILE, soft and hard, to at
// least n where it can: root may raise the hard limit up to fs.nr_open,
// unless a container withholds CAP_SYS_RESOURCE, and then the soft limit
// goes up to the hard one only. It returns the soft limit now in force.
// Programs started afterwards inherit it: a Dovecot master and its
// services holding thousands of connections, a daemon under a connection
// benchmark.
func RaiseFDLimit(t testing.TB, n uint64) uint64 {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur >= n {
		return rl.Cur
	}
	// syscall.Setrlimit (not x/sys/unix's) also tells os/exec not to
	// restore, in children, the limit the Go runtime found at start.
	want := syscall.Rlimit{Cur: n, Max: max(rl.Max, n)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
		return n
	}
	want = syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		t.Fatalf("raising RLIMIT_NOFILE to %d: %v", rl.Max, err)
	}
	t.Logf("RLIMIT_NOFILE stays at its hard limit, %d, below the %d wanted (no CAP_SYS_RESOURCE?)", rl.Max, n)
	return rl.Max
}

// ProcTree is pid and every process descending from it, read from /proc.
func ProcTree(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

// PSS is the proportional set size of a process in KiB (Pss in
// /proc/PID/smaps_rollup): its private pages, and its share of pages
// mapped by others, so the PSS of a group of processes adds up to the
// memory they use together. A process that has gone is 0.
func PSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// TreePSS is the PSS of pid and its descendants in KiB, and how many
// processes that is.
func TreePSS(pid int) (kb int64, procs int) {
	for _, p := range ProcTree(pid) {
		kb += PSS(p)
		procs++
	}
	return kb, procs
}
