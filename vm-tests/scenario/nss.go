package scenario

import (
	"fmt"
	"path"
	"strings"
	"testing"

	"correo/src/directory"
)

// NSSOnStorageHost (the paper's scenario 6): on a storage host, the
// system's own getent and id resolve a cluster user through
// nsswitch.conf, libnss_correo, that host's nssd and passwdd on other
// hosts.
//
// Users: joaquin (uid 5001: explicit uids start far below the ones
// passwdd assigns, so no other scenario takes it).
func NSSOnStorageHost(t *testing.T, c Cluster) {
	const (
		host  = "store1"
		name  = "joaquin"
		uid   = 5001
		gecos = "Joaquin Perez"
	)
	addUsers(t, c, directory.User{Name: name, UID: uid, Gecos: gecos, Shell: "/bin/sh"})
	out, err := run(c, host, nil, "sh", "-c", `getent passwd "$1" && id "$1"`, "sh", name)
	if err != nil {
		t.Fatalf("getent/id on %s: %v", host, err)
	}

	// The home passwdd derives: the user's storage host's data_dir and the
	// layout's directory, here first3.
	p := c.Profile()
	stored := lookup(t, c, name).Storage
	h, err := p.Host(stored)
	if err != nil || h.Storage == nil {
		t.Fatalf("%s's storage host %q: %v", name, stored, err)
	}
	dir, err := p.LayoutScheme().Dir(name)
	if err != nil {
		t.Fatal(err)
	}
	if want := "j/o/a/" + name; dir != want {
		t.Fatalf("%s's directory under first3 is %s, want %s", name, dir, want)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if want := fmt.Sprintf("%s:x:%d:5000:%s:%s:/bin/sh", name, uid, gecos, path.Join(h.Storage.DataDir, dir)); len(lines) != 2 || lines[0] != want {
		t.Fatalf("getent passwd %s on %s:\n%s\nwant first line %s", name, host, out, want)
	}
	// The profile's mail group, correo (5000), is every user's group.
	if want := fmt.Sprintf("uid=%d(%s) gid=5000(correo) groups=5000(correo)", uid, name); lines[1] != want {
		t.Fatalf("id %s on %s: %q, want %q", name, host, lines[1], want)
	}
}
