package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"correo/internal/benchfig"
	"correo/internal/clustertest"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/pwadmin"
)

// BenchmarkLogins measures POP3 logins per second through mailproxy →
// pop3d for many distinct users hashed as `correoctl users add` hashes
// them (bcrypt cost 10), next to a private Dovecot POP3 (high-performance
// mode, auth cache on) checking the same hashes, all in one run (make
// login-bench). Each session is what a polling client does: connect,
// USER/PASS, STAT, QUIT.
//
//   - cold: every user logs in once, spread over 8 and then 64 clients;
//     nothing is cached, so each login costs a bcrypt check;
//   - warm: the users whose cold login succeeded log in again and again
//     for a fixed time, as mail clients polling every few minutes do:
//     passwdd answers them from its verified-credentials cache
//     (auth_cached grows, auth_verified must not), Dovecot from its auth
//     cache, which keeps the hash and so checks it again;
//   - storm: that many connections open at once, then all send USER/PASS
//     for users not yet cached; a login still queued when mailproxy's
//     passwd timeout runs out, or refused by a full auth_queue, gets
//     -ERR [SYS/TEMP].
//
// Environment: CORREO_BENCH_USERS (10000), CORREO_BENCH_STORM (2000, at
// most the users), CORREO_BENCH_WARM (10s per warm phase),
// CORREO_BENCH_DIR (where the hash file is kept; default the temporary
// directory). Hashing 10 000 passwords at cost 10 takes about 12
// CPU-minutes, so the users, passwords and hashes are kept in a file and
// reused by the next run.
//
// Clients connect from 127.1.x.y, at most 8 per source address: a storm
// from one address would only measure mailproxy's per-client limit (20),
// which stays at its production default. (8, not 16: mailproxy counts a
// session until its handler has returned, a little after the client saw
// it close, and a client reconnecting at once from an address with 16 busy
// ones was refused now and then.) It prints a table and asserts
// nothing.
func BenchmarkLogins(b *testing.B) {
	n := envInt(b, "CORREO_BENCH_USERS", 10000)
	storm := envInt(b, "CORREO_BENCH_STORM", 2000)
	warm := 10 * time.Second
	if s := os.Getenv("CORREO_BENCH_WARM"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("CORREO_BENCH_WARM=%q: want a duration such as 10s", s)
		}
		warm = d
	}
	stormNote := ""
	if storm > n {
		// Two sessions of one user at once would meet pop3d's mailbox
		// lock, not the password check.
		stormNote = fmt.Sprintf(" (CORREO_BENCH_STORM=%d cut to the %d users)", storm, n)
		storm = n
	}
	// The storm's connections are held by this process, by mailproxy
	// (twice: client and backend) and by pop3d or Dovecot, which inherit
	// the limit set here.
	nofile := raiseNofile(uint64(4*storm + 4096))
	users := benchUsers(b, n)

	c := clustertest.NewCluster(b, clustertest.Spec{
		LogLevel: "info", TrustedNetwork: true,
		BcryptCost: directory.DefaultBcryptCost,
		// What a client waits for passwdd in production.
		PasswdTimeout: cluster.DefaultPasswdTimeout.String(),
		Hosts: []clustertest.HostSpec{
			{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}},
			{Name: "px", Address: "127.0.0.30", Roles: []string{"mailproxy"}},
		}})
	// Not the race-built passwdd of the tests: bcrypt under -race is
	// twenty times slower.
	pw := c.StartDaemon(b, "passwdd", "st1", false)
	dus := make([]directory.User, n)
	dvUsers := make([]clustertest.DovecotPOP3User, n)
	for i, u := range users {
		dus[i] = directory.User{Name: u.name, UID: uint32(20000 + i), GID: 5000, Storage: "st1", Hash: u.hash}
		md := c.Maildir("st1", u.name)
		for _, d := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(md, d), 0o700); err != nil {
				b.Fatal(err)
			}
		}
		dvUsers[i] = clustertest.DovecotPOP3User{Name: u.name, Hash: "{BLF-CRYPT}" + u.hash, Maildir: md}
	}
	c.ImportUsers(b, dus)
	c.StartDaemon(b, "pop3d", "st1", false)
	c.StartDaemon(b, "mailproxy", "px", false)
	pa, _ := c.Profile.Listen("px", cluster.SvcPOP3)
	proxy := pa.String()
	pwc := c.Profile.Cluster.Passwd

	stats := func() pwadmin.Stats {
		prim, _ := c.Profile.PasswdServers()
		a, err := c.Profile.Listen(prim.Name, cluster.SvcPasswdAdmin)
		if err != nil {
			b.Fatal(err)
		}
		ac, err := pwadmin.Dial(context.Background(), a.String(), c.Ring)
		if err != nil {
			b.Fatal(err)
		}
		defer ac.Close()
		resp, err := ac.Do(pwadmin.Request{Op: pwadmin.OpStats})
		if err != nil || resp.Stats == nil {
			b.Fatalf("passwd stats: %v", err)
		}
		return *resp.Stats
	}
	// A login the client gave up on (passwd timeout) is still verified
	// when its turn comes: wait until the queue is empty, so the counters
	// include that work and the next phase does not compete with it.
	drain := func() pwadmin.Stats {
		last := stats()
		for {
			time.Sleep(1500 * time.Millisecond)
			st := stats()
			if st.AuthVerified == last.AuthVerified {
				return st
			}
			last = st
		}
	}
	// A new passwdd has an empty credentials cache (its key is drawn at
	// start-up) and zero counters.
	restart := func() {
		pw.Stop(syscall.SIGTERM)
		pw = c.StartDaemon(b, "passwdd", "st1", false)
	}

	out := os.Stdout
	fmt.Fprintf(out, "\nPOP3 logins (USER/PASS, STAT, QUIT), %d users with their own passwords, bcrypt cost %d\n", n, directory.DefaultBcryptCost)
	fmt.Fprintf(out, "%d CPUs shared by the clients and every server; warm phases %v; storm %d connections%s; RLIMIT_NOFILE %d\n",
		runtime.NumCPU(), warm, storm, stormNote, nofile)
	fmt.Fprintf(out, "correo: mailproxy → pop3d, passwdd timeout %v, auth_queue %d, bcrypt workers %d, auth_cache_ttl %v\n",
		pwc.Timeout.Std(), pwc.AuthQueue, runtime.NumCPU(), pwc.AuthCacheTTL.Std())
	fmt.Fprintf(out, "dovecot: 2.3 high-performance mode (4 login processes), passwd-file {BLF-CRYPT}, auth_cache_size 64M, auth_cache_ttl 1 hour, cache hits verified in auth-workers\n")
	fmt.Fprintf(out, "latency: dial (storm: all connections open) to the answer to PASS, of successful logins\n\n")
	fmt.Fprintf(out, "%-8s %-6s %7s %8s %7s %6s %6s %8s %8s %8s %8s %16s %16s\n",
		"target", "phase", "clients", "attempts", "ok", "temp", "other", "conn-err", "ok/s", "p50 ms", "p99 ms", "auth_cached", "auth_verified")
	okRate := map[string]float64{} // target/phase/clients → ok/s, for the one table
	row := func(target, phase string, clients int, r phaseResult, before, after *pwadmin.Stats) {
		okRate[fmt.Sprintf("%s/%s/%d", target, phase, clients)] = float64(r.count[loginOK]) / r.wall.Seconds()
		cached, verified := "-", "-"
		if after != nil {
			cached = fmt.Sprintf("%d (+%d)", after.AuthCached, after.AuthCached-before.AuthCached)
			verified = fmt.Sprintf("%d (+%d)", after.AuthVerified, after.AuthVerified-before.AuthVerified)
		}
		fmt.Fprintf(out, "%-8s %-6s %7d %8d %7d %6d %6d %8d %8.1f %8s %8s %16s %16s\n",
			target, phase, clients, r.attempts(), r.count[loginOK], r.count[loginTemp]+r.count[loginRefused],
			r.count[loginOther], r.count[loginConnErr], float64(r.count[loginOK])/r.wall.Seconds(),
			r.percentile(0.50), r.percentile(0.99), cached, verified)
		for o, e := range r.example {
			if e != "" && outcome(o) != loginOK {
				fmt.Fprintf(out, "         first %s: %s\n", outcome(o), e)
			}
		}
	}

	// The warm phase replays the users whose cold login succeeded: those
	// are cached for sure (a login the client gave up on was verified too,
	// unless the full queue refused it), and their next logins must cost
	// no bcrypt.
	warmUsers := func(cold phaseResult, clients int) bool {
		switch k := len(cold.ok); {
		case k == 0:
			fmt.Fprintf(out, "         no cold login succeeded: no warm phase\n")
			return false
		case k < len(users):
			fmt.Fprintf(out, "         warm phase below: the %d users whose cold login succeeded, %d clients\n", k, min(k, clients))
		}
		return true
	}
	// CORREO_BENCH_PHASES picks phases (a comma list of correo-cold,
	// correo-storm, dovecot; default all), to measure one again without
	// the others' half hour.
	phases := os.Getenv("CORREO_BENCH_PHASES")
	want := func(p string) bool { return phases == "" || slices.Contains(strings.Split(phases, ","), p) }
	var warmVerified uint64
	for i, clients := range []int{8, 64} {
		if !want("correo-cold") {
			break
		}
		if i > 0 {
			restart()
		}
		before := stats()
		r := coldPhase(proxy, users, clients)
		after := drain()
		row("correo", "cold", clients, r, &before, &after)
		if !warmUsers(r, clients) {
			continue
		}
		before = after
		r = warmPhase(proxy, r.ok, clients, warm)
		after = stats()
		row("correo", "warm", clients, r, &before, &after)
		warmVerified += after.AuthVerified - before.AuthVerified
	}
	var r phaseResult
	if want("correo-storm") {
		restart()
		before := stats()
		r = stormPhase(proxy, users[:storm])
		after := drain()
		row("correo", "storm", storm, r, &before, &after)
		dropped := func(k string) uint64 { return after.Dropped[k] - before.Dropped[k] }
		fmt.Fprintf(out, "         storm: %d refused at the greeting, %d [SYS/TEMP] at PASS; passwdd TempFail: %d queue full, %d over the time budget, %d expired in the queue; %d bcrypt checks in all (queue drained); verification cost %s before, %s after\n",
			r.count[loginRefused], r.count[loginTemp], dropped("auth_queue_full"), dropped("auth_overload"), dropped("auth_expired"), after.AuthVerified-before.AuthVerified,
			before.VerifyCost, after.VerifyCost)
	}
	if want("correo-cold") {
		if warmVerified == 0 {
			fmt.Fprintf(out, "correo warm phases: answered from passwdd's credentials cache only (auth_verified did not grow)\n")
		} else {
			fmt.Fprintf(out, "NOTE: correo's warm phases needed %d bcrypt checks: some users were not cached after the cold phase\n", warmVerified)
		}
	}
	if !want("dovecot") {
		return
	}

	// Dovecot reads the same Maildirs as the user its mail processes run
	// as; pop3d, running as root here, is not affected.
	dvConf := clustertest.DovecotPOP3Config{Users: dvUsers, LoginProcesses: 4, Settings: fmt.Sprintf(`# login benchmark
auth_cache_size = 64M
auth_cache_ttl = 1 hour
# Dovecot caches the hash, not the verdict: a cache hit costs a bcrypt
# check too, which this moves from the single auth process to the
# auth-workers (the documented way to use more cores for strong hashes).
# A passwd-file cache miss is checked in the auth process all the same.
auth_cache_verify_password_with_worker = yes
default_client_limit = %d
service pop3 {
  process_limit = %d
}
`, storm+1024, max(1024, storm+100))}
	var dv *clustertest.DovecotPOP3
	startDovecot := func() {
		if dv != nil {
			dv.Proc.Stop(syscall.SIGTERM)
		}
		dv = clustertest.StartDovecotPOP3(b, dvConf)
	}
	startDovecot()
	clustertest.ChownTree(b, c.DataDir("st1"), dv.UID, dv.GID)
	// Dovecot checks the bcrypt hash on every login, cached or not (its
	// cache keeps the hash, not the verdict): its cold rate is its warm
	// rate, and a cold pass over all the users would take ~10 minutes per
	// client count at ~16 logins/s. Its cold phases take the first
	// CORREO_BENCH_DOVECOT_USERS users (default 2 000).
	dvCold := users[:min(len(users), envInt(b, "CORREO_BENCH_DOVECOT_USERS", 2000))]
	fmt.Fprintf(out, "         dovecot cold phases below: the first %d users\n", len(dvCold))
	for i, clients := range []int{8, 64} {
		if i > 0 {
			startDovecot()
		}
		r := coldPhase(dv.Addr(), dvCold, clients)
		row("dovecot", "cold", clients, r, nil, nil)
		if warmUsers(r, clients) {
			row("dovecot", "warm", clients, warmPhase(dv.Addr(), r.ok, clients, warm), nil, nil)
		}
	}
	startDovecot()
	r = stormPhase(dv.Addr(), users[:storm])
	row("dovecot", "storm", storm, r, nil, nil)
	fmt.Fprintf(out, "         storm: %d refused at the greeting, %d [SYS/TEMP] at PASS\n", r.count[loginRefused], r.count[loginTemp])
	for _, k := range []struct {
		phase   string
		clients int
		what    string
	}{{"cold", 8, "uncached"}, {"warm", 8, "cached"}, {"cold", 64, "uncached"}, {"warm", 64, "cached"}, {"storm", storm, "a storm of uncached logins"}} {
		key := fmt.Sprintf("%s/%d", k.phase, k.clients)
		if c, ok := okRate["correo/"+key]; ok {
			if d, ok := okRate["dovecot/"+key]; ok {
				f := benchfig.Figure{Bench: "login-bench", Figure: fmt.Sprintf("POP3 logins through mailproxy, bcrypt cost %d, %s, %d clients",
					directory.DefaultBcryptCost, k.what, k.clients), Unit: "logins/s", Correo: c, Baseline: d, BaselineName: "Dovecot POP3, high-performance"}
				if k.phase == "warm" && k.clients == 64 {
					f.Capacity = "pop3" // returning users, their logins cached
				}
				benchfig.Record(f)
			}
		}
	}
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, s)
	}
	return v
}

// raiseNofile raises the soft RLIMIT_NOFILE to want (and the hard one,
// which root may do) if it is lower, and returns the soft limit. Setting
// it explicitly also makes children inherit it: Go gives child processes
// the limit the program started with otherwise.
func raiseNofile(want uint64) uint64 {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 0
	}
	if rl.Cur < want {
		nl := syscall.Rlimit{Cur: want, Max: max(rl.Max, want)}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl) != nil {
			nl = syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
			syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl)
		}
	} else {
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur
}

type benchUser struct{ name, pw, hash string }

const hashFileHeader = "# correo login benchmark: name password bcrypt-hash"

// benchUsers returns n users, each with its own random password and its
// cost-10 hash, from the hash file when it is there and well-formed, or
// made now (in parallel) and written there for the next run.
func benchUsers(b *testing.B, n int) []benchUser {
	dir := cmp.Or(os.Getenv("CORREO_BENCH_DIR"), os.TempDir())
	path := filepath.Join(dir, fmt.Sprintf("correo-login-bench-hashes-%d.txt", n))
	us, err := readHashFile(path, n)
	if err == nil {
		fmt.Fprintf(os.Stderr, "login bench: reusing %d hashes from %s\n", n, path)
		return us
	}
	if !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "login bench: %s unusable (%v): hashing again\n", path, err)
	}
	start := time.Now()
	fmt.Fprintf(os.Stderr, "login bench: hashing %d passwords at bcrypt cost %d (once: kept in %s)\n", n, directory.DefaultBcryptCost, path)
	us = make([]benchUser, n)
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				var raw [12]byte
				rand.Read(raw[:])
				pw := base64.RawURLEncoding.EncodeToString(raw[:])
				h, err := directory.HashPassword(pw, directory.DefaultBcryptCost)
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				us[i] = benchUser{benchName(i), pw, h}
			}
		}()
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	sb.WriteString(hashFileHeader + "\n")
	for _, u := range us {
		fmt.Fprintf(&sb, "%s %s %s\n", u.name, u.pw, u.hash)
	}
	// Written aside and renamed, so an interrupted run leaves no half
	// file for the next one to trust.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "login bench: hashed in %v\n", time.Since(start).Round(time.Second))
	return us
}

func benchName(i int) string { return fmt.Sprintf("lb%05d", i) }

func readHashFile(path string, n int) ([]benchUser, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != n+1 || lines[0] != hashFileHeader {
		return nil, fmt.Errorf("want a header and %d lines, found %d lines", n, len(lines))
	}
	prefix := fmt.Sprintf("$2a$%02d$", directory.DefaultBcryptCost)
	us := make([]benchUser, n)
	for i, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != benchName(i) || f[1] == "" || len(f[2]) != 60 || !strings.HasPrefix(f[2], prefix) {
			return nil, fmt.Errorf("line %d malformed", i+2)
		}
		us[i] = benchUser{f[0], f[1], f[2]}
	}
	// A sample, to catch a file whose passwords and hashes got separated.
	for _, u := range []benchUser{us[0], us[n-1]} {
		if !directory.VerifyPassword(u.hash, u.pw) {
			return nil, fmt.Errorf("the hash of %s does not match its password", u.name)
		}
	}
	return us, nil
}

type outcome int

const (
	loginOK      outcome = iota
	loginTemp            // -ERR [SYS/TEMP] to USER or PASS
	loginRefused         // -ERR at the greeting: a connection limit
	loginOther           // any other -ERR: should not happen
	loginConnErr         // dial, reset, timeout
	nOutcomes
)

func (o outcome) String() string {
	return [...]string{"ok", "temporary failure", "refusal at the greeting", "other failure", "connection error"}[o]
}

type phaseResult struct {
	// ok are the users that logged in (cold phases).
	ok      []benchUser
	count   [nOutcomes]int
	example [nOutcomes]string
	lats    []time.Duration
	wall    time.Duration
}

func (r *phaseResult) attempts() (n int) {
	for _, c := range r.count {
		n += c
	}
	return n
}

func (r *phaseResult) percentile(q float64) string {
	if len(r.lats) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(r.lats[int(q*float64(len(r.lats)-1))].Microseconds())/1000)
}

// collector merges the clients' results.
type collector struct {
	mu sync.Mutex
	r  phaseResult
}

func (c *collector) add(u benchUser, a attempt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.r.count[a.out]++
	if a.out == loginOK {
		c.r.ok = append(c.r.ok, u)
		c.r.lats = append(c.r.lats, a.lat)
	} else if c.r.example[a.out] == "" {
		c.r.example[a.out] = a.detail
	}
}

func (c *collector) done(start time.Time) phaseResult {
	c.r.wall = time.Since(start)
	slices.Sort(c.r.lats)
	slices.SortFunc(c.r.ok, func(a, b benchUser) int { return strings.Compare(a.name, b.name) })
	return c.r
}

// sourceAddr is client i's address: 8 clients per address, well under
// mailproxy's production limit of 20 per client address.
func sourceAddr(i int) net.IP {
	a := i / 8
	return net.IPv4(127, 1, byte(a/250), byte(a%250+1))
}

// coldPhase logs every user in once, user i by client i mod clients. A
// client told "try later" ([SYS/TEMP]) tries again a second later, as a
// mail client does at its next poll (compressed): the phase ends when
// every user has logged in once, and the temporary failures on the way
// are counted.
func coldPhase(addr string, users []benchUser, clients int) phaseResult {
	var col collector
	var wg sync.WaitGroup
	start := time.Now()
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(users); i += clients {
				for try := 0; ; try++ {
					a := login(addr, sourceAddr(w), users[i], 2*time.Minute, nil, nil)
					col.add(users[i], a)
					if a.out != loginTemp || try == 120 {
						break
					}
					time.Sleep(time.Second)
				}
			}
		}()
	}
	wg.Wait()
	return col.done(start)
}

// warmPhase has each client log its share of the users in, round and
// round, until d has passed. Shares do not overlap: two sessions of one
// user at once would meet the mailbox lock.
func warmPhase(addr string, users []benchUser, clients int, d time.Duration) phaseResult {
	var col collector
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := range min(clients, len(users)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(deadline); i += clients {
				if i >= len(users) {
					i = w
				}
				col.add(users[i], login(addr, sourceAddr(w), users[i], 2*time.Minute, nil, nil))
			}
		}()
	}
	wg.Wait()
	return col.done(start)
}

// stormPhase opens one connection per user, waits until every one has its
// greeting (or failed), then lets all of them log in at once.
func stormPhase(addr string, users []benchUser) phaseResult {
	var col collector
	var greeted, wg sync.WaitGroup
	gate := make(chan struct{})
	for i, u := range users {
		greeted.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Long: a server that queues logins instead of refusing them
			// is measured, not cut off.
			col.add(u, login(addr, sourceAddr(i), u, 5*time.Minute, &greeted, gate))
		}()
	}
	greeted.Wait()
	start := time.Now()
	close(gate)
	wg.Wait()
	return col.done(start)
}

type attempt struct {
	out    outcome
	lat    time.Duration
	detail string
}

// login runs one polling session from src. With gate set it calls
// greeted.Done once the greeting is in (or the connection failed) and
// waits for the gate before USER, and the latency counts from the gate.
func login(addr string, src net.IP, u benchUser, timeout time.Duration, greeted *sync.WaitGroup, gate chan struct{}) attempt {
	arrived := func() {}
	if greeted != nil {
		arrived = sync.OnceFunc(greeted.Done)
		defer arrived()
	}
	start := time.Now()
	d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return attempt{out: loginConnErr, detail: err.Error()}
	}
	defer conn.Close()
	conn.SetDeadline(start.Add(timeout))
	br := bufio.NewReader(conn)
	line := func() (string, error) {
		l, err := br.ReadString('\n')
		return strings.TrimRight(l, "\r\n"), err
	}
	failed := func(l string, err error) attempt {
		switch {
		case err != nil:
			return attempt{out: loginConnErr, detail: err.Error()}
		case strings.HasPrefix(l, "-ERR [SYS/TEMP]"):
			return attempt{out: loginTemp, detail: l}
		}
		return attempt{out: loginOther, detail: l}
	}
	l, err := line()
	if err != nil {
		return failed(l, err)
	}
	if !strings.HasPrefix(l, "+OK") {
		return attempt{out: loginRefused, detail: l}
	}
	if gate != nil {
		arrived()
		<-gate
		start = time.Now()
	}
	var lat time.Duration
	for _, cmd := range []string{"USER " + u.name, "PASS " + u.pw, "STAT", "QUIT"} {
		if _, err := fmt.Fprintf(conn, "%s\r\n", cmd); err != nil {
			return failed("", err)
		}
		l, err := line()
		if err != nil || !strings.HasPrefix(l, "+OK") {
			a := failed(l, err)
			if err == nil {
				a.detail = fmt.Sprintf("%s → %s", strings.Fields(cmd)[0], l)
			}
			return a
		}
		if strings.HasPrefix(cmd, "PASS") {
			lat = time.Since(start)
		}
	}
	// The server closes first: TIME_WAIT stays on its side, not on the
	// source ports of a client that opens thousands of sessions.
	io.Copy(io.Discard, br)
	return attempt{out: loginOK, lat: lat}
}
