package main

import (
	"bytes"
	"correo/src/mailbox"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"correo/internal/clustertest"
	"correo/src/directory"
)

// BenchmarkLMTP measures LMTP deliveries of 4 KB messages with fsync,
// with 1 and 5 recipients per message and 1, 8 and 32 concurrent
// clients, against pdeliveryd (the shipped build, with its passwdd
// lookups) and a private Dovecot LMTP on the same disk, next to the bare
// write+fsync+rename ceiling of that disk, all in one run:
//
//	CORREO_BENCH_DIR=/var/tmp go test -run '^$' -bench LMTP -benchtime 3s ./src/cmd/pdeliveryd
//
// (make lmtp-bench). It prints a table at the end and asserts nothing.
// CORREO_BENCH_DIR must be on the disk that will hold the mail: on tmpfs
// fsync costs nothing and the figures lie.
func BenchmarkLMTP(b *testing.B) {
	const users = 100
	dir := clustertest.BenchDir(b, "lmtpbench-")
	c := clustertest.NewCluster(b, clustertest.Spec{LogLevel: "info", Hosts: []clustertest.HostSpec{
		{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}, DataDir: filepath.Join(dir, "correo")},
	}})
	c.StartPasswdd(b, "st1")
	us := make([]directory.User, users)
	for i := range us {
		us[i] = directory.User{Name: fmt.Sprintf("u%d", i), UID: uint32(20000 + i), GID: 5000, Storage: "st1"}
	}
	c.ImportUsers(b, us)
	c.StartDaemon(b, "pdeliveryd", "st1", false)
	dc := clustertest.StartDovecot(b, clustertest.DovecotConfig{MailDir: filepath.Join(dir, "dovecot"), Processes: 8})

	for _, conc := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("target=bare/rcpts=1/clients=%d", conc), func(b *testing.B) {
			bare(b, filepath.Join(dir, "bare"), conc)
		})
	}
	for _, target := range []struct{ name, addr string }{{"pdeliveryd", lmtpAddr(c)}, {"dovecot", dc.Addr()}} {
		for _, rcpts := range []int{1, 5} {
			for _, conc := range []int{1, 8, 32} {
				b.Run(fmt.Sprintf("target=%s/rcpts=%d/clients=%d", target.name, rcpts, conc), func(b *testing.B) {
					load(b, target.name, target.addr, users, rcpts, conc)
				})
			}
		}
	}
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
	target        string
	rcpts, conc   int
	msgs, deliver float64
}

var (
	figMu   sync.Mutex
	figures = map[string]figure{}
)

func record(b *testing.B, target string, rcpts, conc int, n int, el time.Duration) {
	mps := float64(n) / el.Seconds()
	b.ReportMetric(mps, "msgs/s")
	b.ReportMetric(mps*float64(rcpts), "deliveries/s")
	figMu.Lock()
	figures[fmt.Sprintf("%s/%d/%d", target, rcpts, conc)] = figure{target, rcpts, conc, mps, mps * float64(rcpts)}
	figMu.Unlock()
}

// spread runs op b.N times over conc workers and returns the elapsed time.
func spread(b *testing.B, conc int, op func(worker, i int) error) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	var first atomic.Value
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := op(w, i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	if err := first.Load(); err != nil {
		b.Fatal(err)
	}
	return el
}

// load runs b.N LMTP transactions over conc kept-alive connections.
func load(b *testing.B, target, addr string, users, rcpts, conc int) {
	clients := make([]*smtp.Client, conc)
	for i := range clients {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		c := smtp.NewClientLMTP(nc)
		if err := c.Hello("bench.example"); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	defer func() {
		for _, c := range clients {
			c.Quit()
		}
	}()
	var seq atomic.Int64
	b.SetBytes(int64(len(msg4K)))
	el := spread(b, conc, func(w, _ int) error {
		c := clients[w]
		if err := c.Mail("load@example.org", nil); err != nil {
			return err
		}
		base := int(seq.Add(int64(rcpts)))
		for k := 0; k < rcpts; k++ {
			if err := c.Rcpt(fmt.Sprintf("u%d@correo.test", (base+k)%users), nil); err != nil {
				return err
			}
		}
		wc, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := wc.Write(msg4K); err != nil {
			return err
		}
		if _, err := wc.CloseWithLMTPResponse(); err != nil {
			return err
		}
		return nil
	})
	record(b, target, rcpts, conc, b.N, el)
}

// bare is the disk's ceiling for one delivery: create, write, fsync,
// rename, fsync of the directory, with nothing around it (the loop of
// src/mailbox's BenchmarkBareWriteFsyncRename).
func bare(b *testing.B, dir string, conc int) {
	tmp, dst := filepath.Join(dir, "tmp"), filepath.Join(dir, "new")
	os.MkdirAll(tmp, 0o700)
	os.MkdirAll(dst, 0o700)
	b.SetBytes(int64(len(msg4K)))
	el := spread(b, conc, func(w, i int) error {
		name := fmt.Sprintf("%d.%d.%d", time.Now().UnixNano(), w, i)
		return mailbox.BareDeliver(tmp, dst, name, msg4K)
	})
	record(b, "bare", 1, conc, b.N, el)
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
	sort.Slice(keys, func(i, j int) bool {
		a, b := figures[keys[i]], figures[keys[j]]
		order := map[string]int{"bare": 0, "pdeliveryd": 1, "dovecot": 2}
		if a.rcpts != b.rcpts {
			return a.rcpts < b.rcpts
		}
		if a.conc != b.conc {
			return a.conc < b.conc
		}
		return order[a.target] < order[b.target]
	})
	fmt.Println()
	fmt.Println("LMTP delivery of 4 KB messages, fsync on (deliveries/s = messages/s × recipients)")
	fmt.Printf("%-11s %6s %8s %12s %14s\n", "target", "rcpts", "clients", "messages/s", "deliveries/s")
	for _, k := range keys {
		f := figures[k]
		fmt.Printf("%-11s %6d %8d %12.0f %14.0f\n", f.target, f.rcpts, f.conc, f.msgs, f.deliver)
	}
}
