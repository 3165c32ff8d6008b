package netns

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
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
	"correo/src/runner"
)

// boot starts a profile in namespaces with the given state directory and
// programs; the caller owns Down (bootExample registers it).
func boot(t *testing.T, p *cluster.Profile, state, bin string) (*runner.Runner, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	r := &runner.Runner{Profile: p, StateDir: state, BinDir: bin,
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Netns: &runner.Netns{Prefix: prefix}, ReadyTimeout: 30 * time.Second}
	if err := r.Up(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	return r, &logs
}

// addUsers adds users on the primary from mx1's namespace (placement by
// the profile's policy when Storage is empty).
func addUsers(t *testing.T, r *runner.Runner, users ...directory.User) {
	t.Helper()
	p := r.Profile
	ring, err := keyfile.Load(p.Cluster.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	err = runner.InNetns(r.Netns.Name("mx1"), func() error {
		a, _ := p.Listen("pw1", cluster.SvcPasswdAdmin)
		adm, err := pwadmin.Dial(context.Background(), a.String(), ring)
		if err != nil {
			return err
		}
		defer adm.Close()
		for _, u := range users {
			if _, err := adm.Do(pwadmin.Request{Op: pwadmin.OpUserAdd, User: &u}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// lookup asks passwdd (from mx1's namespace) for a user.
func lookup(t *testing.T, r *runner.Runner, name string) pwproto.User {
	t.Helper()
	ring, _ := keyfile.Load(r.Profile.Cluster.KeyFile)
	var u pwproto.User
	err := runner.InNetns(r.Netns.Name("mx1"), func() error {
		pc, err := pwclient.FromProfile(r.Profile, ring, nil)
		if err != nil {
			return err
		}
		defer pc.Close()
		u, err = pc.LookupName(context.Background(), name)
		return err
	})
	if err != nil {
		t.Fatalf("looking up %s: %v", name, err)
	}
	return u
}

// deliver runs pdelivery in mx1's namespace, as an MX host's MDA would.
func deliver(t *testing.T, r *runner.Runner, user, msgID string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", r.Netns.Name("mx1"), filepath.Join(r.BinDir, "pdelivery"),
		"-profile", r.ProfilePath, "-f", "a@b.example", "-d", user+"@correo.example")
	cmd.Stdin = strings.NewReader("From: a@b.example\nTo: " + user + "@correo.example\nSubject: test\nMessage-ID: <" + msgID + ">\n\nhola\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pdelivery to %s from mx1: %v\n%s", user, err, out)
	}
}

// maildirCount counts the messages in a user's Maildir on a storage host.
func maildirCount(t *testing.T, r *runner.Runner, host, user string) int {
	t.Helper()
	h, err := r.Profile.Host(host)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := r.Profile.LayoutScheme().MaildirPath(h.Storage.DataDir, user)
	n := 0
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(md, sub))
		n += len(entries)
	}
	return n
}

// addUserWithPassword adds one user with a password on the primary.
func addUserWithPassword(t *testing.T, r *runner.Runner, name, password string) {
	t.Helper()
	ring, _ := keyfile.Load(r.Profile.Cluster.KeyFile)
	err := runner.InNetns(r.Netns.Name("mx1"), func() error {
		a, _ := r.Profile.Listen("pw1", cluster.SvcPasswdAdmin)
		adm, err := pwadmin.Dial(context.Background(), a.String(), ring)
		if err != nil {
			return err
		}
		defer adm.Close()
		_, err = adm.Do(pwadmin.Request{Op: pwadmin.OpUserAdd, Password: password, User: &directory.User{Name: name}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// outside runs a command in the outside namespace with the cluster DNS
// as its resolver, as a customer on the Internet would.
func outside(t *testing.T, r *runner.Runner, argv ...string) ([]byte, error) {
	t.Helper()
	args := append([]string{"netns", "exec", r.Netns.Name("outside"), "unshare", "-m", "--propagation", "private",
		"sh", "-c", `mount --bind "$1" /etc/resolv.conf && shift && exec "$@"`, "sh", r.OutsideResolv()}, argv...)
	cmd := exec.Command("ip", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.Bytes(), nil
}

// popFetch logs in through the POP pool name from outside with Python's
// poplib (STLS first, as the cluster requires) and returns the messages,
// as a JSON list of base64 strings decoded here.
func popFetch(t *testing.T, r *runner.Runner, user, password string) ([][]byte, error) {
	t.Helper()
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
	out, err := outside(t, r, "python3", "-c", script, "pop."+r.Profile.Cluster.DNS.Zone, user, password)
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
