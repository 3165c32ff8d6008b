package scenario

import (
	"testing"

	"correo/src/directory"
)

// Grow adds the hosts described by hostTOML ([[host]] tables, as an
// operator appends them to the profile) to a running cluster, on the same
// state, and returns the grown cluster. The cluster it was given must not
// be used after.
type Grow func(t *testing.T, hostTOML string) Cluster

// store4 is the storage host GrowthWithoutMigration adds.
const store4 = `
[[host]]
name = "store4"
address = "10.77.0.34"
roles = ["storage"]
[host.storage]
data_dir = "/var/lib/correo/mail"
weight = 1
`

// GrowthWithoutMigration (the paper's scenario 7): a storage host is
// added to the profile and the cluster grows on the same state: new users
// are placed on the new host, existing users stay where they were and
// keep receiving mail. Nobody moves.
//
// It changes the cluster for good, so it does not belong in Shared: run it
// last or on a cluster of its own. Users: josefa, zoilo, mirta, then
// zaira and yamila.
func GrowthWithoutMigration(t *testing.T, c Cluster, grow Grow) {
	before := map[string]string{}
	for _, n := range []string{"josefa", "zoilo", "mirta"} {
		addUsers(t, c, directory.User{Name: n})
		before[n] = lookup(t, c, n).Storage
		deliver(t, c, n, n+"-1@b.example")
	}

	c = grow(t, store4)
	for n, host := range before {
		if got := lookup(t, c, n).Storage; got != host {
			t.Errorf("%s moved from %s to %s when store4 was added", n, host, got)
		}
	}
	// With letters placement store4 takes the end of the alphabet.
	addUsers(t, c, directory.User{Name: "zaira"}, directory.User{Name: "yamila"})
	for _, n := range []string{"zaira", "yamila"} {
		if got := lookup(t, c, n).Storage; got != "store4" {
			t.Errorf("new user %s placed on %s, want the new host store4", n, got)
		}
	}
	for _, n := range []string{"josefa", "zoilo", "mirta", "zaira"} {
		deliver(t, c, n, n+"-2@b.example")
	}
	for n, host := range before {
		if got := maildirCount(t, c, host, n); got != 2 {
			t.Errorf("%s on %s has %d messages, want 2 (one before, one after the growth)", n, host, got)
		}
	}
	if got := maildirCount(t, c, "store4", "zaira"); got != 1 {
		t.Errorf("zaira on store4 has %d messages, want 1", got)
	}
}
