package netns

import (
	"context"
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"correo/src/cluster"
	"correo/src/queue"
	"correo/src/runner"
)

// TestStorageHostDown (scenario 4): with one storage host's delivery
// daemon stopped, mail for its users is accepted and queued on the MX
// while other users are unaffected; when it is back the queued mail
// arrives, each message exactly once.
func TestStorageHostDown(t *testing.T) {
	r := bootExampleWith(t, func(p *cluster.Profile) {
		// Retry every second, so the test does not wait out the
		// production ladder (1 m, 5 m, ...).
		p.Cluster.Queue.Retry = []cluster.Duration{cluster.Duration(time.Second)}
	}, nil)
	addUserWithPassword(t, r, "ana", "ana-pw")
	addUserWithPassword(t, r, "zoe", "zoe-pw")
	down := lookup(t, r, "ana").Storage
	up := lookup(t, r, "zoe").Storage
	if down == up {
		t.Fatalf("ana and zoe share %s; the test needs two storage hosts", down)
	}
	if err := r.Stop(down, "pdeliveryd", false); err != nil {
		t.Fatal(err)
	}

	// An Internet sender talks to mx1 directly.
	const n = 5
	err := runner.InNetns(r.Netns.Name("outside"), func() error {
		c, err := smtp.Dial("10.77.0.10:25")
		if err != nil {
			return err
		}
		defer c.Quit()
		for i := 0; i < n; i++ {
			for _, u := range []string{"ana", "zoe"} {
				if err := c.Mail("sender@outside.example"); err != nil {
					return err
				}
				if err := c.Rcpt(u + "@correo.example"); err != nil {
					return fmt.Errorf("RCPT %s with %s down: %w", u, down, err)
				}
				w, err := c.Data()
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "From: sender@outside.example\r\nTo: %s@correo.example\r\nMessage-ID: <%s-%d@outside.example>\r\n\r\nbody %d\r\n", u, u, i, i)
				if err := w.Close(); err != nil {
					return fmt.Errorf("DATA for %s with %s down: %w", u, down, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitCount(t, r, up, "zoe", n)
	time.Sleep(2 * time.Second) // a couple of retries fail meanwhile
	if c := maildirCount(t, r, down, "ana"); c != 0 {
		t.Fatalf("ana got %d messages with her storage host down", c)
	}

	if err := r.Start(context.Background(), down, "pdeliveryd"); err != nil {
		t.Fatal(err)
	}
	waitCount(t, r, down, "ana", n)
	waitQueuesEmpty(t, r)
	if c := maildirCount(t, r, down, "ana"); c != n {
		t.Fatalf("ana has %d messages after recovery, want exactly %d", c, n)
	}
	ids := map[string]int{}
	for m := range storedMessages(t, r, "ana") {
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(strings.ToLower(line), "message-id:") {
				ids[strings.TrimSpace(line[len("message-id:"):])]++
			}
		}
	}
	for i := 0; i < n; i++ {
		if id := fmt.Sprintf("<ana-%d@outside.example>", i); ids[id] != 1 {
			t.Errorf("%s delivered %d times", id, ids[id])
		}
	}
}

func waitCount(t *testing.T, r *runner.Runner, host, user string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for maildirCount(t, r, host, user) < want {
		if time.Now().After(deadline) {
			h, _ := r.Profile.Host(host)
			md, _ := r.Profile.LayoutScheme().MaildirPath(h.Storage.DataDir, user)
			entries, _ := os.ReadDir(filepath.Join(md, "new"))
			t.Fatalf("%s on %s has %d messages, want %d", user, host, len(entries), want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitQueuesEmpty waits until no smtpd of the cluster holds a message:
// everything accepted is delivered or bounced and nothing is attempted
// again, so a count taken now is final.
func waitQueuesEmpty(t *testing.T, r *runner.Runner) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, h := range r.Profile.Hosts {
		if !h.HasRole(cluster.RoleMX) && !h.HasRole(cluster.RoleRelay) {
			continue
		}
		dir := filepath.Join(r.StateDir, h.Name, "smtpd", "queue")
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
