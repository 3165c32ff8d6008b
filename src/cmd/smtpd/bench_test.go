package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/interop"
	"correo/src/testutil"
)

// BenchmarkSMTP measures end-to-end deliveries of 4 KB messages driven by
// Postfix's smtp-source with 20 concurrent sessions (4 users, one
// smtp-source process each, 5 sessions per process), in one run:
//
//	sink     smtp-sink alone: SMTP with no storage (the ceiling)
//	correo   smtpd → queue (fsync) → LMTP → pdeliveryd → Maildir (fsync)
//	postfix  a private Postfix: smtpd → queue → virtual(8) → Maildir
//
// accepted/s counts until smtp-source has its last 250; delivered/s (the
// figure that matters) until the last message is a file in a Maildir. make smtp-bench runs it; it prints a table and
// asserts nothing. CORREO_BENCH_DIR puts the queues and mail on the disk
// to measure (default: the temporary directory);
// CORREO_BENCH_MESSAGES sets the messages per target (default 2000).
func BenchmarkSMTP(b *testing.B) {
	testutil.NeedRoot(b)
	source := testutil.NeedCommand(b, "smtp-source")
	sink := testutil.NeedCommand(b, "smtp-sink")
	total := 2000
	if v, err := strconv.Atoi(os.Getenv("CORREO_BENCH_MESSAGES")); err == nil && v > 0 {
		total = v
	}
	const users, perUser = 4, 5
	dir := benchDir(b)
	var rows []string

	// The ceiling: smtp-sink stores nothing.
	port := interop.FreePort(b)
	interop.Start(b, "smtp-sink", []string{sink, "-u", "postfix", "-c", fmt.Sprintf("127.0.0.1:%d", port), "1024"}, nil)
	interop.WaitTCP(b, fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	d := drive(b, source, fmt.Sprintf("127.0.0.1:%d", port), users, perUser, total, func() int { return total })
	rows = append(rows, row("smtp-sink (no storage)", total, d))

	// correo.
	c := interop.NewCluster(b, interop.Spec{Hosts: []interop.HostSpec{
		{Name: "mx1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "mx", "storage"}, DataDir: filepath.Join(dir, "correo-mail")},
	}})
	c.StartDaemon(b, "passwdd", "mx1", false)
	var us []directory.User
	for i := 0; i < users; i++ {
		us = append(us, directory.User{Name: fmt.Sprintf("u%d", i), Storage: "mx1"})
	}
	c.AddUsers(b, us...)
	c.StartDaemon(b, "pdeliveryd", "mx1", false)
	bin := interop.Build(b, "smtpd", false)
	smtpdState := filepath.Join(dir, "correo-smtpd")
	interop.StartNotify(b, "smtpd", []string{bin, "-profile", c.ProfilePath, "-host", "mx1", "-state", smtpdState}, nil)
	a, _ := c.Profile.Listen("mx1", cluster.SvcSMTP)
	d = drive(b, source, a.String(), users, perUser, total, func() int { return countFiles(c.DataDir("mx1")) })
	rows = append(rows, row("correo smtpd+pdeliveryd", total, d))

	// Postfix delivering into Maildirs with virtual(8).
	pfMail := filepath.Join(dir, "postfix-mail")
	os.MkdirAll(pfMail, 0o777)
	os.Chmod(pfMail, 0o777)
	var mapLines []string
	for i := 0; i < users; i++ {
		mapLines = append(mapLines, fmt.Sprintf("u%d@correo.test u%d/Maildir/", i, i))
	}
	mapFile := filepath.Join(dir, "vmailbox")
	os.WriteFile(mapFile, []byte(strings.Join(mapLines, "\n")+"\n"), 0o644)
	pf := interop.StartPostfix(b, interop.PostfixConfig{Main: map[string]string{
		"virtual_mailbox_domains":             "correo.test",
		"virtual_mailbox_base":                pfMail,
		"virtual_mailbox_maps":                "texthash:" + mapFile,
		"virtual_uid_maps":                    "static:5000",
		"virtual_gid_maps":                    "static:5000",
		"virtual_minimum_uid":                 "100",
		"smtpd_client_connection_count_limit": "100",
		"smtpd_client_message_rate_limit":     "0",
	}})
	d = drive(b, source, pf.Addr(), users, perUser, total, func() int { return countFiles(pfMail) })
	rows = append(rows, row("postfix (private, virtual)", total, d))

	b.StopTimer()
	fmt.Printf("\nEnd-to-end SMTP → Maildir, %d messages of 4 KB, %d sessions (%d smtp-source processes), fsync on, dir %s\n",
		total, users*perUser, users, dir)
	fmt.Printf("%-30s %12s %10s %12s\n", "target", "accepted/s", "seconds", "delivered/s")
	for _, r := range rows {
		fmt.Println(r)
	}
}

func row(name string, n int, d [2]time.Duration) string {
	return fmt.Sprintf("%-30s %12.0f %10.2f %12.0f", name, float64(n)/d[0].Seconds(), d[1].Seconds(), float64(n)/d[1].Seconds())
}

// drive runs one smtp-source per user (perUser sessions each, reusing
// connections) until total messages are sent, then waits until done()
// reports them all stored.
func drive(b *testing.B, source, addr string, users, perUser, total int, done func() int) [2]time.Duration {
	b.Helper()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, users)
	for i := 0; i < users; i++ {
		n := total / users
		if i == 0 {
			n += total % users
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(source, "-d", "-s", strconv.Itoa(perUser), "-l", "4096", "-m", strconv.Itoa(n),
				"-f", "sender@example.org", "-t", fmt.Sprintf("u%d@correo.test", i), "-M", "client.example.org", addr).CombinedOutput()
			if err != nil {
				errs <- fmt.Errorf("smtp-source: %v\n%s", err, out)
			}
		}()
	}
	wg.Wait()
	accepted := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for done() < total {
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d messages stored after 5 minutes", addr, done(), total)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return [2]time.Duration{accepted, time.Since(start)}
}

// countFiles counts the messages in every Maildir new/ below root.
func countFiles(root string) int {
	n := 0
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && filepath.Base(filepath.Dir(p)) == "new" {
			n++
		}
		return nil
	})
	return n
}

func benchDir(b *testing.B) string {
	base := os.Getenv("CORREO_BENCH_DIR")
	if base == "" {
		d := interop.ShortTempDir(b, "smtpbench-")
		os.Chmod(d, 0o755)
		return d
	}
	d, err := os.MkdirTemp(base, "smtpbench-")
	if err != nil {
		b.Fatalf("CORREO_BENCH_DIR=%s: %v", base, err)
	}
	os.Chmod(d, 0o755)
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}
