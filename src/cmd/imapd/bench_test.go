package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"correo/internal/benchfig"
	"correo/internal/clustertest"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/mailbox"
)

// BenchmarkIMAP is issue 16's comparison, in one run (make imap-bench),
// of imapd directly, through mailproxy, and a private Dovecot 2.3 IMAP
// (stock, and its high-performance mode) serving the same Maildirs, every
// server checking the same SHA-512-crypt hash:
//
//   - LOGIN+SELECT INBOX of a 2 000 × 11 KB mailbox, each a fresh
//     connection (connect, greeting, LOGIN, SELECT, tagged OK): median and
//     p90 of 20, after a warm-up session per target (Dovecot builds its
//     index at the first SELECT, imapd its uidlist);
//   - UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE) on it: the
//     first after the warm-up, the median of the next 5, bytes received;
//   - IDLE: from the start of a delivery into the Maildir (mailbox.Deliver,
//     what pdeliveryd does: write, fsync, rename into new/, fsync) to the
//     untagged EXISTS, median and p90 of 20;
//   - memory for CORREO_BENCH_IDLE (10 000) sessions logged in, INBOX (10
//     messages) selected, in IDLE: the server's PSS (imapd; mailproxy +
//     imapd; the sum over Dovecot's process tree) less the same before
//     the sessions opened, per session; and the machine's used memory
//     (kernel and this client included) per session. imapd and mailproxy
//     are restarted before their memory phase, so heap kept from the
//     earlier phases does not hide the sessions' cost.
//
// The client disables Nagle (Go's default). It prints a Markdown table and
// asserts nothing about speed; a protocol error (NO, BAD, BYE, a wrong
// EXISTS count or number of FETCH responses) fails it.
func BenchmarkIMAP(b *testing.B) {
	const (
		password = "benchpw"
		hash     = "$6$saltsalt$dM/CtIoV3c1qmNuOWB4n7dKEkbOLye48ygRmj2kwQpO9x9IIWuBkU4RJNTovcWUBtqp0AmbZ2WtYb.n39znnR."
		bigN     = 2000
		smallN   = 10
		sessions = 20
		fetches  = 5
		idles    = 20
	)
	idleK := 10000
	if s := os.Getenv("CORREO_BENCH_IDLE"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			b.Fatalf("CORREO_BENCH_IDLE=%q: want a number of connections (0: no memory phase)", s)
		}
		idleK = n
	}
	// Before any server starts: they inherit it. The client holds idleK
	// descriptors, imapd as many, mailproxy six per session: the two
	// sockets, and a pipe for each direction of Go's zero-copy splice(2),
	// taken while it waits for data, which an idle session does all the
	// time. Where the hard limit cannot be raised (a container without
	// CAP_SYS_RESOURCE) mailproxy gets the sessions it has room for, and
	// the table says so.
	fdLimit := clustertest.RaiseFDLimit(b, uint64(6*idleK+4096))
	if fdLimit < uint64(idleK)+200 {
		b.Fatalf("RLIMIT_NOFILE %d is too low for CORREO_BENCH_IDLE=%d sessions", fdLimit, idleK)
	}
	proxyK := min(idleK, (int(fdLimit)-200)/6)
	// imapd has no connection limit in the profile: its built-in 10 000.
	c := clustertest.NewCluster(b, clustertest.Spec{LogLevel: "info", TrustedNetwork: true, Hosts: []clustertest.HostSpec{
		{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}},
		{Name: "px", Address: "127.0.0.30", Roles: []string{"mailproxy"},
			TOML: fmt.Sprintf("[host.mailproxy]\nmax_connections = %d\nmax_connections_per_client = %d\n", idleK+100, idleK+100)},
	}})
	c.StartPasswdd(b, "st1")
	counts := map[string]int{"big": bigN, "small": smallN, "idle": smallN}
	var users []directory.User
	for _, n := range []string{"big", "small", "idle"} {
		users = append(users, directory.User{Name: n, Storage: "st1", Hash: hash})
	}
	c.AddUsers(b, users...)
	msg := func(i int) string {
		var m strings.Builder
		fmt.Fprintf(&m, "From: Load <load@example.org>\nTo: big@correo.test\nDate: Mon, 2 Jun 2025 10:00:00 +0000\nMessage-ID: <%d@example.org>\nSubject: message %d\n\n", i, i)
		for m.Len() < 11*1024 {
			m.WriteString("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\n")
		}
		return m.String()
	}
	var dusers []clustertest.DovecotUser
	for _, u := range users {
		md := mailbox.New(c.Maildir("st1", u.Name))
		for i := 0; i < counts[u.Name]; i++ {
			if _, err := md.Deliver(strings.NewReader(msg(i))); err != nil {
				b.Fatal(err)
			}
		}
		dusers = append(dusers, clustertest.DovecotUser{Name: u.Name, Hash: "{SHA512-CRYPT}" + hash, Maildir: md.Path})
	}
	idleBox := mailbox.New(c.Maildir("st1", "idle"))
	imapd := c.StartDaemon(b, "imapd", "st1", false)
	proxy := c.StartDaemon(b, "mailproxy", "px", false)
	stock := clustertest.StartDovecotIMAP(b, clustertest.DovecotIMAPConfig{Users: dusers, MaxConnections: idleK})
	hp := clustertest.StartDovecotIMAP(b, clustertest.DovecotIMAPConfig{Users: dusers, LoginProcesses: 4, MaxConnections: idleK})
	// Dovecot's mail processes run as nobody; correo's daemons, as root
	// here (no run_as), read and write whatever they own, and what they
	// create (imapd's special-use folders at the first login, the
	// deliveries) is given to nobody before each Dovecot phase.
	forDovecot := func() { clustertest.ChownTree(b, c.DataDir("st1"), stock.UID, stock.GID) }

	direct, _ := c.Profile.Listen("st1", cluster.SvcIMAPBackend)
	viaProxy, _ := c.Profile.Listen("px", cluster.SvcIMAP)
	type target struct {
		name, addr string
		k          int // idle sessions to open
		// mem is the server's PSS in KiB and its process count.
		mem func() (int64, int)
		// restart gives correo's daemons a fresh heap before the memory
		// phase; nil for Dovecot.
		restart func()
		dovecot bool
	}
	restart := func() {
		imapd.Stop(syscall.SIGTERM)
		proxy.Stop(syscall.SIGTERM)
		imapd = c.StartDaemon(b, "imapd", "st1", false)
		proxy = c.StartDaemon(b, "mailproxy", "px", false)
	}
	targets := []target{
		{"imapd", direct.String(), idleK, func() (int64, int) { return clustertest.PSS(imapd.Cmd.Process.Pid), 1 }, restart, false},
		{"mailproxy → imapd", viaProxy.String(), proxyK, func() (int64, int) {
			return clustertest.PSS(proxy.Cmd.Process.Pid) + clustertest.PSS(imapd.Cmd.Process.Pid), 2
		}, restart, false},
		{"dovecot stock", stock.Addr(), idleK, func() (int64, int) { return clustertest.TreePSS(stock.Proc.Cmd.Process.Pid) }, nil, true},
		{"dovecot high-perf", hp.Addr(), idleK, func() (int64, int) { return clustertest.TreePSS(hp.Proc.Cmd.Process.Pid) }, nil, true},
	}
	type result struct {
		selMed, selP90       float64
		fetchFirst, fetchMed float64
		fetchBytes           int64
		idleMed, idleP90     float64
		deliverMed           float64
		reached              int
		reachErr             error
		memKB, sysKB         int64
		procs                int
	}
	res := make([]result, len(targets))
	fail := func(tg target, err error) {
		b.Helper()
		b.Fatalf("%s (%s): %v", tg.name, tg.addr, err)
	}
	for ti, tg := range targets {
		r := &res[ti]
		if tg.dovecot {
			forDovecot()
		}
		progress("%s: warm-up", tg.name)
		for _, u := range []string{"big", "small", "idle"} {
			cl, err := loginSelect(tg.addr, u, password, counts[u])
			if err != nil {
				fail(tg, err)
			}
			cl.logout()
		}
		progress("%s: %d × LOGIN+SELECT", tg.name, sessions)
		var times []float64
		for i := 0; i < sessions; i++ {
			start := time.Now()
			cl, err := loginSelect(tg.addr, "big", password, bigN)
			if err != nil {
				fail(tg, err)
			}
			times = append(times, ms(time.Since(start)))
			cl.logout()
		}
		r.selMed, r.selP90 = quantile(times, 0.5), quantile(times, 0.9)

		progress("%s: UID FETCH", tg.name)
		cl, err := loginSelect(tg.addr, "big", password, bigN)
		if err != nil {
			fail(tg, err)
		}
		times = times[:0]
		for i := 0; i <= fetches; i++ {
			n := 0
			before := cl.in
			start := time.Now()
			err := cl.cmd("UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)", func(l string) {
				if strings.Contains(l, " FETCH (") && strings.Contains(l, "ENVELOPE (") {
					n++
				}
			})
			el := ms(time.Since(start))
			if err == nil && n != bigN {
				err = fmt.Errorf("UID FETCH 1:* gave %d FETCH responses with an ENVELOPE, want %d", n, bigN)
			}
			if err != nil {
				fail(tg, err)
			}
			if i == 0 {
				r.fetchFirst, r.fetchBytes = el, cl.in-before
			} else {
				times = append(times, el)
			}
		}
		r.fetchMed = quantile(times, 0.5)
		cl.logout()

		progress("%s: IDLE, %d deliveries", tg.name, idles)
		lat, del, err := idleLatency(tg.addr, "idle", password, counts["idle"], idles, func() error {
			_, err := idleBox.Deliver(strings.NewReader(msg(counts["idle"])))
			if err == nil {
				counts["idle"]++
			}
			return err
		})
		if err != nil {
			fail(tg, err)
		}
		r.idleMed, r.idleP90, r.deliverMed = quantile(lat, 0.5), quantile(lat, 0.9), quantile(del, 0.5)
	}

	for ti, tg := range targets {
		r := &res[ti]
		if idleK == 0 {
			break
		}
		if tg.restart != nil {
			tg.restart()
		}
		if tg.dovecot {
			forDovecot()
		}
		// One session first: the store's and the password cache's cost is
		// paid once, not per connection.
		cl, err := loginSelect(tg.addr, "small", password, smallN)
		if err != nil {
			fail(tg, err)
		}
		cl.logout()
		time.Sleep(time.Second)
		// This process's own garbage returned first: the machine's figure
		// should move with the sessions only.
		debug.FreeOSMemory()
		mem0, procs0 := tg.mem()
		sys0 := usedKB()
		progress("%s: opening %d idle sessions (server %d KiB PSS in %d processes before)", tg.name, tg.k, mem0, procs0)
		start := time.Now()
		conns, err := idleSessions(tg.addr, "small", password, smallN, tg.k)
		var pe *protocolError
		if errors.As(err, &pe) {
			fail(tg, err)
		}
		r.reached, r.reachErr = len(conns), err
		time.Sleep(3 * time.Second)
		debug.FreeOSMemory()
		mem1, procs1 := tg.mem()
		sys1 := usedKB()
		progress("%s: %d idle sessions in %.0f s; server %d KiB PSS in %d processes", tg.name, len(conns), time.Since(start).Seconds(), mem1, procs1)
		if len(conns) > 0 {
			r.memKB, r.sysKB, r.procs = mem1-mem0, sys1-sys0, procs1
		}
		for _, cn := range conns {
			cn.Close()
		}
		// Dovecot's imap processes end with their connections: wait, so
		// the next target's baseline does not count them.
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if _, n := tg.mem(); n <= procs0+2 {
				break
			}
		}
		time.Sleep(time.Second)
	}

	// The table.
	cols := make([]string, len(targets))
	for i, tg := range targets {
		cols[i] = tg.name
	}
	fmt.Printf("\nIMAP, %d CPUs, all targets in one run over the same Maildirs; a warm-up session per target first\n\n", runtime.NumCPU())
	fmt.Printf("| figure | %s | imapd / dovecot high-perf |\n|---|%s---|\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
	// ratio: the row compares servers (not the delivery, the same for all).
	row := func(name, format string, v func(r result) float64, ratio ...bool) {
		fmt.Printf("| %s |", name)
		for _, r := range res {
			fmt.Printf(" "+format+" |", v(r))
		}
		last := v(res[len(res)-1])
		if last != 0 && len(ratio) == 0 {
			fmt.Printf(" %.2f× |\n", v(res[0])/last)
			benchfig.Record(benchfig.Figure{Bench: "imap-bench", Figure: "IMAP " + name + ", imapd direct", Correo: v(res[0]),
				Baseline: last, BaselineName: targets[len(targets)-1].name})
		} else {
			fmt.Printf(" – |\n")
		}
	}
	row(fmt.Sprintf("LOGIN+SELECT, %d-message INBOX, fresh connection: median of %d (ms)", bigN, sessions), "%.2f", func(r result) float64 { return r.selMed })
	row("LOGIN+SELECT: p90 (ms)", "%.2f", func(r result) float64 { return r.selP90 })
	row("UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE): first after warm-up (ms)", "%.1f", func(r result) float64 { return r.fetchFirst })
	row(fmt.Sprintf("UID FETCH 1:* …: median of the next %d (ms)", fetches), "%.1f", func(r result) float64 { return r.fetchMed })
	row("UID FETCH 1:* …: bytes received", "%.0f", func(r result) float64 { return float64(r.fetchBytes) })
	row(fmt.Sprintf("IDLE: delivery start → * EXISTS, median of %d (ms)", idles), "%.2f", func(r result) float64 { return r.idleMed })
	row("IDLE: p90 (ms)", "%.2f", func(r result) float64 { return r.idleP90 })
	row("IDLE: the delivery itself (Deliver: write, fsync, rename, fsync), median (ms)", "%.2f", func(r result) float64 { return r.deliverMed }, false)
	if idleK == 0 {
		fmt.Printf("\nNo memory phase (CORREO_BENCH_IDLE=0).\n")
		for i := 0; i < b.N; i++ {
		}
		return
	}
	row("idle sessions opened", "%.0f", func(r result) float64 { return float64(r.reached) })
	row("server memory for them, PSS less before (MiB)", "%.1f", func(r result) float64 { return float64(r.memKB) / 1024 })
	row("server memory per idle session, PSS (KiB)", "%.1f", func(r result) float64 { return perConn(r.memKB, r.reached) })
	row("machine's used memory per idle session, kernel and client included (KiB)", "%.1f", func(r result) float64 { return perConn(r.sysKB, r.reached) })
	row("server processes with the sessions open", "%.0f", func(r result) float64 { return float64(r.procs) }, false)
	fmt.Println()
	for i, r := range res {
		if r.reachErr != nil {
			fmt.Printf("%s stopped at %d idle sessions: %v\n", targets[i].name, r.reached, r.reachErr)
		}
	}
	if proxyK < idleK {
		fmt.Printf("mailproxy → imapd: %d idle sessions, not %d: mailproxy holds six descriptors per idle session (two sockets, two splice pipes) and RLIMIT_NOFILE cannot go above %d here.\n", proxyK, idleK, fdLimit)
	}
	if data, err := os.ReadFile("/proc/sys/fs/inotify/max_user_instances"); err == nil {
		fmt.Printf("Each Dovecot imap process in IDLE wants its own inotify instance; fs.inotify.max_user_instances is %s here, so sessions beyond it (all processes run as nobody) poll every mailbox_idle_check_interval (30 s) instead. imapd has one instance for all its sessions.\n", strings.TrimSpace(string(data)))
	}
	fmt.Printf("Idle sessions: %d wanted per target (CORREO_BENCH_IDLE), one user with %d messages, INBOX selected, in IDLE. Dovecot's memory is the sum over its process tree (master, log, config, auth, anvil, stats, login and imap processes). The machine's used memory counts whatever else runs meanwhile: it means something at thousands of sessions only.\n", idleK, smallN)
	for i := 0; i < b.N; i++ {
	}
	if idleK > 0 && (res[0].reached < targets[0].k || res[1].reached < targets[1].k) {
		b.Errorf("imapd held %d idle sessions (of %d) and mailproxy → imapd %d (of %d)", res[0].reached, targets[0].k, res[1].reached, targets[1].k)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// quantile is the q-quantile of xs (nearest rank, interpolating the
// median of an even count).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if q == 0.5 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func perConn(kb int64, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(kb) / float64(n)
}

// usedKB is the machine's memory in use, as free(1) counts it: neither
// free nor page cache nor reclaimable slab.
func usedKB() int64 {
	data, _ := os.ReadFile("/proc/meminfo")
	v := map[string]int64{}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			v[strings.TrimSuffix(f[0], ":")] = n
		}
	}
	return v["MemTotal"] - v["MemFree"] - v["Buffers"] - v["Cached"] - v["SReclaimable"]
}

// protocolError is a server's answer that is wrong, as opposed to a
// connection it could not take.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return e.msg }

func protoErr(format string, args ...any) error {
	return &protocolError{fmt.Sprintf(format, args...)}
}

// client is the least IMAP client the benchmark needs: tagged commands,
// response lines with their literals read inline.
type client struct {
	conn net.Conn
	br   *bufio.Reader
	tag  int
	in   int64 // bytes received
	buf  []byte
}

func dial(addr string) (*client, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	cl := &client{conn: conn, br: bufio.NewReaderSize(conn, 16<<10)}
	l, err := cl.line()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if !strings.HasPrefix(l, "* OK") {
		conn.Close()
		// A refusal for lack of room is a limit reached, not a bug.
		if strings.HasPrefix(l, "* BYE") {
			return nil, fmt.Errorf("greeting: %q", l)
		}
		return nil, protoErr("greeting: %q", l)
	}
	return cl, nil
}

// line reads one response line without its CRLF, literals ({n}) inline.
func (cl *client) line() (string, error) {
	cl.buf = cl.buf[:0]
	for {
		l, err := cl.br.ReadSlice('\n')
		cl.buf = append(cl.buf, l...)
		cl.in += int64(len(l))
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		s := cl.buf[:len(cl.buf)-1]
		if len(s) > 0 && s[len(s)-1] == '\r' {
			s = s[:len(s)-1]
		}
		if n, ok := literal(s); ok {
			start := len(cl.buf)
			cl.buf = append(cl.buf, make([]byte, n)...)
			if _, err := io.ReadFull(cl.br, cl.buf[start:]); err != nil {
				return "", err
			}
			cl.in += int64(n)
			continue
		}
		return string(s), nil
	}
}

// literal is the size of a literal announced at the end of a line.
func literal(s []byte) (int, bool) {
	if len(s) < 3 || s[len(s)-1] != '}' {
		return 0, false
	}
	i := len(s) - 2
	for i >= 0 && s[i] >= '0' && s[i] <= '9' {
		i--
	}
	if i < 0 || s[i] != '{' || i == len(s)-2 {
		return 0, false
	}
	n, err := strconv.Atoi(string(s[i+1 : len(s)-1]))
	return n, err == nil
}

func (cl *client) send(cmd string) (string, error) {
	cl.tag++
	tag := "a" + strconv.Itoa(cl.tag)
	_, err := io.WriteString(cl.conn, tag+" "+cmd+"\r\n")
	return tag, err
}

// cmd sends a command and reads to its tagged answer, which must be OK,
// handing every untagged line to untagged.
func (cl *client) cmd(cmd string, untagged func(string)) error {
	tag, err := cl.send(cmd)
	if err != nil {
		return err
	}
	name := strings.Fields(cmd)[0]
	for {
		l, err := cl.line()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			if strings.HasPrefix(rest, "OK") {
				return nil
			}
			// A login refused for lack of room (Dovecot's mail process
			// limit, imapd's) says UNAVAILABLE: a limit, not a bug.
			if name == "LOGIN" && strings.Contains(rest, "[UNAVAILABLE]") {
				return fmt.Errorf("%s: %q", name, l)
			}
			return protoErr("%s: %q", name, l)
		}
		if strings.HasPrefix(l, "* BYE") && name != "LOGOUT" {
			return fmt.Errorf("%s: %q", name, l)
		}
		if untagged != nil {
			untagged(l)
		}
	}
}

func (cl *client) logout() {
	cl.cmd("LOGOUT", nil)
	cl.conn.Close()
}

// exists parses "* N EXISTS".
func exists(l string) (int, bool) {
	f := strings.Fields(l)
	if len(f) == 3 && f[0] == "*" && strings.EqualFold(f[2], "EXISTS") {
		n, err := strconv.Atoi(f[1])
		return n, err == nil
	}
	return 0, false
}

// loginSelect connects, logs in and selects INBOX, which must hold want
// messages (want < 0: any number).
func loginSelect(addr, user, pw string, want int) (*client, error) {
	cl, err := dial(addr)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*client, error) {
		cl.conn.Close()
		return nil, err
	}
	if err := cl.cmd("LOGIN "+user+" "+pw, nil); err != nil {
		return fail(err)
	}
	n := -1
	if err := cl.cmd("SELECT INBOX", func(l string) {
		if x, ok := exists(l); ok {
			n = x
		}
	}); err != nil {
		return fail(err)
	}
	if want >= 0 && n != want {
		return fail(protoErr("SELECT INBOX of %s: %d EXISTS, want %d", user, n, want))
	}
	return cl, nil
}

// idle sends IDLE and waits for the continuation.
func (cl *client) idle() (string, error) {
	tag, err := cl.send("IDLE")
	if err != nil {
		return "", err
	}
	for {
		l, err := cl.line()
		if err != nil {
			return "", fmt.Errorf("IDLE: %w", err)
		}
		if strings.HasPrefix(l, "+") {
			return tag, nil
		}
		if strings.HasPrefix(l, tag+" ") {
			return "", protoErr("IDLE: %q", l)
		}
	}
}

// idleLatency selects user's INBOX (n messages), enters IDLE, and times
// deliveries from the start of deliver to the untagged EXISTS announcing
// each; it also returns how long deliver itself took.
func idleLatency(addr, user, pw string, n, rounds int, deliver func() error) (lat, del []float64, err error) {
	cl, err := loginSelect(addr, user, pw, n)
	if err != nil {
		return nil, nil, err
	}
	defer cl.conn.Close()
	tag, err := cl.idle()
	if err != nil {
		return nil, nil, err
	}
	type event struct {
		line string
		at   time.Time
		err  error
	}
	events := make(chan event, 64)
	go func() {
		for {
			l, err := cl.line()
			events <- event{l, time.Now(), err}
			if err != nil || strings.HasPrefix(l, tag+" ") {
				return
			}
		}
	}()
	cl.conn.SetDeadline(time.Now().Add(10 * time.Minute))
	for i := 0; i < rounds; i++ {
		start := time.Now()
		if err := deliver(); err != nil {
			return nil, nil, err
		}
		del = append(del, ms(time.Since(start)))
		n++
		timeout := time.After(time.Minute)
	wait:
		for {
			select {
			case ev := <-events:
				if ev.err != nil {
					return nil, nil, fmt.Errorf("in IDLE: %w", ev.err)
				}
				if x, ok := exists(ev.line); ok {
					if x != n {
						return nil, nil, protoErr("in IDLE after delivery %d: %q, want %d EXISTS", i+1, ev.line, n)
					}
					lat = append(lat, ms(ev.at.Sub(start)))
					break wait
				}
				if strings.HasPrefix(ev.line, "* BYE") || strings.HasPrefix(ev.line, tag+" ") {
					return nil, nil, protoErr("in IDLE: %q", ev.line)
				}
			case <-timeout:
				return nil, nil, protoErr("no EXISTS within a minute of delivery %d", i+1)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	io.WriteString(cl.conn, "DONE\r\n")
	for {
		ev := <-events
		if ev.err != nil {
			return nil, nil, fmt.Errorf("ending IDLE: %w", ev.err)
		}
		if rest, ok := strings.CutPrefix(ev.line, tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				return nil, nil, protoErr("IDLE: %q", ev.line)
			}
			break
		}
	}
	cl.logout()
	return lat, del, nil
}

// idleSessions opens up to k sessions as user, INBOX (n messages)
// selected, each in IDLE, 16 at a time. It stops at the first failure,
// returning the sessions it holds and the error (a *protocolError when
// the server answered wrongly rather than ran out of room).
func idleSessions(addr, user, pw string, n, k int) ([]net.Conn, error) {
	var (
		mu    sync.Mutex
		conns []net.Conn
		next  int
		first error
		wg    sync.WaitGroup
	)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if first != nil || next >= k {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				cl, err := loginSelect(addr, user, pw, n)
				if err == nil {
					if _, err = cl.idle(); err != nil {
						cl.conn.Close()
					}
				}
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
					}
				} else {
					cl.conn.SetDeadline(time.Time{})
					conns = append(conns, cl.conn)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return conns, first
}
