package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestExactlyOnceUnderKills: several SMTP clients send without pause
// through smtpd (mx) to users on pdeliveryd while either daemon is
// killed with SIGKILL at random moments, 40 times. Every message smtpd
// acknowledged must end in each of its recipients' mailboxes exactly
// once: not lost (the queue) and not twice (the delivery keys; without
// them a kill between pdeliveryd's fsync and its 250, or between the 250
// and the queue's record of it, stores a second copy).
func TestExactlyOnceUnderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("kills daemons 40 times under load")
	}
	e := setup(t, "[cluster.queue]\nretry = [\"1s\"]\n")
	const (
		clients = 4
		kills   = 40
	)
	users := []string{"ana", "bob"}

	var (
		mu    sync.Mutex
		acked = map[string][]string{} // Message-ID → recipients, for every 250 after DATA
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; {
				select {
				case <-stop:
					return
				default:
				}
				// Each session sends until its connection fails (a
				// kill); then the next one tries again shortly.
				n, err := sendLoop(e.addr(), stop, func() (string, []string) {
					i++
					id := fmt.Sprintf("c%d-%d", c, i)
					rcpts := []string{users[i%2] + "@correo.test"}
					if i%3 == 0 {
						rcpts = append(rcpts, users[(i+1)%2]+"@correo.test")
					}
					return id, rcpts
				}, func(id string, rcpts []string) {
					mu.Lock()
					acked[id] = rcpts
					mu.Unlock()
				})
				_, _ = n, err
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var smtpdKills, pdelivKills int
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(50+rng.IntN(400)) * time.Millisecond)
		if rng.IntN(2) == 0 {
			e.smtpd.Signal(syscall.SIGKILL)
			<-e.smtpd.Done()
			e.smtpd = e.c.StartDaemon(t, "smtpd", "mx1", true)
			smtpdKills++
		} else {
			e.pdeliv.Signal(syscall.SIGKILL)
			<-e.pdeliv.Done()
			e.pdeliv = e.c.StartDaemon(t, "pdeliveryd", "mx1", true)
			pdelivKills++
		}
	}
	// Some load after the last kill, then let the queue drain.
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	waitDrained(t, e, 90*time.Second)

	stored := map[string]map[string]int{} // user → Message-ID → copies
	total := 0
	idRe := regexp.MustCompile(`(?m)^Message-ID: <([^@>]+)@example\.org>`)
	for _, u := range users {
		stored[u] = map[string]int{}
		for _, sub := range []string{"new", "cur"} {
			dir := filepath.Join(e.c.Maildir("mx1", u), sub)
			ents, _ := os.ReadDir(dir)
			for _, x := range ents {
				b, err := os.ReadFile(filepath.Join(dir, x.Name()))
				if err != nil {
					t.Fatal(err)
				}
				m := idRe.FindSubmatch(b)
				if m == nil {
					t.Errorf("%s/%s has no Message-ID of the test:\n%.300s", dir, x.Name(), b)
					continue
				}
				stored[u][string(m[1])]++
				total++
			}
		}
	}
	var lost, dups, ackedRcpts int
	for id, rcpts := range acked {
		for _, r := range rcpts {
			ackedRcpts++
			u := r[:len(r)-len("@correo.test")]
			if stored[u][id] == 0 {
				lost++
				t.Errorf("acknowledged message %s for %s is not in the mailbox", id, u)
			}
		}
	}
	for u, ids := range stored {
		for id, n := range ids {
			if n > 1 {
				dups += n - 1
				t.Errorf("%s holds %d copies of %s", u, n, id)
			}
		}
	}
	t.Logf("kills %d (smtpd %d, pdeliveryd %d), acknowledged %d messages (%d deliveries), stored %d, lost %d, duplicates %d",
		smtpdKills+pdelivKills, smtpdKills, pdelivKills, len(acked), ackedRcpts, total, lost, dups)
	if len(acked) < kills {
		t.Errorf("only %d messages acknowledged during %d kills: the load did not run", len(acked), kills)
	}
}

// sendLoop runs one SMTP session that sends next() messages until stop
// or an error; ack is called for each 250 after DATA.
func sendLoop(addr string, stop <-chan struct{}, next func() (string, []string), ack func(string, []string)) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	tp := textproto.NewConn(conn)
	cmd := func(want int, format string, a ...any) error {
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		if format != "" {
			if err := tp.PrintfLine(format, a...); err != nil {
				return err
			}
		}
		_, _, err := tp.ReadResponse(want)
		return err
	}
	if err := cmd(220, ""); err != nil {
		return 0, err
	}
	if err := cmd(250, "EHLO load.example.org"); err != nil {
		return 0, err
	}
	sent := 0
	for {
		select {
		case <-stop:
			cmd(221, "QUIT")
			return sent, nil
		default:
		}
		id, rcpts := next()
		if err := cmd(250, "MAIL FROM:<load@example.org>"); err != nil {
			return sent, err
		}
		for _, r := range rcpts {
			if err := cmd(250, "RCPT TO:<%s>", r); err != nil {
				return sent, err
			}
		}
		if err := cmd(354, "DATA"); err != nil {
			return sent, err
		}
		w := tp.DotWriter()
		w.Write([]byte(message(id)))
		if err := w.Close(); err != nil {
			return sent, err
		}
		if err := cmd(250, ""); err != nil {
			return sent, err
		}
		ack(id, rcpts)
		sent++
	}
}

// waitDrained waits, up to d, until smtpd's queue is empty.
func waitDrained(t *testing.T, e *env, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for e.queued() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("smtpd's queue still holds %d messages after %v\nsmtpd log:\n%s", e.queued(), d, e.smtpd.Log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
