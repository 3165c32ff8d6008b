package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/internal/benchfig"
	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/delivery"
	"correo/src/directory"
)

// BenchmarkSMTP measures end-to-end deliveries of 4 KB messages driven by
// Postfix's smtp-source with 20 concurrent sessions (4 users, one
// smtp-source process each, 5 sessions per process), in one run:
//
//	sink     smtp-sink alone: SMTP with no storage (the ceiling)
//	correo   smtpd → queue (fsync) → LMTP → pdeliveryd → Maildir (fsync)
//	auth     the same with the mx's checks: SPF, DKIM and DMARC against a
//	         test DNS server (the client is outside the cluster network)
//	filters  auth, and a private rspamd as milter
//	postfix  a private Postfix: smtpd → queue → virtual(8) → Maildir
//
// accepted/s counts until smtp-source has its last 250; delivered/s (the
// figure that matters) until the last message is a file in a Maildir.
// The targets take turns for CORREO_BENCH_ROUNDS rounds (default 3) and
// the summary gives medians and the correo/Postfix ratio of each round.
//
// It runs twice, on two file systems, each holding every target's queue
// and Maildirs:
//
//	disk=machine   the machine's own disk, or CORREO_BENCH_DIR. Here that
//	               is ext4 without a journal, where creating a file scans
//	               past every inode deleted in the last minutes (the
//	               kernel's recently_deleted check; perf showed it first in
//	               every MTA's profile): the cost of a file grows with the
//	               churn of the whole disk, and rounds vary with it.
//	disk=ext4-journal  a fresh ext4 with its default journal on a loop
//	               device: what a mail host's spool partition is.
//
// make smtp-bench runs it; it prints a table and asserts nothing.
// CORREO_BENCH_DIR chooses the disk of the first run (default: the
// temporary directory); CORREO_BENCH_MESSAGES sets the messages per target
// and round (default 2000).
func BenchmarkSMTP(b *testing.B) {
	testutil.NeedRoot(b)
	b.Run("disk=machine", func(b *testing.B) { benchSMTP(b, "machine", clustertest.BenchDir(b, "smtpbench-")) })
	b.Run("disk=ext4-journal", func(b *testing.B) { benchSMTP(b, "ext4-journal", clustertest.JournaledExt4(b)) })
}

func benchSMTP(b *testing.B, disk, dir string) {
	source := testutil.NeedCommand(b, "smtp-source")
	sink := testutil.NeedCommand(b, "smtp-sink")
	total := 2000
	if v, err := strconv.Atoi(os.Getenv("CORREO_BENCH_MESSAGES")); err == nil && v > 0 {
		total = v
	}
	rounds := 3
	if v, err := strconv.Atoi(os.Getenv("CORREO_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	const users, perUser = 4, 5
	// CORREO_BENCH_TARGETS=correo (a comma list of sink, correo, postfix)
	// runs only those: for profiling one of them without the others'
	// work in the same profile.
	want := func(key string) bool {
		v := os.Getenv("CORREO_BENCH_TARGETS")
		return v == "" || strings.Contains(","+v+",", ","+key+",")
	}
	var targets []target

	// The ceiling: smtp-sink stores nothing.
	if want("sink") {
		port := clustertest.FreePort(b)
		clustertest.Start(b, "smtp-sink", []string{sink, "-u", "postfix", "-c", fmt.Sprintf("127.0.0.1:%d", port), "1024"}, nil)
		clustertest.WaitTCP(b, fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
		targets = append(targets, target{"sink", "smtp-sink (no storage)", fmt.Sprintf("127.0.0.1:%d", port), nil})
	}
	if want("correo") {
		targets = append(targets, benchCorreo(b, dir, users))
	}
	if want("auth") {
		targets = append(targets, benchCorreoFilters(b, dir, users, false))
	}
	if want("filters") {
		targets = append(targets, benchCorreoFilters(b, dir, users, true))
	}
	if want("postfix") {
		targets = append(targets, benchPostfix(b, dir, users))
	}
	// The machine is shared and its speed drifts over seconds: the targets
	// take turns, round after round, and the ratio is taken within each
	// round, where the conditions were alike.
	rates := map[string][]float64{} // delivered/s per target per round
	cpus := map[string][]float64{}  // machine CPU µs per message
	var rows []string
	for r := 1; r <= rounds; r++ {
		for _, t := range targets {
			stored := t.stored
			if stored != nil {
				base := stored()
				stored = func() int { return t.stored() - base }
			} else {
				stored = func() int { return total }
			}
			cpu0 := machineCPU()
			d := drive(b, source, t.addr, users, perUser, total, stored)
			cpu := machineCPU() - cpu0
			rates[t.key] = append(rates[t.key], float64(total)/d[1].Seconds())
			cpus[t.key] = append(cpus[t.key], cpu.Seconds()*1e6/float64(total))
			rows = append(rows, row(fmt.Sprintf("%d %s", r, t.name), total, d)+fmt.Sprintf(" %10.0f", cpu.Seconds()*1e6/float64(total)))
		}
	}
	b.StopTimer()
	fmt.Printf("\nEnd-to-end SMTP → Maildir, %d messages of 4 KB per target and round, %d sessions (%d smtp-source processes), fsync on, dir %s\n",
		total, users*perUser, users, dir)
	fmt.Printf("%-32s %12s %10s %12s %10s\n", "round target", "accepted/s", "seconds", "delivered/s", "cpu µs/msg")
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Printf("median delivered/s:")
	for _, t := range targets {
		fmt.Printf(" %s %.0f", t.key, median(rates[t.key]))
	}
	if len(rates["correo"]) == rounds && len(rates["postfix"]) == rounds {
		var ratios []float64
		for r := range rounds {
			ratios = append(ratios, rates["correo"][r]/rates["postfix"][r])
		}
		fmt.Printf("; correo/postfix per round %s, median %.2f", fmtRatios(ratios), median(ratios))
		benchfig.Record(benchfig.Figure{Bench: "smtp-bench", Figure: "SMTP in → Maildir, 4 KB, 20 sessions, " + disk + " disk (median of rounds)",
			Unit: "msgs/s", Correo: median(rates["correo"]), Baseline: median(rates["postfix"]), BaselineName: "Postfix", RatioMin: 2,
			Capacity: "smtp"})
	}
	if len(rates["correo"]) == rounds && len(rates["sink"]) == rounds {
		benchfig.Record(benchfig.Figure{Bench: "smtp-bench", Figure: "SMTP in → Maildir against the network path alone, " + disk + " disk",
			Unit: "msgs/s", Correo: median(rates["correo"]), Baseline: median(rates["sink"]), BaselineName: "smtp-sink"})
	}
	fmt.Println()
	for _, f := range []struct{ key, what string }{{"auth", "SPF/DKIM/DMARC"}, {"filters", "SPF/DKIM/DMARC + rspamd"}} {
		if len(rates["correo"]) == rounds && len(rates[f.key]) == rounds {
			on, off := median(rates[f.key]), median(rates["correo"])
			fmt.Printf("%s on: %.0f delivered/s, off: %.0f; wall time per message %+.2f ms, machine CPU per message %+.0f µs\n",
				f.what, on, off, 1e3/on-1e3/off, median(cpus[f.key])-median(cpus["correo"]))
		}
	}
}

type target struct {
	key    string // sink, correo or postfix
	name   string
	addr   string
	stored func() int // messages delivered so far; nil: every one sent
}

func benchCorreo(b *testing.B, dir string, users int) target {
	c := clustertest.NewCluster(b, clustertest.Spec{LogLevel: "info", Hosts: []clustertest.HostSpec{
		{Name: "mx1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "mx", "storage"}, DataDir: filepath.Join(dir, "correo-mail")},
	}})
	c.StartDaemon(b, "passwdd", "mx1", false)
	var us []directory.User
	for i := 0; i < users; i++ {
		us = append(us, directory.User{Name: fmt.Sprintf("u%d", i), Storage: "mx1"})
	}
	c.AddUsers(b, us...)
	c.StartDaemon(b, "pdeliveryd", "mx1", false)
	bin := clustertest.Build(b, "smtpd", false)
	smtpdState := filepath.Join(dir, "correo-smtpd")
	clustertest.StartNotify(b, "smtpd", []string{bin, "-profile", c.ProfilePath, "-host", "mx1", "-state", smtpdState,
		"-lmtp-socket", filepath.Join(c.StateDir("mx1", "pdeliveryd"), delivery.SocketName)}, nil)
	a, _ := c.Profile.Listen("mx1", cluster.SvcSMTP)
	return target{"correo", "correo smtpd+pdeliveryd", a.String(), func() int { return countFiles(c.DataDir("mx1")) }}

}

// benchCorreoFilters is correo with the mx's filters on: the client is
// outside the cluster network (127.0.2.0/24), so every message gets SPF,
// DKIM and DMARC checked against a test DNS server (the sender's domain
// publishes SPF and DMARC p=none) and goes through a private rspamd as
// milter before it is queued.
func benchCorreoFilters(b *testing.B, dir string, users int, withMilter bool) target {
	records := []string{`example.org. 60 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`, `_dmarc.example.org. 60 IN TXT "v=DMARC1; p=none"`}
	key, name, milters := "auth", "correo + SPF/DKIM/DMARC", ""
	if withMilter {
		r := clustertest.StartRspamd(b, records...)
		key, name = "filters", "correo + SPF/DKIM/DMARC + rspamd"
		milters = fmt.Sprintf("[[cluster.milter]]\nname = \"rspamd\"\naddress = \"tcp:%s\"\nroles = [\"mx\"]\ntimeout = \"1m\"\n", r.Addr())
	}
	dnsAddr := clustertest.StartDNS(b, clustertest.Zone(b, records...))
	addr := "127.0.2.1"
	if withMilter {
		addr = "127.0.2.2"
	}
	c := clustertest.NewCluster(b, clustertest.Spec{LogLevel: "info", Network: "127.0.2.0/24", ClusterTOML: milters,
		Hosts: []clustertest.HostSpec{
			{Name: "mx1", Address: addr, Roles: []string{"passwd-primary", "mx", "storage"}, DataDir: filepath.Join(dir, "correo-"+key+"-mail")},
		}})
	c.StartDaemon(b, "passwdd", "mx1", false)
	var us []directory.User
	for i := 0; i < users; i++ {
		us = append(us, directory.User{Name: fmt.Sprintf("u%d", i), Storage: "mx1"})
	}
	c.AddUsers(b, us...)
	c.StartDaemon(b, "pdeliveryd", "mx1", false)
	bin := clustertest.Build(b, "smtpd", false)
	clustertest.StartNotify(b, "smtpd-"+key, []string{bin, "-profile", c.ProfilePath, "-host", "mx1", "-state", filepath.Join(dir, "correo-"+key+"-smtpd"),
		"-resolvers", dnsAddr, "-lmtp-socket", filepath.Join(c.StateDir("mx1", "pdeliveryd"), delivery.SocketName)}, nil)
	a, _ := c.Profile.Listen("mx1", cluster.SvcSMTP)
	return target{key, name, a.String(), func() int { return countFiles(c.DataDir("mx1")) }}
}

// benchPostfix starts a private Postfix delivering into Maildirs with
// virtual(8), the incumbent.
func benchPostfix(b *testing.B, dir string, users int) target {
	pfMail := filepath.Join(dir, "postfix-mail")
	os.MkdirAll(pfMail, 0o777)
	os.Chmod(pfMail, 0o777)
	var mapLines []string
	for i := 0; i < users; i++ {
		mapLines = append(mapLines, fmt.Sprintf("u%d@correo.test u%d/Maildir/", i, i))
	}
	mapFile := filepath.Join(dir, "vmailbox")
	os.WriteFile(mapFile, []byte(strings.Join(mapLines, "\n")+"\n"), 0o644)
	pf := clustertest.StartPostfix(b, clustertest.PostfixConfig{Main: map[string]string{
		"virtual_mailbox_domains":             "correo.test",
		"virtual_mailbox_base":                pfMail,
		"virtual_mailbox_maps":                "texthash:" + mapFile,
		"virtual_uid_maps":                    "static:5000",
		"virtual_gid_maps":                    "static:5000",
		"virtual_minimum_uid":                 "100",
		"smtpd_client_connection_count_limit": "100",
		"smtpd_client_message_rate_limit":     "0",
	}, QueueDir: filepath.Join(dir, "postfix-queue")})
	return target{"postfix", "postfix (private, virtual)", pf.Addr(), func() int { return countFiles(pfMail) }}

}

// machineCPU is the CPU time the whole machine has spent busy (user,
// system, interrupts), from /proc/stat: the daemons, smtp-source and the
// kernel's own threads (journal commits, writeback) alike, which is the
// cost a mail host pays per message.
func machineCPU() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal
	var ticks int64
	for i, v := range f {
		if i == 1 || i == 2 || i == 3 || i == 6 || i == 7 {
			n, _ := strconv.ParseInt(v, 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtRatios(v []float64) string {
	var parts []string
	for _, x := range v {
		parts = append(parts, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(parts, " ")
}

func row(name string, n int, d [2]time.Duration) string {
	return fmt.Sprintf("%-32s %12.0f %10.2f %12.0f", name, float64(n)/d[0].Seconds(), d[1].Seconds(), float64(n)/d[1].Seconds())
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
		// Counting walks every new/: often enough to time the end within
		// a percent, seldom enough not to steal the daemons' CPU.
		time.Sleep(20 * time.Millisecond)
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
