package scenario

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"correo/src/cluster"
	"correo/src/directory"
)

// ExampleClusterBoots checks what the paper's design rests on: the DNS
// pools as the Internet sees them, the password service replicated
// between two hosts, delivery from an MX host to the user's storage host,
// and every host logging to the loghost.
//
// Users: juan, zoe.
func ExampleClusterBoots(t *testing.T, c Cluster) {
	p := c.Profile()
	mark := logMark(t, c)

	// From outside: the MX records and the round-robin pools.
	var mx []string
	var pop []string
	server := dnsServer(t, c)
	err := c.In(Outside, func() error {
		dc := &dns.Client{Timeout: 2 * time.Second}
		ask := func(name string, qt uint16) []dns.RR {
			m := new(dns.Msg)
			m.SetQuestion(name, qt)
			in, _, err := dc.Exchange(m, server)
			if err != nil {
				t.Fatalf("DNS %s from outside: %v", name, err)
			}
			return in.Answer
		}
		for _, rr := range ask("correo.example.", dns.TypeMX) {
			mx = append(mx, rr.(*dns.MX).Mx)
		}
		for _, rr := range ask("pop.correo.example.", dns.TypeA) {
			pop = append(pop, rr.(*dns.A).A.String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(mx)
	sort.Strings(pop)
	if strings.Join(mx, ",") != "mx1.correo.example.,mx2.correo.example." || strings.Join(pop, ",") != "10.77.0.10,10.77.0.11" {
		t.Fatalf("outside sees MX %v and pop %v", mx, pop)
	}

	// An operator on mx1 adds users on the primary (pw1); the secondary
	// must hold them too: pw2 follows pw1 across hosts.
	base := inStep(t, c)
	users := []string{"juan", "zoe"}
	for _, n := range users {
		addUsers(t, c, directory.User{Name: n})
	}
	waitReplicated(t, c, base+uint64(len(users)))

	// mx1 delivers with pdelivery, run as a process on mx1: passwdd names
	// each user's storage host, LMTP carries the message across hosts. (A
	// process, not In: src/delivery dials from several goroutines.)
	for _, user := range users {
		deliverSubject(t, c, user, "ns-"+user+"@b.example", "across namespaces")
	}
	for _, user := range users {
		stored := lookup(t, c, user).Storage
		h, err := p.Host(stored)
		if err != nil || !h.HasRole(cluster.RoleStorage) {
			t.Fatalf("%s has storage host %q: %v", user, stored, err)
		}
		// One message, in new/: delivered, not yet seen by a reader.
		if files := maildirFiles(t, c, stored, user); len(files) != 1 || filepath.Base(filepath.Dir(files[0])) != "new" {
			t.Errorf("%s: %v in %s on %s, want one message in new", user, files, maildir(t, c, stored, user), stored)
		}
	}

	// Every daemon logs to the central loghost, one file per host, and
	// these deliveries are in it: pdeliveryd logs one "delivered" line per
	// recipient, with its host.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var missing []string
		for _, h := range []string{"pw1", "pw2", "store1", "store2", "store3", "ns1"} {
			if _, err := c.CentralLog(h); err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("the loghost's file for %s: %v", h, err)
				}
				missing = append(missing, h)
			}
		}
		since := logSince(c, mark)
		if len(missing) == 0 && bytes.Count(since, []byte(`pdeliveryd`)) > 0 && bytes.Count(since, []byte(`msg="delivered"`)) >= len(users) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the loghost has no file for %v, or not the deliveries; all.log since the scenario began:\n%s", missing, since)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
