package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"correo/internal/benchfig"
	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/dedup"
	"correo/src/directory"
	"correo/src/lmtpclient"
	"correo/src/mailbox"
)

// BenchmarkLMTP measures LMTP deliveries of 4 KB messages with fsync,
// with 1 and 5 recipients per message and 1, 8 and 32 concurrent
// clients, against pdeliveryd (the shipped build, with its passwdd
// lookups) and a private Dovecot LMTP on the same disk, next to the bare
// write+fsync+rename+directory fsync ceiling of that disk, all in one run:
//
//	go test -run '^$' -bench LMTP -benchtime 1x ./src/cmd/pdeliveryd
//
// (make lmtp-bench). It prints a table at the end and asserts nothing.
//
// The client is the one the cluster's MX hosts use (src/lmtpclient): it
// pipelines, and sends a one-recipient message with BDAT. Both servers
// offer PIPELINING and CHUNKING. pdeliveryd is measured twice: as an
// outside client sees it, and with the delivery key the MX puts first in
// every message (target pdeliveryd+key), which adds pdeliveryd's key log
// to every delivery (issue 19's exactly-once).
//
// A virtual disk's fsync latency drifts by a factor of two within a
// minute, so the targets take turns: CORREO_BENCH_ROUNDS rounds (default
// 3) of CORREO_BENCH_SECONDS (default 2) each, and the table gives each
// target's median.
//
// CORREO_BENCH_TARGETS (a comma list of bare, pdeliveryd, pdeliveryd+key,
// dovecot) measures only those.
//
// It runs on two file systems, each holding the Maildirs, pdeliveryd's
// state and Dovecot's mail:
//
//	disk=ext4-journal  a fresh ext4 with its default journal on a loop
//	               device: what a storage host's mail partition is, and the
//	               figures to compare.
//	disk=machine   the machine's own disk, or CORREO_BENCH_DIR. Here that is
//	               ext4 without a journal, where creating a file scans past
//	               every inode deleted in the last minutes (the kernel's
//	               recently_deleted check): a file costs 0.02 to 0.8 ms
//	               depending on the block group its directory landed in and
//	               on the churn of the whole disk, so these figures follow
//	               the machine's history.
func BenchmarkLMTP(b *testing.B) {
	testutil.NeedRoot(b)
	b.Run("disk=ext4-journal", func(b *testing.B) { benchLMTP(b, "ext4-journal", clustertest.JournaledExt4(b)) })
	b.Run("disk=machine", func(b *testing.B) { benchLMTP(b, "machine", clustertest.BenchDir(b, "lmtpbench-")) })
}

// benchTarget is one thing measured: op delivers one message (to rcpts
// recipients) as worker w.
type benchTarget struct {
	name  string
	rcpts int
	open  func(conc int) (op func(w int) error, done func(), err error)
}

func benchLMTP(b *testing.B, disk, dir string) {
	const users = 100
	c := clustertest.NewCluster(b, clustertest.Spec{LogLevel: "info", Hosts: []clustertest.HostSpec{
		{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}, DataDir: filepath.Join(dir, "correo")},
	}})
	// Not the race build: passwdd's speed is part of every delivery.
	c.StartDaemon(b, "passwdd", "st1", false)
	us := make([]directory.User, users)
	for i := range us {
		us[i] = directory.User{Name: fmt.Sprintf("u%d", i), UID: uint32(20000 + i), GID: 5000, Storage: "st1"}
	}
	c.ImportUsers(b, us)
	// The state directory (the key log) on the measured disk too.
	c.StartDaemon(b, "pdeliveryd", "st1", false, "-state", filepath.Join(dir, "pdeliveryd-state"))
	dc := clustertest.StartDovecot(b, clustertest.DovecotConfig{MailDir: filepath.Join(dir, "dovecot"), Processes: 8})

	var seq atomic.Int64
	// As the MX does: a queue id per message, unique across the run (a
	// repeated key would be answered from the key log without a write).
	key := func() string { return dedup.Line(c.Ring, fmt.Sprintf("%020x.benchbenchbench", seq.Add(1))) }
	var targets []benchTarget
	for _, rcpts := range []int{1, 5} {
		if rcpts == 1 {
			bareDir := filepath.Join(dir, "bare")
			targets = append(targets, benchTarget{"bare", 1, func(int) (func(int) error, func(), error) {
				return bareOp(bareDir), func() {}, nil
			}})
		}
		targets = append(targets,
			benchTarget{"pdeliveryd", rcpts, lmtpTarget(lmtpAddr(c), users, rcpts, nil)},
			benchTarget{"pdeliveryd+key", rcpts, lmtpTarget(lmtpAddr(c), users, rcpts, key)},
			benchTarget{"dovecot", rcpts, lmtpTarget(dc.Addr(), users, rcpts, nil)})
	}
	// CORREO_BENCH_TARGETS=pdeliveryd (a comma list) measures only those:
	// for profiling one without the others' work in the same profile.
	if v := os.Getenv("CORREO_BENCH_TARGETS"); v != "" {
		kept := targets[:0]
		for _, t := range targets {
			if strings.Contains(","+v+",", ","+t.name+",") {
				kept = append(kept, t)
			}
		}
		targets = kept
	}
	rounds, secs := envInt("CORREO_BENCH_ROUNDS", 3), envInt("CORREO_BENCH_SECONDS", 2)
	for _, rcpts := range []int{1, 5} {
		for _, conc := range []int{1, 8, 32} {
			// CORREO_BENCH_CLIENTS=32 (a comma list) measures only those
			// client counts, for profiling one of them.
			if v := os.Getenv("CORREO_BENCH_CLIENTS"); v != "" && !strings.Contains(","+v+",", fmt.Sprintf(",%d,", conc)) {
				continue
			}
			b.Run(fmt.Sprintf("rcpts=%d/clients=%d", rcpts, conc), func(b *testing.B) {
				var ts []benchTarget
				ops := map[string]func(int) error{}
				for _, t := range targets {
					if t.rcpts == rcpts {
						op, done, err := t.open(conc)
						if err != nil {
							b.Fatalf("%s: %v", t.name, err)
						}
						defer done()
						ts = append(ts, t)
						ops[t.name] = op
					}
				}
				rates, cpus := map[string][]float64{}, map[string][]float64{}
				for r := 0; r < rounds; r++ {
					for _, t := range ts {
						mps, cpu, err := measure(conc, time.Duration(secs)*time.Second, ops[t.name])
						if err != nil {
							b.Fatalf("%s, %d clients: %v", t.name, conc, err)
						}
						rates[t.name] = append(rates[t.name], mps)
						cpus[t.name] = append(cpus[t.name], cpu/float64(rcpts))
					}
				}
				for _, t := range ts {
					mps := median(rates[t.name])
					b.ReportMetric(mps*float64(rcpts), t.name+"-deliveries/s")
					record(disk, t.name, rcpts, conc, mps, median(cpus[t.name]))
				}
			})
		}
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// msg4K is a 4 KB message.
var msg4K = func() []byte {
	var m bytes.Buffer
	m.WriteString("From: load@example.org\r\nSubject: 4 KB\r\n\r\n")
	for m.Len() < 4096-64 {
		m.WriteString("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n")
	}
	return m.Bytes()
}()

type figure struct {
	disk, target  string
	rcpts, conc   int
	msgs, deliver float64
	// cpu is the machine's busy CPU time per delivery (µs), every
	// process and the kernel together: on 2 cores the load generator,
	// passwdd and the disk's kernel work share the CPU with the server.
	cpu float64
}

var (
	figMu   sync.Mutex
	figures = map[string]figure{}
)

func record(disk, target string, rcpts, conc int, mps, cpu float64) {
	figMu.Lock()
	figures[fmt.Sprintf("%s/%s/%d/%d", disk, target, rcpts, conc)] = figure{disk, target, rcpts, conc, mps, mps * float64(rcpts), cpu}
	figMu.Unlock()
}

// measure runs op on conc workers for d and returns operations per
// second and the machine's busy CPU time per operation (µs); the first
// error stops it.
func measure(conc int, d time.Duration, op func(w int) error) (float64, float64, error) {
	busy0, _ := busyCPU()
	var n atomic.Int64
	var wg sync.WaitGroup
	var (
		firstMu sync.Mutex
		first   error
		stop    atomic.Bool
	)
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if err := op(w); err != nil {
					firstMu.Lock()
					if first == nil {
						first = err
					}
					firstMu.Unlock()
					stop.Store(true)
					return
				}
				n.Add(1)
			}
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	el := time.Since(start)
	busy1, cpuErr := busyCPU()
	if first != nil {
		return 0, 0, first
	}
	ops := float64(n.Load())
	cpu := 0.0
	if cpuErr == nil && ops > 0 {
		cpu = (busy1 - busy0).Seconds() * 1e6 / ops
	}
	return ops / el.Seconds(), cpu, nil
}

// busyCPU is the CPU time all cores spent on anything but idling and
// waiting for I/O since boot, from /proc/stat.
func busyCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var ticks int64
	// user nice system idle iowait irq softirq steal: all but idle and
	// iowait.
	for i, v := range f[1:9] {
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: field %d: %v", i+1, err)
		}
		ticks += n
	}
	// USER_HZ is 100 on every Linux ABI Go supports.
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// lmtpTarget delivers over conc kept-alive connections with the
// cluster's own LMTP client. key, when set, gives each message its
// delivery key line.
func lmtpTarget(addr string, users, rcpts int, key func() string) func(int) (func(int) error, func(), error) {
	return func(conc int) (func(int) error, func(), error) {
		clients := make([]*lmtpclient.Client, 0, conc)
		closeAll := func() {
			for _, c := range clients {
				c.Close()
			}
		}
		for range conc {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			c, err := lmtpclient.New(nc, "bench.example")
			if err != nil {
				nc.Close()
				closeAll()
				return nil, nil, err
			}
			clients = append(clients, c)
			if !c.Pipelining() || !c.Chunking() {
				closeAll()
				return nil, nil, fmt.Errorf("%s does not offer PIPELINING and CHUNKING", addr)
			}
		}
		var seq atomic.Int64
		op := func(w int) error {
			base := int(seq.Add(int64(rcpts)))
			to := make([]string, rcpts)
			for k := range to {
				to[k] = fmt.Sprintf("u%d@correo.test", (base+k)%users)
			}
			msg := msg4K
			if key != nil {
				msg = append([]byte(key()), msg4K...)
			}
			out, err := clients[w].Send("load@example.org", int64(len(msg)), to, bytes.NewReader(msg))
			if err != nil {
				return err
			}
			for k, r := range out.Final {
				if r.Code != 250 {
					return fmt.Errorf("%s: %s: %v", addr, to[k], r)
				}
			}
			return nil
		}
		return op, closeAll, nil
	}
}

// bareOp is the disk's ceiling for one delivery: create, write, fsync,
// rename, fsync of the directory, with nothing around it (the loop of
// src/mailbox's BenchmarkBareWriteFsyncRename).
func bareOp(dir string) func(int) error {
	tmp, dst := filepath.Join(dir, "tmp"), filepath.Join(dir, "new")
	os.MkdirAll(tmp, 0o700)
	os.MkdirAll(dst, 0o700)
	var seq atomic.Int64
	return func(w int) error {
		name := fmt.Sprintf("%d.%d.%d", time.Now().UnixNano(), w, seq.Add(1))
		return mailbox.BareDeliver(tmp, dst, name, msg4K)
	}
}

// TestMain prints the benchmark table after a benchmark run, and removes
// the programs the tests built.
func TestMain(m *testing.M) {
	code := clustertest.Run(m)
	if len(figures) > 0 {
		printTable()
	}
	os.Exit(code)
}

func printTable() {
	var keys []string
	for k := range figures {
		keys = append(keys, k)
	}
	order := map[string]int{"bare": 0, "pdeliveryd": 1, "pdeliveryd+key": 2, "dovecot": 3}
	sort.Slice(keys, func(i, j int) bool {
		a, b := figures[keys[i]], figures[keys[j]]
		if a.disk != b.disk {
			return a.disk < b.disk
		}
		if a.rcpts != b.rcpts {
			return a.rcpts < b.rcpts
		}
		if a.conc != b.conc {
			return a.conc < b.conc
		}
		return order[a.target] < order[b.target]
	})
	fmt.Println()
	fmt.Println("LMTP delivery of 4 KB messages, fsync on: medians of rounds taken in turns")
	fmt.Println("(deliveries/s = messages/s × recipients; × bare = deliveries/s over the bare")
	fmt.Println("write+fsync+rename+directory fsync ceiling on the same disk at the same clients;")
	fmt.Println("CPU µs/d = the machine's busy CPU time per delivery: server, client, passwdd, kernel)")
	fmt.Printf("%-13s %-15s %6s %8s %12s %14s %7s %9s\n", "disk", "target", "rcpts", "clients", "messages/s", "deliveries/s", "× bare", "CPU µs/d")
	for _, k := range keys {
		f := figures[k]
		ratio := "-"
		if bare, ok := figures[fmt.Sprintf("%s/bare/1/%d", f.disk, f.conc)]; ok && f.target != "bare" {
			ratio = fmt.Sprintf("%.2f", f.deliver/bare.deliver)
		}
		fmt.Printf("%-13s %-15s %6d %8d %12.0f %14.0f %7s %9.0f\n", f.disk, f.target, f.rcpts, f.conc, f.msgs, f.deliver, ratio, f.cpu)
	}
	// The one table (make bench): pdeliveryd against the disk's ceiling,
	// with and without delivery keys, and against Dovecot.
	for _, k := range keys {
		f := figures[k]
		if f.rcpts != 1 || (f.target != "pdeliveryd" && f.target != "pdeliveryd+key") {
			continue
		}
		what := fmt.Sprintf("LMTP deliveries, 4 KB, %d client(s), %s disk", f.conc, f.disk)
		if f.target == "pdeliveryd+key" {
			what += ", with delivery keys"
		}
		if bare, ok := figures[fmt.Sprintf("%s/bare/1/%d", f.disk, f.conc)]; ok {
			fig := benchfig.Figure{Bench: "lmtp-bench", Figure: what, Unit: "msgs/s", Correo: f.deliver,
				Baseline: bare.deliver, BaselineName: "bare write+fsync+rename+dir fsync"}
			if f.target == "pdeliveryd" && f.disk == "ext4-journal" {
				fig.RatioMin = 0.7
			}
			// What a storage host takes from the MX hosts: keyed
			// deliveries, many at once, on a journaled disk.
			if f.target == "pdeliveryd+key" && f.disk == "ext4-journal" && f.conc == 32 {
				fig.Capacity = "lmtp"
			}
			benchfig.Record(fig)
		}
		if dc, ok := figures[fmt.Sprintf("%s/dovecot/1/%d", f.disk, f.conc)]; ok && f.target == "pdeliveryd" {
			benchfig.Record(benchfig.Figure{Bench: "lmtp-bench", Figure: what, Unit: "msgs/s", Correo: f.deliver,
				Baseline: dc.deliver, BaselineName: "Dovecot LMTP"})
		}
	}
}
