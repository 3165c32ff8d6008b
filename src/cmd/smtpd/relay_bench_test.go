package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/dkimkeys"
	"correo/src/queue"
)

// BenchmarkSMTPRelay measures the relay role's outgoing path with 4 KB
// messages and 20 concurrent submission sessions (STARTTLS, AUTH PLAIN,
// one user each, every session sending its share on one connection), in
// one run next to the ceiling:
//
//	sink    smtp-source → smtp-sink directly (20 sessions, no TLS)
//	relay   submission → smtpd queue (fsync) → remote → smtp-sink
//	relay, DKIM-signed   the same with the cluster's Ed25519 and RSA keys
//
// accepted/s counts until the last 250 from smtpd; delivered/s until the
// queue is empty (every message handed to smtp-sink). The outside MX is
// found through a DNS server in the test; remote delivery runs at most 5
// transactions at once to it (the per-destination limit). make
// smtp-bench runs it with BenchmarkSMTP; CORREO_BENCH_MESSAGES and
// CORREO_BENCH_DIR as there.
func BenchmarkSMTPRelay(b *testing.B) {
	testutil.NeedRoot(b)
	source := testutil.NeedCommand(b, "smtp-source")
	sink := testutil.NeedCommand(b, "smtp-sink")
	total := 2000
	if v, err := strconv.Atoi(os.Getenv("CORREO_BENCH_MESSAGES")); err == nil && v > 0 {
		total = v
	}
	const sessions = 20
	dir := clustertest.BenchDir(b, "relaybench-")

	port := clustertest.FreePort(b, "127.0.0.1", "127.0.0.2")
	sinkAddr := fmt.Sprintf("127.0.0.2:%d", port)
	clustertest.Start(b, "smtp-sink", []string{sink, "-u", "postfix", sinkAddr, "1024"}, nil)
	clustertest.WaitTCP(b, sinkAddr, 10*time.Second)
	var rows []string
	d := drive(b, source, sinkAddr, 4, sessions/4, total, func() int { return total })
	rows = append(rows, row("smtp-sink (smtp-source)", total, d))

	relay := func(name string, dkim bool) [2]time.Duration {
		dnsAddr := startTestDNS(b, "sink.example. 60 IN MX 10 mx.sink.example.", "mx.sink.example. 60 IN A 127.0.0.2")
		ports := fmt.Sprintf("relay = %d\nsubmission = %d\nsubmissions = %d\n",
			clustertest.FreePort(b), clustertest.FreePort(b), clustertest.FreePort(b))
		if dkim {
			// The cluster's keys, as `correoctl dkim new` makes them.
			f := &dkimkeys.File{}
			recs, err := dkimkeys.New(f, filepath.Join(dir, "dkim"), "correo.test", time.Now(), -1)
			if err != nil {
				b.Fatal(err)
			}
			f.Keys = recs
			if err := f.Save(filepath.Join(dir, "dkim.toml")); err != nil {
				b.Fatal(err)
			}
			ports += fmt.Sprintf("[cluster.mail_auth]\ndkim_records = %q\ndkim_key_dir = %q\n", filepath.Join(dir, "dkim.toml"), filepath.Join(dir, "dkim"))
		}
		// 20 logins at once are 20 bcrypt checks queued in passwdd (50-100 ms
		// each on two cores): the default 1 s passwd timeout of the test
		// clusters would turn the last ones into 454.
		c := clustertest.NewCluster(b, clustertest.Spec{LogLevel: "info", PasswdTimeout: "5s", ClusterTOML: ports, Hosts: []clustertest.HostSpec{
			{Name: "r1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "mx", "relay", "storage"}, TLS: true,
				DataDir: filepath.Join(dir, name+"-mail"), TOML: "[host.smtpd]\nmax_messages_per_hour = 1000000\n"},
		}})
		c.StartDaemon(b, "passwdd", "r1", false)
		hash, err := directory.HashPassword("secret", directory.DefaultBcryptCost) // production cost: what a relay meets
		if err != nil {
			b.Fatal(err)
		}
		var us []directory.User
		for i := range sessions {
			us = append(us, directory.User{Name: fmt.Sprintf("u%d", i), Storage: "r1", Hash: hash})
		}
		c.AddUsers(b, us...)
		c.StartDaemon(b, "pdeliveryd", "r1", false)
		bin := clustertest.Build(b, "smtpd", false)
		state := filepath.Join(dir, name+"-smtpd")
		p := clustertest.StartNotify(b, "smtpd", []string{bin, "-profile", c.ProfilePath, "-host", "r1", "-state", state,
			"-resolvers", dnsAddr, "-remote-port", strconv.Itoa(port)}, nil)
		sub, _ := c.Profile.Listen("r1", cluster.SvcSubmission)

		body := func(user string) string {
			return "From: <" + user + "@correo.test>\r\nTo: <x@sink.example>\r\nSubject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 4000/80)
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, sessions)
		for i := range sessions {
			n := total / sessions
			if i == 0 {
				n += total % sessions
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl, err := gosmtp.DialStartTLS(sub.String(), &tls.Config{InsecureSkipVerify: true})
				if err != nil {
					errs <- err
					return
				}
				defer cl.Close()
				user := fmt.Sprintf("u%d", i)
				if err := cl.Auth(sasl.NewPlainClient("", user, "secret")); err != nil {
					errs <- fmt.Errorf("AUTH %s: %w", user, err)
					return
				}
				for range n {
					if err := cl.SendMail(user+"@correo.test", []string{"x@sink.example"}, strings.NewReader(body(user))); err != nil {
						errs <- err
						return
					}
				}
				cl.Quit()
			}()
		}
		wg.Wait()
		accepted := time.Since(start)
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		qdir := filepath.Join(state, QueueDir)
		deadline := time.Now().Add(5 * time.Minute)
		for {
			envs, _, _ := queue.List(qdir)
			if len(envs) == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d messages queued after 5 minutes", len(envs))
			}
			time.Sleep(5 * time.Millisecond)
		}
		delivered := time.Since(start)
		if n := strings.Count(p.Log.String(), "route=remote code=250"); n != total {
			b.Fatalf("%d of %d messages delivered to the sink", n, total)
		}
		return [2]time.Duration{accepted, delivered}
	}
	off := relay("relay", false)
	rows = append(rows, row("correo relay (submission)", total, off))
	on := relay("relay-dkim", true)
	rows = append(rows, row("correo relay, DKIM-signed", total, on))
	signCost := fmt.Sprintf("DKIM signing (Ed25519 + RSA-2048) on: %.0f delivered/s, off: %.0f; wall time per message %+.2f ms\n",
		float64(total)/on[1].Seconds(), float64(total)/off[1].Seconds(), (on[1].Seconds()-off[1].Seconds())*1e3/float64(total))
	b.StopTimer()
	fmt.Printf("\nOutgoing SMTP, %d messages of 4 KB, %d sessions, fsync on, dir %s\n", total, sessions, dir)
	fmt.Printf("%-30s %12s %10s %12s\n", "target", "accepted/s", "seconds", "delivered/s")
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Print(signCost)
}
