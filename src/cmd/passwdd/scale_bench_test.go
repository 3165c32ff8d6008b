package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/internal/benchfig"
	"correo/internal/udpload"
	"correo/src/pwproto"
)

// scaleUsers is the directory sizes of the scaling benchmarks:
// CORREO_SCALE_USERS (a comma list), by default 10 k, 100 k and 1 M.
func scaleUsers(b *testing.B) []int {
	v := os.Getenv("CORREO_SCALE_USERS")
	if v == "" {
		return []int{10_000, 100_000, 1_000_000}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("CORREO_SCALE_USERS=%q: %q is not a positive number", v, f)
		}
		out = append(out, n)
	}
	return out
}

// BenchmarkPasswdScale shows how passwdd's costs grow with the
// directory: import and restart times, memory, and lookup latency and
// rate (8 clients over loopback UDP, 3 s), at each size of scaleUsers. It
// writes its points to CORREO_SCALE_DATA for the plot of make
// scale-bench, and asserts nothing.
func BenchmarkPasswdScale(b *testing.B) {
	for _, n := range scaleUsers(b) {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			e := newEnv(b)
			e.start("pw1")
			adm := e.admin()
			users := makeUsers("user", n, 100000)
			for i := range users {
				users[i].Hash = "$2a$10$abcdefghijklmnopqrstuuN0bU5yJcSgD9bXQ9ZlCkY3D0xJ1sx1a"
			}
			t0 := time.Now()
			if err := e.importUsers(adm, users, true); err != nil {
				b.Fatal(err)
			}
			importS := time.Since(t0).Seconds()
			adm.Close()
			e.kill("pw1", syscall.SIGTERM)
			t0 = time.Now()
			e.start("pw1")
			restartS := time.Since(t0).Seconds()
			time.Sleep(500 * time.Millisecond)
			rssMB := float64(rssKB(e.procs["pw1"].Process.Pid)) / 1024

			codec, _ := pwproto.NewCodec(e.ring)
			res, err := udpload.Run(context.Background(), lookupLoad(e, codec, n, 8, 3*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			if res.Failed > 0 || res.Lost > 0 {
				b.Errorf("lookups at %d users: %v (first error %v)", n, res, res.FirstError)
			}
			fmt.Printf("passwdd at %d users: import %.2f s, restart %.2f s, RSS %.0f MB, lookups %.0f/s, p50 %v, p99 %v\n",
				n, importS, restartS, rssMB, res.Rate(), res.P50, res.P99)
			for _, p := range []struct {
				series string
				y      float64
			}{
				{"passwd_import_s", importS}, {"passwd_restart_s", restartS}, {"passwd_rss_mb", rssMB},
				{"passwd_lookups_per_s", res.Rate()},
				{"passwd_lookup_p50_us", float64(res.P50.Microseconds())}, {"passwd_lookup_p99_us", float64(res.P99.Microseconds())},
			} {
				if err := benchfig.RecordScale(p.series, float64(n), p.y); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
