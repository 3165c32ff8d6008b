package scenario

import (
	"context"
	"testing"
	"time"

	"correo/src/directory"
	"correo/src/pwclient"
)

// PasswdFailover (the paper's scenario 3, deliveries): the primary
// passwdd dies; deliveries keep working through the secondary, the first
// one within the failover timeout plus a margin; restarted, the primary
// serves again and the secondary follows it again. Then the primary's
// host vanishes from the network, and the timeout alone moves clients
// over. It leaves passwdd running and the host's link up.
//
// Users: jorge, zenon, alba.
func PasswdFailover(t *testing.T, c Cluster) {
	p := c.Profile()
	prim, _ := p.PasswdServers()
	limit := p.Cluster.Passwd.Timeout.Std()*2 + 5*time.Second

	base := inStep(t, c)
	addUserWithPassword(t, c, "jorge", "jorge-pw")
	addUsers(t, c, directory.User{Name: "zenon"})
	waitReplicated(t, c, base+2)
	deliver(t, c, "jorge", "before@b.example")
	if msgs, err := popFetch(c, "jorge", "jorge-pw"); err != nil || len(msgs) != 1 {
		t.Fatalf("POP login with both passwd servers up: %d messages, %v", len(msgs), err)
	}

	// Killed, and kept down even where an init system would restart it.
	stop(t, c, prim.Name, "passwdd", true)
	start := time.Now()
	deliver(t, c, "jorge", "during-1@b.example")
	took := time.Since(start)
	t.Logf("first delivery with the primary dead took %v (failover timeout %v)", took, p.Cluster.Passwd.Timeout.Std())
	if took > limit {
		t.Errorf("delivery took %v with the primary down (limit %v)", took, limit)
	}
	deliver(t, c, "zenon", "during-2@b.example")
	// POP logins keep working: mailproxy and pop3d both ask the secondary.
	start = time.Now()
	msgs, err := popFetch(c, "jorge", "jorge-pw")
	if err != nil || len(msgs) != 2 {
		t.Fatalf("POP login with the primary dead: %d messages, %v", len(msgs), err)
	}
	t.Logf("POP session with the primary dead took %v", time.Since(start))
	host := lookup(t, c, "jorge").Storage
	if n := maildirCount(t, c, host, "jorge"); n != 2 {
		t.Errorf("jorge has %d messages, want 2", n)
	}
	// All of that with the primary really down: were it back (an init
	// system's socket activation starts a daemon on the first datagram),
	// nothing above showed a failover.
	err = withClient(t, c, func(pc *pwclient.Client) error {
		_, err := pc.Ping(context.Background(), pwclient.Primary)
		return err
	})
	if err == nil {
		t.Fatalf("passwdd on %s answers while stopped, so the deliveries above did not fail over (does Stop leave its sockets listening?)", prim.Name)
	}

	if err := c.Start(context.Background(), prim.Name, "passwdd"); err != nil {
		t.Fatal(err)
	}
	// The restarted primary takes writes again and the secondary follows.
	addUsers(t, c, directory.User{Name: "alba"})
	waitReplicated(t, c, base+3)
	deliver(t, c, "alba", "after@b.example")

	// The primary's host vanishes from the network (no ICMP answers, as
	// with a dead machine): the timeout alone moves clients over.
	// When the link is back (cleanups run last first), the secondary must
	// be in step again before the next scenario writes.
	t.Cleanup(func() { inStep(t, c) })
	unplug(t, c, prim.Name)
	start = time.Now()
	deliver(t, c, "alba", "vanished@b.example")
	took = time.Since(start)
	t.Logf("delivery with the primary's host gone took %v", took)
	if took > limit {
		t.Errorf("delivery took %v with the primary's host gone (limit %v)", took, limit)
	}
}
