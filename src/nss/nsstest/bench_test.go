package nsstest

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"correo/internal/benchfig"
	"correo/src/nssd/nssdtest"
)

// BenchmarkNSSGetpwnam is the paper's motivating problem, measured:
// getpwnam latency at 1 M users through glibc's NSS, with
//
//   - files:          `passwd: files`, a 1 M-line passwd file bind-mounted
//     over /etc/passwd (a linear scan per lookup);
//   - correo-cached:  `passwd: files correo` (the real, short /etc/passwd
//     first), nssd's cache warm;
//   - correo-miss:    the same, names never asked before: nssd's cache
//     misses and asks its Source.
//
// The Source is nssdtest's in-memory map of 1 M users (in this process),
// not passwdd over UDP: the miss figure is the module + nssd path, not
// the network round trip (passwdd's own benchmark measures that). A C
// program (testdata/bench.c) does the lookups inside `unshare -m`; all
// figures come from one run. Needs root. Run with `make nss-bench`:
//
//	go test -run '^$' -bench NSSGetpwnam -benchtime 1x ./src/nss/nsstest
//
// Nothing is asserted: it prints the figures.
func BenchmarkNSSGetpwnam(b *testing.B) {
	for i := 0; i < b.N; i++ {
		fl, warm, miss := measureNSS(b, 1_000_000)
		for _, f := range []benchfig.Figure{
			{Figure: "getpwnam median, user cached in nssd, 1 M users", Correo: warm.med, Max: 40},
			{Figure: "getpwnam p99, user cached in nssd, 1 M users", Correo: warm.p99, Max: 200},
			{Figure: "getpwnam median, nssd cache miss, 1 M users", Correo: miss.med},
		} {
			f.Bench, f.Unit, f.Baseline, f.BaselineName = "nss-bench", "µs", fl.med, "glibc files"
			benchfig.Record(f)
		}
		b.ReportMetric(fl.med, "files-median-µs")
		b.ReportMetric(warm.med, "cached-median-µs")
		b.ReportMetric(warm.p99, "cached-p99-µs")
		b.ReportMetric(miss.med, "miss-median-µs")
		b.ReportMetric(miss.p99, "miss-p99-µs")
	}
}

// BenchmarkNSSScale is BenchmarkNSSGetpwnam at each directory size of
// CORREO_SCALE_USERS (default 10 k, 100 k, 1 M), for the plot of make
// scale-bench (CORREO_SCALE_DATA).
func BenchmarkNSSScale(b *testing.B) {
	sizes := []int{10_000, 100_000, 1_000_000}
	if v := os.Getenv("CORREO_SCALE_USERS"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1000 {
				b.Fatalf("CORREO_SCALE_USERS=%q: %q: want numbers of at least 1000", v, f)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		fl, warm, miss := measureNSS(b, n)
		for _, p := range []struct {
			series string
			y      float64
		}{
			{"nss_files_median_us", fl.med}, {"nss_cached_median_us", warm.med}, {"nss_cached_p99_us", warm.p99},
			{"nss_miss_median_us", miss.med},
		} {
			if err := benchfig.RecordScale(p.series, float64(n), p.y); err != nil {
				b.Fatal(err)
			}
		}
	}
}

type nssFig struct {
	label          string
	n              int
	med, p99, maxv float64
}

// measureNSS runs the three lookups of BenchmarkNSSGetpwnam at users
// users and prints their table.
func measureNSS(b *testing.B, users int) (fl, warm, miss nssFig) {
	all := nssdtest.Generated(users)
	cached := newWorld(b, "passwd: files correo\ngroup: files correo\n")
	files := newWorld(b, "passwd: files\ngroup: files\n")
	dir := b.TempDir()

	// The in-process nssd, visible to both worlds as /run/correo.
	cached.sockDir = filepath.Join(dir, "run-correo")
	os.MkdirAll(cached.sockDir, 0o755)
	a, err := nssdtest.StartAt(filepath.Join(cached.sockDir, "nssd.sock"), nssdtest.NewSource(all...), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Stop()

	// The 1 M-line passwd: the machine's own lines, then the users.
	files.passwd = filepath.Join(dir, "passwd")
	pf, err := os.Create(files.passwd)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(pf, 1<<20)
	own, _ := os.ReadFile("/etc/passwd")
	w.Write(own)
	for _, u := range all {
		fmt.Fprintf(w, "%s:x:%d:%d:%s:%s:%s\n", u.Name, u.UID, u.GID, u.Gecos, u.Home, u.Shell)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	pf.Close()
	st, _ := os.Stat(files.passwd)

	// Disjoint random name sets, so the miss run never meets a name the
	// cached run warmed.
	perm := rand.Perm(users)
	names := func(file string, idx []int) string {
		p := filepath.Join(dir, file)
		var sb strings.Builder
		for _, i := range idx {
			sb.WriteString(all[i].Name + "\n")
		}
		os.WriteFile(p, []byte(sb.String()), 0o644)
		return p
	}
	// 5 000 names each for the cached and miss runs (fewer in a small
	// directory), 100 for files.
	k := min(5000, (users-100)/2)
	cachedNames := names("cached", perm[:k])
	missNames := names("miss", perm[k:2*k])
	filesNames := names("files", perm[2*k:2*k+100])

	bin, err := CompileC(dir, "bench")
	if err != nil {
		b.Fatal(err)
	}
	parse := func(out string) nssFig {
		f := strings.Fields(out)
		if len(f) != 5 {
			b.Fatalf("bench output %q", out)
		}
		n, _ := strconv.Atoi(f[1])
		med, _ := strconv.ParseFloat(f[2], 64)
		p99, _ := strconv.ParseFloat(f[3], 64)
		mx, _ := strconv.ParseFloat(f[4], 64)
		return nssFig{f[0], n, med, p99, mx}
	}
	miss = parse(cached.must(b, bin+" correo-miss "+missNames))
	warm = parse(cached.must(b, bin+" -w correo-cached "+cachedNames))
	fl = parse(files.must(b, bin+" files "+filesNames))
	fmt.Printf("\ngetpwnam at %d users (passwd file %.0f MB), latency in µs:\n", users, float64(st.Size())/1e6)
	fmt.Printf("  %-14s %7s %10s %10s %10s\n", "backend", "lookups", "median", "p99", "max")
	for _, f := range []nssFig{fl, warm, miss} {
		fmt.Printf("  %-14s %7d %10.1f %10.1f %10.1f\n", f.label, f.n, f.med, f.p99, f.maxv)
	}
	fmt.Printf("  median speed-up over files: cached %.0fx, cache miss %.0fx\n", fl.med/warm.med, fl.med/miss.med)
	return fl, warm, miss
}
