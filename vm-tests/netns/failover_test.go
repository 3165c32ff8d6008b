package netns

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/pwclient"
	"correo/src/runner"
)

// TestPasswdFailover (scenario 3, deliveries): the primary passwdd dies;
// deliveries keep working through the secondary, the first one within the
// failover timeout plus a margin; restarted, the primary serves again and
// the secondary follows it again.
func TestPasswdFailover(t *testing.T) {
	r := bootExample(t)
	addUserWithPassword(t, r, "juan", "juan-pw")
	addUsers(t, r, directory.User{Name: "zoe"})
	waitReplicated(t, r, 2)
	deliver(t, r, "juan", "before@b.example")
	if msgs, err := popFetch(t, r, "juan", "juan-pw"); err != nil || len(msgs) != 1 {
		t.Fatalf("POP login with both passwd servers up: %d messages, %v", len(msgs), err)
	}

	if err := r.Stop("pw1", "passwdd", true); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deliver(t, r, "juan", "during-1@b.example")
	took := time.Since(start)
	t.Logf("first delivery with the primary dead took %v (failover timeout %v)", took, r.Profile.Cluster.Passwd.Timeout.Std())
	if limit := r.Profile.Cluster.Passwd.Timeout.Std()*2 + 5*time.Second; took > limit {
		t.Errorf("delivery took %v with the primary down (limit %v)", took, limit)
	}
	deliver(t, r, "zoe", "during-2@b.example")
	// POP logins keep working: popproxy and pop3d both ask the secondary.
	start = time.Now()
	msgs, err := popFetch(t, r, "juan", "juan-pw")
	if err != nil || len(msgs) != 2 {
		t.Fatalf("POP login with the primary dead: %d messages, %v", len(msgs), err)
	}
	t.Logf("POP session with the primary dead took %v", time.Since(start))
	host := lookup(t, r, "juan").Storage
	if c := maildirCount(t, r, host, "juan"); c != 2 {
		t.Errorf("juan has %d messages, want 2", c)
	}

	if err := r.Start(context.Background(), "pw1", "passwdd"); err != nil {
		t.Fatal(err)
	}
	// The restarted primary takes writes again and the secondary follows.
	addUsers(t, r, directory.User{Name: "ana"})
	waitReplicated(t, r, 3)
	deliver(t, r, "ana", "after@b.example")

	// The primary's host vanishes from the network (no ICMP answers, as
	// with a dead machine): the timeout alone moves clients over.
	if err := exec.Command("ip", "-n", r.Netns.Name("pw1"), "link", "set", "eth0", "down").Run(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	deliver(t, r, "ana", "vanished@b.example")
	took = time.Since(start)
	t.Logf("delivery with the primary's host gone took %v", took)
	if limit := r.Profile.Cluster.Passwd.Timeout.Std()*2 + 5*time.Second; took > limit {
		t.Errorf("delivery took %v with the primary's host gone (limit %v)", took, limit)
	}
	exec.Command("ip", "-n", r.Netns.Name("pw1"), "link", "set", "eth0", "up").Run()
}

// waitReplicated waits until both passwd servers hold n users at the same
// generation.
func waitReplicated(t *testing.T, r *runner.Runner, n uint64) {
	t.Helper()
	ring, _ := keyfile.Load(r.Profile.Cluster.KeyFile)
	err := runner.InNetns(r.Netns.Name("mx1"), func() error {
		pc, err := pwclient.FromProfile(r.Profile, ring, nil)
		if err != nil {
			return err
		}
		defer pc.Close()
		deadline := time.Now().Add(20 * time.Second)
		for {
			pi, err1 := pc.Ping(context.Background(), pwclient.Primary)
			si, err2 := pc.Ping(context.Background(), pwclient.Secondary)
			if err1 == nil && err2 == nil && pi.Users == n && si.Users == n && pi.Epoch == si.Epoch && pi.Seq == si.Seq {
				return nil
			}
			if time.Now().After(deadline) {
				t.Fatalf("passwd servers not in step: primary %+v %v, secondary %+v %v", pi, err1, si, err2)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
