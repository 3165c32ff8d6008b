package scenario

import (
	"fmt"
	"strings"
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
// Then (issue 18) `correoctl storage rebalance` moves mailboxes onto
// store4, and every user, moved or not, still receives and reads all of
// their mail.
//
// It changes the cluster for good, so it does not belong in Shared: run it
// last or on a cluster of its own. Users: andres, josefa, zoilo, mirta,
// then zaira and yamila. Needs python3 on this machine (Outside's programs).
func GrowthWithoutMigration(t *testing.T, c Cluster, grow Grow) {
	before := map[string]string{}
	for _, n := range []string{"andres", "josefa", "zoilo", "mirta"} {
		addUser(t, c, directory.User{Name: n}, n+"-pw")
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
	for _, n := range []string{"andres", "josefa", "zoilo", "mirta", "zaira"} {
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
	rebalanceOntoStore4(t, c, map[string]int{"andres": 2, "josefa": 2, "zoilo": 2, "mirta": 2, "zaira": 1})
}

// rebalanceOntoStore4: the older hosts get fuller (big messages), then a
// rebalance moves mailboxes onto store4, the least full; afterwards every
// user receives a new message where passwd now says and reads all of
// them over POP3 through the proxy pool.
func rebalanceOntoStore4(t *testing.T, c Cluster, have map[string]int) {
	t.Helper()
	big := strings.Repeat("una carta larga, de las de antes, que ocupa lugar\n", 2000)
	for _, n := range []string{"andres", "josefa", "zoilo", "mirta"} {
		for i := 0; i < 3; i++ {
			deliverBody(t, c, n, fmt.Sprintf("%s-big-%d@b.example", n, i), fmt.Sprintf("larga %d", i), big)
			have[n]++
		}
	}
	plan, err := run(c, operator, nil, "correoctl", "storage", "rebalance", "-profile", c.ProfilePath(), "-dry-run")
	if err != nil {
		t.Fatalf("correoctl storage rebalance -dry-run: %v\n%s", err, plan)
	}
	if !strings.Contains(string(plan), "store4") {
		t.Fatalf("the rebalance plan moves nothing onto store4:\n%s", plan)
	}
	for _, h := range []string{"store1", "store2", "store3", "store4"} {
		for n := range have {
			if lookup(t, c, n).Storage != h {
				continue
			}
			if got := maildirCount(t, c, h, n); got != have[n] {
				t.Fatalf("a dry run changed %s's mailbox on %s: %d messages, want %d", n, h, got, have[n])
			}
		}
	}
	out, err := run(c, operator, nil, "correoctl", "storage", "rebalance", "-profile", c.ProfilePath(), "-q")
	if err != nil {
		t.Fatalf("correoctl storage rebalance: %v\n%s", err, out)
	}
	t.Logf("rebalance:\n%s", out)
	moved := 0
	for n, count := range have {
		if !strings.Contains(string(plan), n) {
			continue
		}
		if got := lookup(t, c, n).Storage; got == "store4" {
			moved++
		}
		deliver(t, c, n, n+"-after@b.example")
		host := lookup(t, c, n).Storage
		if got := maildirCount(t, c, host, n); got != count+1 {
			t.Errorf("%s on %s has %d messages after the rebalance and one more delivery, want %d", n, host, got, count+1)
		}
		msgs, err := popFetch(c, n, n+"-pw")
		if err != nil || len(msgs) != count+1 {
			t.Errorf("%s over POP3 after the rebalance: %d messages, %v; want %d", n, len(msgs), err, count+1)
		}
	}
	if moved == 0 {
		t.Errorf("the rebalance moved nobody onto store4:\n%s", out)
	}
}
