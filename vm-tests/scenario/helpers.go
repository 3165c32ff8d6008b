package scenario

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/pwadmin"
	"correo/src/pwclient"
	"correo/src/pwproto"
	"correo/src/queue"
)

// operator is the host the scenarios' operator and MDA work from, as an
// MX host's tools would.
const operator = "mx1"

// commandTimeout bounds one command on a host: long enough for a POP
// session or a delivery through a failover, short enough that a hung
// client fails the test instead of the suite's deadline.
const commandTimeout = 2 * time.Minute

// key loads the cluster key from the primary passwd host, where every
// host keeps it.
func key(t *testing.T, c Cluster) *keyfile.Ring {
	t.Helper()
	p := c.Profile()
	prim, _ := p.PasswdServers()
	ring, err := keyfile.Load(c.Path(prim.Name, p.Cluster.KeyFile))
	if err != nil {
		t.Fatalf("the cluster key on %s: %v", prim.Name, err)
	}
	return ring
}

// admin runs f with an admin connection to the primary from the operator
// host.
func admin(t *testing.T, c Cluster, what string, f func(*pwadmin.Client) error) {
	t.Helper()
	p := c.Profile()
	ring := key(t, c)
	prim, _ := p.PasswdServers()
	err := c.In(operator, func() error {
		a, err := p.Listen(prim.Name, cluster.SvcPasswdAdmin)
		if err != nil {
			return err
		}
		adm, err := pwadmin.Dial(context.Background(), a.String(), ring)
		if err != nil {
			return err
		}
		defer adm.Close()
		return f(adm)
	})
	if err != nil {
		t.Fatalf("%s on the primary from %s: %v", what, operator, err)
	}
}

// addUsers adds users on the primary (placement by the profile's policy
// when Storage is empty). Scenarios that share a cluster must not share
// user names: a name taken means another scenario already made it.
func addUsers(t *testing.T, c Cluster, users ...directory.User) {
	t.Helper()
	for _, u := range users {
		addUser(t, c, u, "")
	}
}

// addUserWithPassword adds one user with a password on the primary.
func addUserWithPassword(t *testing.T, c Cluster, name, password string) {
	t.Helper()
	addUser(t, c, directory.User{Name: name}, password)
}

func addUser(t *testing.T, c Cluster, u directory.User, password string) {
	t.Helper()
	admin(t, c, "adding user "+u.Name, func(adm *pwadmin.Client) error {
		if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserAdd, Password: password, User: &u}); err != nil {
			return fmt.Errorf("%w (each scenario needs user names of its own on a shared cluster)", err)
		}
		return nil
	})
}

// withClient runs f with a passwd client on the operator host.
func withClient(t *testing.T, c Cluster, f func(*pwclient.Client) error) error {
	t.Helper()
	ring := key(t, c)
	return c.In(operator, func() error {
		pc, err := pwclient.FromProfile(c.Profile(), ring, nil)
		if err != nil {
			return err
		}
		defer pc.Close()
		return f(pc)
	})
}

// lookup asks passwdd (from the operator host) for a user.
func lookup(t *testing.T, c Cluster, name string) pwproto.User {
	t.Helper()
	var u pwproto.User
	err := withClient(t, c, func(pc *pwclient.Client) (err error) {
		u, err = pc.LookupName(context.Background(), name)
		return err
	})
	if err != nil {
		t.Fatalf("looking up %s: %v", name, err)
	}
	return u
}

// inStep waits until both passwd servers answer with the same users at
// the same generation, and returns how many users they hold: the base a
// scenario counts its own users from on a shared cluster.
func inStep(t *testing.T, c Cluster) uint64 {
	t.Helper()
	return waitPasswd(t, c, func(pri, sec pwproto.PingInfo) bool { return true })
}

// waitReplicated waits until both passwd servers hold n users at the same
// generation.
func waitReplicated(t *testing.T, c Cluster, n uint64) {
	t.Helper()
	waitPasswd(t, c, func(pri, sec pwproto.PingInfo) bool { return pri.Users == n })
}

func waitPasswd(t *testing.T, c Cluster, ok func(pri, sec pwproto.PingInfo) bool) uint64 {
	t.Helper()
	var users uint64
	err := withClient(t, c, func(pc *pwclient.Client) error {
		deadline := time.Now().Add(20 * time.Second)
		for {
			pi, err1 := pc.Ping(context.Background(), pwclient.Primary)
			si, err2 := pc.Ping(context.Background(), pwclient.Secondary)
			if err1 == nil && err2 == nil && pi.Users == si.Users && pi.Epoch == si.Epoch && pi.Seq == si.Seq && ok(pi, si) {
				users = pi.Users
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("passwd servers not in step: primary %+v %v, secondary %+v %v", pi, err1, si, err2)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return users
}

// run runs argv on host (Cluster.Command) with stdin, and returns its
// standard output; the error carries its standard error.
func run(c Cluster, host string, stdin io.Reader, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	line := c.Command(host, argv...)
	cmd := exec.CommandContext(ctx, line[0], line[1:]...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s on %s: %v: %s%s", argv[0], host, err, errb.String(), out.String())
	}
	return out.Bytes(), nil
}

// deliver runs pdelivery on the operator host, as an MX host's MDA would.
func deliver(t *testing.T, c Cluster, user, msgID string) {
	t.Helper()
	deliverSubject(t, c, user, msgID, "test")
}

func deliverSubject(t *testing.T, c Cluster, user, msgID, subject string) {
	t.Helper()
	deliverBody(t, c, user, msgID, subject, "hola\n")
}

// deliverBody delivers a message with the given body to user, as
// deliver does.
func deliverBody(t *testing.T, c Cluster, user, msgID, subject, body string) {
	t.Helper()
	msg := "From: a@b.example\nTo: " + user + "@correo.example\nSubject: " + subject + "\nMessage-ID: <" + msgID + ">\n\n" + body
	if _, err := run(c, operator, strings.NewReader(msg),
		"pdelivery", "-profile", c.ProfilePath(), "-f", "a@b.example", "-d", user+"@correo.example"); err != nil {
		t.Fatalf("pdelivery to %s from %s: %v", user, operator, err)
	}
}

// otherStorage is a storage host of the profile other than host.
func otherStorage(t *testing.T, c Cluster, host string) string {
	t.Helper()
	for _, h := range c.Profile().HostsWithRole(cluster.RoleStorage) {
		if h.Name != host {
			return h.Name
		}
	}
	t.Fatalf("the profile has no storage host other than %s", host)
	return ""
}

// maildir is user's Maildir on a storage host, as that host sees it.
func maildir(t *testing.T, c Cluster, host, user string) string {
	t.Helper()
	p := c.Profile()
	h, err := p.Host(host)
	if err != nil {
		t.Fatal(err)
	}
	if h.Storage == nil {
		t.Fatalf("%s is no storage host", host)
	}
	md, err := p.LayoutScheme().MaildirPath(h.Storage.DataDir, user)
	if err != nil {
		t.Fatalf("Maildir of %s: %v", user, err)
	}
	return md
}

// maildirFiles lists the message files (new and cur) of user's Maildir on
// host, as paths this process opens. A Maildir not made yet is empty.
func maildirFiles(t *testing.T, c Cluster, host, user string) []string {
	t.Helper()
	md := maildir(t, c, host, user)
	var files []string
	for _, sub := range []string{"new", "cur"} {
		dir := c.Path(host, filepath.Join(md, sub))
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s's Maildir on %s: %v", user, host, err)
		}
		for _, e := range entries {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	return files
}

// maildirCount counts the messages in user's Maildir on host.
func maildirCount(t *testing.T, c Cluster, host, user string) int {
	t.Helper()
	return len(maildirFiles(t, c, host, user))
}

// waitCount waits until user has at least want messages on host.
func waitCount(t *testing.T, c Cluster, host, user string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for maildirCount(t, c, host, user) < want {
		if time.Now().After(deadline) {
			// What the cluster said about the user tells a lost message
			// from a slow or stuck queue.
			all, _ := c.CentralLog("")
			var about []string
			for _, l := range strings.Split(string(all), "\n") {
				if strings.Contains(l, user) {
					about = append(about, l)
				}
			}
			if len(about) > 40 {
				about = about[len(about)-40:]
			}
			t.Fatalf("%s on %s has %d messages, want %d; the central log about %s ends:\n%s",
				user, host, maildirCount(t, c, host, user), want, user, strings.Join(about, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// storedMessages reads a user's stored messages as POP3 clients get them
// (LF line ends), keyed by content.
func storedMessages(t *testing.T, c Cluster, user string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, f := range maildirFiles(t, c, lookup(t, c, user).Storage, user) {
		// A file can move from new to cur between listing and reading.
		if b, err := os.ReadFile(f); err == nil {
			out[string(b)] = true
		}
	}
	return out
}

// popFetch logs in through the POP pool name from Outside with Python's
// poplib (STLS first, as the cluster requires) and returns the messages,
// as a JSON list of base64 strings decoded here.
func popFetch(c Cluster, user, password string) ([][]byte, error) {
	script := `import poplib, ssl, sys, json, base64
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3(sys.argv[1], 110, timeout=20)
p.stls(context=ctx)
p.user(sys.argv[2]); p.pass_(sys.argv[3])
n = len(p.list()[1])
out = [base64.b64encode(b"\n".join(p.retr(i + 1)[1]) + b"\n").decode() for i in range(n)]
p.quit()
print(json.dumps(out))
`
	out, err := run(c, Outside, nil, "python3", "-c", script, "pop."+c.Profile().Cluster.DNS.Zone, user, password)
	if err != nil {
		return nil, err
	}
	var b64 []string
	if err := json.Unmarshal(out, &b64); err != nil {
		return nil, fmt.Errorf("poplib output %q: %v", out, err)
	}
	var msgs [][]byte
	for _, s := range b64 {
		m, _ := base64.StdEncoding.DecodeString(s)
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// logMark is the size of the central log now: logSince then reads only
// what was filed after, so a scenario on a shared cluster checks its own
// lines, not an earlier scenario's.
func logMark(t *testing.T, c Cluster) int {
	t.Helper()
	all, err := c.CentralLog("")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("reading the central log: %v", err)
	}
	return len(all)
}

func logSince(c Cluster, mark int) []byte {
	all, _ := c.CentralLog("")
	if len(all) < mark {
		return all // started over: all of it is new
	}
	return all[mark:]
}

// waitQueuesEmpty waits until no smtpd of the cluster holds a message:
// everything accepted is delivered or bounced and nothing is attempted
// again, so a count taken now is final.
func waitQueuesEmpty(t *testing.T, c Cluster) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, h := range c.Profile().Hosts {
		if !h.HasRole(cluster.RoleMX) && !h.HasRole(cluster.RoleRelay) {
			continue
		}
		dir := c.Path(h.Name, filepath.Join(c.StateDir(h.Name, "smtpd"), "queue"))
		for {
			envs, errs, err := queue.List(dir)
			if err == nil && len(envs)+len(errs) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's queue still holds %d messages after 30s (%v %v)", h.Name, len(envs), errs, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// stop stops daemon on host, and starts it again when the test ends,
// whatever happens in between: the next scenario finds it running.
func stop(t *testing.T, c Cluster, host, daemon string, kill bool) {
	t.Helper()
	t.Cleanup(func() {
		if err := c.Start(context.Background(), host, daemon); err != nil {
			t.Errorf("restarting %s on %s after the scenario: %v", daemon, host, err)
		}
	})
	if kill {
		if err := c.Kill(host, daemon); err != nil {
			t.Fatalf("killing %s on %s: %v", daemon, host, err)
		}
	}
	// After a kill too: under systemd the daemon may be back already, and
	// the scenario needs it down until it starts it.
	if err := c.Stop(host, daemon); err != nil {
		t.Fatalf("stopping %s on %s: %v", daemon, host, err)
	}
}

// unplug takes host's link down, and up again when the test ends.
func unplug(t *testing.T, c Cluster, host string) {
	t.Helper()
	t.Cleanup(func() {
		if err := c.SetLink(host, true); err != nil {
			t.Errorf("bringing %s's link up after the scenario: %v", host, err)
		}
	})
	if err := c.SetLink(host, false); err != nil {
		t.Fatalf("taking %s's link down: %v", host, err)
	}
}

// addr is host's address for a service, as host:port.
func addr(t *testing.T, c Cluster, host string, s cluster.Service) string {
	t.Helper()
	a, err := c.Profile().Listen(host, s)
	if err != nil {
		t.Fatalf("%s on %s: %v", s, host, err)
	}
	return a.String()
}

// dnsServer is the cluster's first DNS server, host:port.
func dnsServer(t *testing.T, c Cluster) string {
	t.Helper()
	eps := c.Profile().Endpoints(cluster.SvcDNS)
	if len(eps) == 0 {
		t.Fatal("the profile has no dns host")
	}
	return eps[0].Addr.String()
}
