package scenario

import (
	"context"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"correo/src/cluster"
)

// StorageHostDown (the paper's scenario 4): with one storage host's
// delivery daemon stopped, mail for its users is accepted and queued on
// the MX while other users are unaffected; when it is back the queued
// mail arrives, each message exactly once. Needs Adjust's short retry
// ladder. It leaves pdeliveryd running.
//
// Users: amalia, zaida (letters placement: on two storage hosts).
func StorageHostDown(t *testing.T, c Cluster) {
	addUserWithPassword(t, c, "amalia", "amalia-pw")
	addUserWithPassword(t, c, "zaida", "zaida-pw")
	down := lookup(t, c, "amalia").Storage
	up := lookup(t, c, "zaida").Storage
	if down == up {
		t.Fatalf("amalia and zaida share %s; the scenario needs two storage hosts", down)
	}
	stop(t, c, down, "pdeliveryd", false)
	// Down means no LMTP at all: a socket an init system kept listening
	// would start the daemon again on the MX's first attempt.
	lmtp := addr(t, c, down, cluster.SvcLMTP)
	if err := c.In(operator, func() error {
		conn, err := net.DialTimeout("tcp", lmtp, 2*time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	}); err == nil {
		t.Fatalf("%s still takes LMTP connections on %s with pdeliveryd stopped (does Stop leave its sockets listening?)", down, lmtp)
	}

	// An Internet sender talks to mx1 directly.
	const n = 5
	mx1 := addr(t, c, "mx1", cluster.SvcSMTP)
	err := c.In(Outside, func() error {
		sc, err := smtp.Dial(mx1)
		if err != nil {
			return err
		}
		defer sc.Quit()
		for i := 0; i < n; i++ {
			for _, u := range []string{"amalia", "zaida"} {
				if err := sc.Mail("sender@outside.example"); err != nil {
					return err
				}
				if err := sc.Rcpt(u + "@correo.example"); err != nil {
					return fmt.Errorf("RCPT %s with %s down: %w", u, down, err)
				}
				w, err := sc.Data()
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
	waitCount(t, c, up, "zaida", n)
	time.Sleep(2 * time.Second) // a couple of retries fail meanwhile
	if got := maildirCount(t, c, down, "amalia"); got != 0 {
		t.Fatalf("amalia got %d messages with her storage host down", got)
	}

	if err := c.Start(context.Background(), down, "pdeliveryd"); err != nil {
		t.Fatal(err)
	}
	waitCount(t, c, down, "amalia", n)
	waitQueuesEmpty(t, c)
	if got := maildirCount(t, c, down, "amalia"); got != n {
		t.Fatalf("amalia has %d messages after recovery, want exactly %d", got, n)
	}
	ids := map[string]int{}
	for m := range storedMessages(t, c, "amalia") {
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(strings.ToLower(line), "message-id:") {
				ids[strings.TrimSpace(line[len("message-id:"):])]++
			}
		}
	}
	for i := 0; i < n; i++ {
		if id := fmt.Sprintf("<amalia-%d@outside.example>", i); ids[id] != 1 {
			t.Errorf("%s delivered %d times", id, ids[id])
		}
	}
}
