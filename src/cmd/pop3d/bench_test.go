package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"correo/internal/benchfig"
	"correo/internal/clustertest"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/mailbox"
)

// BenchmarkPOP3 measures, on the paper's 2 000 × 11 KB mailbox, the time
// of login + STAT + LIST (median of 20 sessions), logins per second on a
// small mailbox with 8 concurrent clients, and RETR throughput, against
// pop3d directly, through mailproxy, and against a private Dovecot POP3
// (stock, and its high-performance mode) serving the same Maildirs, all
// in one run (make pop3-bench). Every server checks the same
// SHA-512-crypt hash. The client disables Nagle (Go's default). It prints
// a table and asserts nothing.
func BenchmarkPOP3(b *testing.B) {
	const (
		password = "benchpw"
		hash     = "$6$saltsalt$dM/CtIoV3c1qmNuOWB4n7dKEkbOLye48ygRmj2kwQpO9x9IIWuBkU4RJNTovcWUBtqp0AmbZ2WtYb.n39znnR."
		workers  = 8
	)
	c := clustertest.NewCluster(b, clustertest.Spec{LogLevel: "info", TrustedNetwork: true, Hosts: []clustertest.HostSpec{
		{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}},
		{Name: "px", Address: "127.0.0.30", Roles: []string{"mailproxy"}},
	}})
	c.StartPasswdd(b, "st1")
	users := []directory.User{{Name: "big", Storage: "st1", Hash: hash}}
	for i := 0; i < workers; i++ {
		users = append(users, directory.User{Name: fmt.Sprintf("small%d", i), Storage: "st1", Hash: hash})
	}
	c.AddUsers(b, users...)
	msg := func(i int) string {
		var m strings.Builder
		fmt.Fprintf(&m, "From: load@example.org\nSubject: %d\n\n", i)
		for m.Len() < 11*1024 {
			m.WriteString("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\n")
		}
		return m.String()
	}
	var dusers []clustertest.DovecotPOP3User
	for _, u := range users {
		md := mailbox.New(c.Maildir("st1", u.Name))
		n := 10
		if u.Name == "big" {
			n = 2000
		}
		for i := 0; i < n; i++ {
			if _, err := md.Deliver(strings.NewReader(msg(i))); err != nil {
				b.Fatal(err)
			}
		}
		dusers = append(dusers, clustertest.DovecotPOP3User{Name: u.Name, Hash: "{SHA512-CRYPT}" + hash, Maildir: md.Path})
	}
	c.StartDaemon(b, "pop3d", "st1", false)
	c.StartDaemon(b, "mailproxy", "px", false)
	stock := clustertest.StartDovecotPOP3(b, clustertest.DovecotPOP3Config{Users: dusers})
	hp := clustertest.StartDovecotPOP3(b, clustertest.DovecotPOP3Config{Users: dusers, LoginProcesses: 4})
	clustertest.ChownTree(b, c.DataDir("st1"), stock.UID, stock.GID)

	direct, _ := c.Profile.Listen("st1", cluster.SvcPOP3Backend)
	proxy, _ := c.Profile.Listen("px", cluster.SvcPOP3)
	targets := []struct{ name, addr string }{
		{"pop3d", direct.String()},
		{"mailproxy → pop3d", proxy.String()},
		{"dovecot stock", stock.Addr()},
		{"dovecot high-performance", hp.Addr()},
	}
	type row struct {
		name      string
		listMS    float64
		loginsSec float64
		retrMBs   float64
	}
	var rows []row
	for _, tg := range targets {
		// Warm up: the first login moves new/ to cur/ (and Dovecot builds
		// its index); that is paid once per mailbox, not per session.
		for _, u := range users {
			if err := session(tg.addr, u.Name, password, false, 0); err != nil {
				b.Fatalf("%s: %v", tg.name, err)
			}
		}
		var times []float64
		for i := 0; i < 20; i++ {
			start := time.Now()
			if err := session(tg.addr, "big", password, true, 0); err != nil {
				b.Fatalf("%s: %v", tg.name, err)
			}
			times = append(times, float64(time.Since(start).Microseconds())/1000)
		}
		sort.Float64s(times)
		var logins atomic.Int64
		var failed atomic.Value
		var wg sync.WaitGroup
		deadline := time.Now().Add(2 * time.Second)
		start := time.Now()
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					if err := session(tg.addr, fmt.Sprintf("small%d", w), password, false, 0); err != nil {
						failed.CompareAndSwap(nil, err)
						return
					}
					logins.Add(1)
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		if err := failed.Load(); err != nil {
			b.Fatalf("%s: %v", tg.name, err)
		}
		start = time.Now()
		const retr = 1000
		if err := session(tg.addr, "big", password, false, retr); err != nil {
			b.Fatalf("%s: %v", tg.name, err)
		}
		mb := float64(retr*(len(msg(0))+strings.Count(msg(0), "\n"))) / 1e6
		rows = append(rows, row{tg.name, (times[9] + times[10]) / 2, float64(logins.Load()) / el.Seconds(), mb / time.Since(start).Seconds()})
	}
	fmt.Fprintf(os.Stdout, "\nPOP3 on a 2 000 × 11 KB mailbox (%d CPUs)\n", numCPU())
	fmt.Fprintf(os.Stdout, "%-26s %22s %26s %16s\n", "target", "login+STAT+LIST (ms)", "logins/s (8 clients, 10 msgs)", "RETR (MB/s)")
	for _, r := range rows {
		fmt.Fprintf(os.Stdout, "%-26s %22.2f %26.0f %16.1f\n", r.name, r.listMS, r.loginsSec, r.retrMBs)
	}
	if last := rows[len(rows)-1]; len(rows) >= 2 && last.name == "dovecot high-performance" {
		for _, f := range []benchfig.Figure{
			{Figure: "POP3 login+STAT+LIST of a 2 000-message mailbox, pop3d direct", Unit: "ms", Correo: rows[0].listMS, Baseline: last.listMS},
			{Figure: "POP3 logins/s, 8 clients, 10-message mailboxes, pop3d direct", Unit: "logins/s", Correo: rows[0].loginsSec, Baseline: last.loginsSec},
			{Figure: "POP3 RETR throughput, pop3d direct", Unit: "MB/s", Correo: rows[0].retrMBs, Baseline: last.retrMBs},
		} {
			f.Bench, f.BaselineName = "pop3-bench", "Dovecot POP3, high-performance"
			benchfig.Record(f)
		}
	}
	if len(rows) >= 2 {
		fmt.Fprintf(os.Stdout, "mailproxy adds %.2f ms per login+STAT+LIST session and %.1f %% on RETR throughput\n",
			rows[1].listMS-rows[0].listMS, 100*(1-rows[1].retrMBs/rows[0].retrMBs))
	}
	for i := 0; i < b.N; i++ {
	}
}

// session logs in with USER/PASS, sends STAT, LIST (read whole) when list
// is set, RETRs the first retr messages, and QUITs.
func session(addr, user, pw string, list bool, retr int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReaderSize(c, 64<<10)
	expect := func() error {
		l, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(l, "+OK") {
			return fmt.Errorf("%s: %q", addr, strings.TrimSpace(l))
		}
		return nil
	}
	body := func() error {
		for {
			l, err := br.ReadSlice('\n')
			if err != nil && err != bufio.ErrBufferFull {
				return err
			}
			if len(l) == 3 && l[0] == '.' {
				return nil
			}
		}
	}
	if err := expect(); err != nil {
		return err
	}
	for _, cmd := range []string{"USER " + user, "PASS " + pw, "STAT"} {
		fmt.Fprintf(c, "%s\r\n", cmd)
		if err := expect(); err != nil {
			return err
		}
	}
	if list {
		fmt.Fprintf(c, "LIST\r\n")
		if err := expect(); err != nil {
			return err
		}
		if err := body(); err != nil {
			return err
		}
	}
	// RETRs pipelined in batches (every server here announces
	// PIPELINING): throughput, not round trips, is measured.
	for i := 1; i <= retr; i += 50 {
		var batch strings.Builder
		n := min(50, retr-i+1)
		for k := 0; k < n; k++ {
			fmt.Fprintf(&batch, "RETR %d\r\n", i+k)
		}
		if _, err := c.Write([]byte(batch.String())); err != nil {
			return err
		}
		for k := 0; k < n; k++ {
			if err := expect(); err != nil {
				return err
			}
			if err := body(); err != nil {
				return err
			}
		}
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return expect()
}
