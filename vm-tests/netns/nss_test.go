package netns

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/nss/nsstest"
	"correo/src/pwadmin"
	"correo/src/runner"
)

// TestNSSOnStorageHost (scenario 6): inside store1's network namespace
// and a private mount namespace — nsswitch.conf bind-mounted, the module
// overlaid on the library directory, store1's nssd socket on
// /run/correo — the system's own getent and id resolve a cluster user
// through libnss_correo, nssd and passwdd on other hosts.
func TestNSSOnStorageHost(t *testing.T) {
	testutil.NeedCommand(t, "gcc")
	r := bootExample(t)
	p := r.Profile
	lib := nsstest.NeedLib(t)
	defer nsstest.Cleanup()
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
		_, err = adm.Do(pwadmin.Request{Op: pwadmin.OpUserAdd, User: &directory.User{Name: "juan", UID: 5001, Gecos: "Juan Perez", Shell: "/bin/sh"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	modDir := filepath.Join(dir, "lib")
	os.MkdirAll(modDir, 0o755)
	data, _ := os.ReadFile(lib)
	os.WriteFile(filepath.Join(modDir, "libnss_correo.so.2"), data, 0o755)
	nsswitch := filepath.Join(dir, "nsswitch.conf")
	os.WriteFile(nsswitch, []byte("passwd: files correo\ngroup: files correo\n"), 0o644)
	script := `set -eu
mount --bind "$1" /etc/nsswitch.conf
mount -t overlay overlay -o lowerdir="$2":/usr/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir /run/correo
mount --bind "$3" /run/correo
getent passwd juan
id juan
`
	cmd := exec.Command("ip", "netns", "exec", r.Netns.Name("store1"), "unshare", "-m", "--propagation", "private",
		"sh", "-c", script, "sh", nsswitch, modDir, r.NSSDir("store1"))
	// The module's default socket is /run/correo/nssd.sock; no override.
	cmd.Env = append(os.Environ(), "CORREO_NSS_SOCKET=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("getent/id in store1's namespace: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "juan:x:5001:5000:Juan Perez:"+r.StateDir) || !strings.HasSuffix(lines[0], "/j/u/a/juan:/bin/sh") {
		t.Fatalf("getent passwd juan on store1:\n%s", out)
	}
	if lines[1] != "uid=5001(juan) gid=5000(correo) groups=5000(correo)" {
		t.Fatalf("id juan on store1: %q", lines[1])
	}
}
