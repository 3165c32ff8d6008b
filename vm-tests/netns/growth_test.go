package netns

import (
	"os"
	"path/filepath"
	"testing"

	"correo/src/cluster"
	"correo/src/directory"
)

// TestGrowthWithoutMigration (scenario 7): a storage host is added to a
// copy of the profile and the cluster boots again on the same state: new
// users are placed on the new host, existing users stay where they were
// and keep receiving mail. Nobody moves.
func TestGrowthWithoutMigration(t *testing.T) {
	r := bootExample(t)
	addUsers(t, r, directory.User{Name: "juan"}, directory.User{Name: "zoe"}, directory.User{Name: "mara"})
	before := map[string]string{}
	for _, n := range []string{"juan", "zoe", "mara"} {
		before[n] = lookup(t, r, n).Storage
		deliver(t, r, n, n+"-1@b.example")
	}
	state, bin := r.StateDir, r.BinDir
	r.Down()

	// The operator adds store4 to the profile (a copy here).
	src, err := os.ReadFile("../../hosts/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	grown := string(src) + "\n[[host]]\nname = \"store4\"\naddress = \"10.77.0.34\"\nroles = [\"storage\"]\n[host.storage]\ndata_dir = \"/var/lib/correo/mail\"\nweight = 1\n"
	path := filepath.Join(t.TempDir(), "grown.toml")
	os.WriteFile(path, []byte(grown), 0o644)
	p, err := cluster.Load(path, cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	r2, logs := boot(t, p, state, bin)
	t.Cleanup(func() {
		r2.Down()
		if t.Failed() {
			t.Logf("runner log:\n%s", logs)
		}
	})

	for n, host := range before {
		if got := lookup(t, r2, n).Storage; got != host {
			t.Errorf("%s moved from %s to %s when store4 was added", n, host, got)
		}
	}
	// With letters placement store4 takes the end of the alphabet.
	addUsers(t, r2, directory.User{Name: "zara"}, directory.User{Name: "yago"})
	for _, n := range []string{"zara", "yago"} {
		if got := lookup(t, r2, n).Storage; got != "store4" {
			t.Errorf("new user %s placed on %s, want the new host store4", n, got)
		}
	}
	for _, n := range []string{"juan", "zoe", "mara", "zara"} {
		deliver(t, r2, n, n+"-2@b.example")
	}
	for n, host := range before {
		if c := maildirCount(t, r2, host, n); c != 2 {
			t.Errorf("%s on %s has %d messages, want 2 (one before, one after the growth)", n, host, c)
		}
	}
	if c := maildirCount(t, r2, "store4", "zara"); c != 1 {
		t.Errorf("zara on store4 has %d messages, want 1", c)
	}
}
