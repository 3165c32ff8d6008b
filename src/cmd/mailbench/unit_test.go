package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/src/metrics"
	"correo/src/pwclient"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		args string
		err  string // "" = ok
		chk  func(*options) bool
	}{
		{"smtp", "", "", func(o *options) bool {
			return o.plan.Duration == 10*time.Second && o.plan.Concurrency == 8 && o.rcpts == 1 && o.pipelining && o.msgsPerSession == 10
		}},
		{"smtp", "-n 100 --rate 50 --concurrency 4 --warmup 1s --size 2k:60,16k:40 --rcpts 3 --pipelining=false", "", func(o *options) bool {
			return o.plan.N == 100 && o.plan.Duration == 0 && o.plan.Rate == 50 && o.plan.Warmup == time.Second &&
				len(o.sizes.sizes) == 2 && o.sizes.sizes[1] == 16<<10 && o.rcpts == 3 && !o.pipelining
		}},
		{"pop3", "--retr 5 --dele --target 127.0.0.1:110,127.0.0.2:110 --target ::1:110", "", func(o *options) bool {
			return o.retr == 5 && o.dele && len(o.targets) == 3
		}},
		{"imap", "--fetch 2 --idle 3s", "", func(o *options) bool { return o.fetch == 2 && o.idle == 3*time.Second }},
		{"passwd", "--auth --json", "", func(o *options) bool { return o.auth && o.json }},
		{"nss", "--libc --nss-socket /tmp/s", "", func(o *options) bool { return o.libc && o.nssSocket == "/tmp/s" }},
		{"pop3", "--size 4k", "flag provided but not defined", nil},
		{"smtp", "--retr 2", "flag provided but not defined", nil},
		{"smtp", "-n -5", "positive count", nil},
		{"smtp", "--concurrency 0", "at least one worker", nil},
		{"smtp", "--rate -1", "rate", nil},
		{"smtp", "--size 0", "message size", nil},
		{"smtp", "--size 4k:x", "weight", nil},
		{"smtp", "--rcpts 0", "recipients", nil},
		{"smtp", "--progress sometimes", "auto, always or never", nil},
		{"submission", "--ca x.pem --insecure-skip-verify", "not both", nil},
		{"smtp", "extra", "unexpected argument", nil},
		{"mix", "--mix smtp=5,pop3=2 --day 1h", "", func(o *options) bool { return o.mixSpec == "smtp=5,pop3=2" && o.day == time.Hour }},
	} {
		o, err := parseOptions(tc.cmd, strings.Fields(tc.args), io.Discard)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s %s: %v", tc.cmd, tc.args, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s %s: error %v, want one containing %q", tc.cmd, tc.args, err, tc.err)
		case tc.err == "" && !tc.chk(o):
			t.Errorf("%s %s: options %+v", tc.cmd, tc.args, o)
		}
	}
}

func TestParseMix(t *testing.T) {
	m, err := parseMix(defaultMix)
	if err != nil || len(m) != len(mixKinds) {
		t.Fatalf("default mix: %v %v", m, err)
	}
	if r := mixRate(1000, map[string]float64{"smtp": 20, "pop3": 4}, 240); r != 100 {
		t.Errorf("1000 users × 24 a day in 240 s: %g/s, want 100", r)
	}
	for _, bad := range []string{"smtp", "ftp=3", "smtp=-1", "smtp=0", "smtp=x"} {
		if _, err := parseMix(bad); err == nil {
			t.Errorf("mix %q accepted", bad)
		}
	}
}

func TestCheckTargets(t *testing.T) {
	network := netip.MustParsePrefix("10.77.0.0/24")
	dns := map[string][]string{
		"localhost":  {"127.0.0.1", "::1"},
		"mx1.test":   {"10.77.0.5"},
		"split.test": {"10.77.0.6", "192.0.2.1"}, // one inside, one outside: refused
		"far.test":   {"203.0.113.9"},
		"mapped":     {"::ffff:127.0.0.1"},
	}
	resolve := func(_ context.Context, host string) ([]netip.Addr, error) {
		a, ok := dns[host]
		if !ok {
			return nil, fmt.Errorf("no such host %s", host)
		}
		var out []netip.Addr
		for _, s := range a {
			out = append(out, netip.MustParseAddr(s))
		}
		return out, nil
	}
	for _, tc := range []struct {
		target string
		net    netip.Prefix
		remote bool
		want   string // address dialled, or "error: text"
	}{
		{"127.0.0.1:25", network, false, "127.0.0.1:25"},
		{"127.9.9.9:25", netip.Prefix{}, false, "127.9.9.9:25"},
		{"[::1]:110", network, false, "[::1]:110"},
		{"localhost:25", network, false, "127.0.0.1:25"},
		{"mapped:25", network, false, "127.0.0.1:25"},
		{"10.77.0.5:25", network, false, "10.77.0.5:25"},
		{"mx1.test:25", network, false, "10.77.0.5:25"},
		{"10.77.1.5:25", network, false, "error: outside loopback and the profile's network 10.77.0.0/24"},
		{"mx1.test:25", netip.Prefix{}, false, "error: outside loopback:"},
		{"split.test:25", network, false, "error: resolves to 192.0.2.1"},
		{"far.test:25", network, false, "error: --allow-remote"},
		{"far.test:25", network, true, "203.0.113.9:25"},
		{"8.8.8.8:53", network, true, "8.8.8.8:53"},
		{"nowhere.test:25", network, true, "error: resolving nowhere.test"},
		{"127.0.0.1", network, false, "error: want host:port"},
		{"127.0.0.1:0", network, false, "error: port"},
		{"127.0.0.1:http", network, false, "error: port"},
	} {
		got, err := checkTargets(context.Background(), []string{tc.target}, tc.net, tc.remote, resolve)
		if want, isErr := strings.CutPrefix(tc.want, "error: "); isErr {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s (network %v, remote %v): %v %v, want an error containing %q", tc.target, tc.net, tc.remote, got, err, want)
			}
			continue
		}
		if err != nil || len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s (network %v, remote %v): %v %v, want %s", tc.target, tc.net, tc.remote, got, err, tc.want)
		}
	}
}

func TestSizes(t *testing.T) {
	for s, want := range map[string]int{"1": 1, "4k": 4096, "2M": 2 << 20, " 10k ": 10240} {
		if n, err := parseSize(s); err != nil || n != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", s, n, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "1g", "65m", "k"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
	d, err := parseSizeDist("1k:3,8k:1")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	counts := map[int]int{}
	for i := 0; i < 4000; i++ {
		counts[d.pick(r)]++
	}
	if counts[1024] < 2700 || counts[1024] > 3300 || counts[8192] < 700 {
		t.Errorf("1k:3,8k:1 drew %v", counts)
	}
	for _, size := range []int{100, 1000, 4096, 100000} {
		b := makeBody("a@b", "c@d", size, 7)
		if len(b) != size && size > 200 {
			t.Errorf("body for %d bytes is %d", size, len(b))
		}
		for _, l := range strings.Split(string(b), "\r\n") {
			if strings.HasPrefix(l, ".") || strings.Contains(l, "\n") {
				t.Fatalf("body line %q needs stuffing or has a bare LF", l)
			}
		}
		if !strings.HasSuffix(string(b), "\r\n") {
			t.Errorf("body of %d bytes does not end with CRLF", size)
		}
	}
}

func TestReadUsersFile(t *testing.T) {
	us, err := readUsersFile(strings.NewReader("# users\nana\n\nbob:secret\n  cid:with:colon  \n"), "f", "dflt")
	if err != nil {
		t.Fatal(err)
	}
	want := []benchUser{{"ana", "dflt"}, {"bob", "secret"}, {"cid", "with:colon"}}
	if fmt.Sprint(us) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", us, want)
	}
	for _, bad := range []string{"", "# only a comment\n", "ana@x\n", "a b\n", ":pw\n"} {
		if _, err := readUsersFile(strings.NewReader(bad), "f", ""); err == nil {
			t.Errorf("users file %q accepted", bad)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&ReplyError{"RCPT", 550, "no such user"}, "5xx:550"},
		{fmt.Errorf("wrapped: %w", &ReplyError{"MAIL", 451, "later"}), "4xx:451"},
		{&ReplyError{"greeting", 250, ""}, "unexpected:250"},
		{&StatusError{"pop3", "PASS", "-ERR", "bad"}, "pop3:-ERR"},
		{&StatusError{"imap", "LOGIN", "NO", "bad"}, "imap:NO"},
		{&StatusError{"pop3", "PASS", "-ERR", "[IN-USE] maildrop locked"}, "pop3:-ERR [IN-USE]"},
		{&StatusError{"imap", "LOGIN", "NO", "[AUTHENTICATIONFAILED] no"}, "imap:NO [AUTHENTICATIONFAILED]"},
		{&StatusError{"pop3", "PASS", "-ERR", "[in use] x"}, "pop3:-ERR"},
		{&StatusError{"pop3", "PASS", "-ERR", "[" + strings.Repeat("A", 30) + "] x"}, "pop3:-ERR"},
		{&ProtocolError{"garbage"}, "protocol"},
		{os.ErrDeadlineExceeded, "timeout"},
		{context.DeadlineExceeded, "timeout"},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "connection:refused"},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, "connection:reset"},
		{io.EOF, "connection:closed"},
		{fmt.Errorf("user x: %w", pwclient.ErrNotFound), "passwd:not-found"},
		{fmt.Errorf("user x: %w", pwclient.ErrDenied), "passwd:denied"},
		{pwclient.ErrNoServer, "timeout"},
		{nssError("NOTFOUND"), "nss:NOTFOUND"},
		{errors.New("odd"), "other"},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in    string
		code  int
		lines int
		bad   bool
	}{
		{"250 ok\r\n", 250, 1, false},
		{"250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n", 250, 3, false},
		{"354\r\n", 354, 1, false},
		{"250-a\r\n251 b\r\n", 0, 0, true},
		{"25 ok\r\n", 0, 0, true},
		{"abc ok\r\n", 0, 0, true},
		{"250x\r\n", 0, 0, true},
		{"250-a\r\n", 0, 0, true}, // EOF inside a reply
		{strings.Repeat("x", 5000) + "\r\n", 0, 0, true},
	} {
		code, lines, err := readReply(bufio.NewReader(strings.NewReader(tc.in)))
		if (err != nil) != tc.bad || code != tc.code || len(lines) != tc.lines {
			t.Errorf("%q: %d %v %v", tc.in, code, lines, err)
		}
	}
}

func TestPOP3Parsing(t *testing.T) {
	for line, want := range map[string]bool{"+OK": true, "+OK 2 messages": true, "-ERR no": false, "-ERR": false} {
		if ok, _, err := parsePOPStatus(line); err != nil || ok != want {
			t.Errorf("%q: %v %v", line, ok, err)
		}
	}
	for _, bad := range []string{"", "OK", "+OKAY", "* OK"} {
		if _, _, err := parsePOPStatus(bad); err == nil {
			t.Errorf("%q accepted as a status", bad)
		}
	}
	var got []string
	n, err := readMultiline(bufio.NewReader(strings.NewReader("a\r\n..b\r\n\r\n.\r\nafter\r\n")), func(l string) error { got = append(got, l); return nil })
	if err != nil || fmt.Sprint(got) != "[a .b ]" || n != 9 {
		t.Errorf("multi-line: %q %d %v", got, n, err)
	}
	if _, err := readMultiline(bufio.NewReader(strings.NewReader("a\r\n")), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("unterminated multi-line: %v", err)
	}
	if n, sz, err := parseListLine("3 1200"); n != 3 || sz != 1200 || err != nil {
		t.Errorf("LIST line: %d %d %v", n, sz, err)
	}
	for _, bad := range []string{"3", "x 1", "0 5", "1 -2"} {
		if _, _, err := parseListLine(bad); err == nil {
			t.Errorf("LIST line %q accepted", bad)
		}
	}
}

func TestIMAPParsing(t *testing.T) {
	in := "* 3 EXISTS\r\n* 1 FETCH (RFC822.SIZE 5 BODY[] {5}\r\nhello)\r\nm1 OK done\r\n+ idling\r\nm2 NO [AUTHENTICATIONFAILED] bad\r\n* BYE bye\r\nm3 what\r\n"
	r := bufio.NewReader(strings.NewReader(in))
	var got []string
	for {
		resp, err := readIMAP(r)
		if err != nil {
			got = append(got, "err")
			break
		}
		got = append(got, fmt.Sprintf("%s/%s/%d", resp.Tag, resp.Status, resp.Bytes))
	}
	want := "[*//0 *//5 m1/OK/0 +//0 m2/NO/0 */BYE/0 err]"
	if fmt.Sprint(got) != want {
		t.Errorf("got %v, want %s", got, want)
	}
	if n, ok := exists("12 EXISTS"); !ok || n != 12 {
		t.Error("EXISTS not read")
	}
	if _, ok := exists("12 RECENT"); ok {
		t.Error("RECENT read as EXISTS")
	}
	for _, bad := range []string{"* x {99999999999}\r\n", "* x {-1}\r\n", "* x {5}\r\nab", "\r\n"} {
		if _, err := readIMAP(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if q := quoteIMAP(`a"b\c`); q != `"a\"b\\c"` {
		t.Errorf("quoted %s", q)
	}
}

func TestPlanArithmetic(t *testing.T) {
	caps := map[string]capacity{}
	for k, v := range builtinCapacity {
		caps[k] = capacity{v, "test"}
	}
	base := planInput{Users: 100000, PeakMsgs: 200, MsgsPerDay: 20, RcptsPerMsg: 1, OutboundShare: 0.1,
		SessionsDay: 0, IMAPShare: 0.5, SessionPeak: 1, MailboxMB: 100, DiskGB: 10000, Headroom: 1, Cap: caps}
	with := func(f func(*planInput)) planInput { in := base; f(&in); return in }
	for _, tc := range []struct {
		name string
		in   planInput
		want map[string]int
	}{
		{"small: every redundant role at its floor of 2", base,
			map[string]int{"mx": 2, "relay": 2, "storage": 1, "mailproxy": 2, "passwd": 2}},
		{"mx by rate: 2000/400 = 5", with(func(in *planInput) { in.PeakMsgs = 2000 }),
			map[string]int{"mx": 5, "relay": 2, "storage": 3}},
		{"headroom 0.5 doubles: 2000/(400×0.5) = 10", with(func(in *planInput) { in.PeakMsgs = 2000; in.Headroom = 0.5 }),
			map[string]int{"mx": 10, "storage": 5}},
		{"just over a host: 401/400 = 2, 801/800 = 2", with(func(in *planInput) { in.PeakMsgs = 401; in.RcptsPerMsg = 801.0 / 401 }),
			map[string]int{"mx": 2, "storage": 2}},
		{"relay: 4000 × 0.25 / 200 = 5", with(func(in *planInput) { in.PeakMsgs = 4000; in.OutboundShare = 0.25 }),
			map[string]int{"relay": 5, "mx": 10}},
		{"storage by disk: 1 M users × 500 MB / 10 000 GB = 50", with(func(in *planInput) { in.Users = 1000000; in.MailboxMB = 500 }),
			map[string]int{"storage": 50}},
		// 864 000 users × 100 sessions/day / 86 400 = 1000/s; ×3 peak = 3000/s,
		// half each: 1500/1000 + 1500/600 = 4 proxy hosts.
		{"mailproxy shares its time between POP3 and IMAP", with(func(in *planInput) { in.Users = 864000; in.SessionsDay = 100; in.SessionPeak = 3 }),
			map[string]int{"mailproxy": 4}},
		// lookups 200/50000 + auths (3000 + 20)/2000 = 1.514 → 2; at headroom 0.25: 6.056 → 7.
		{"passwd: lookups and auths add up", with(func(in *planInput) {
			in.Users = 864000
			in.SessionsDay = 100
			in.SessionPeak = 3
			in.Headroom = 0.25
		}), map[string]int{"passwd": 7}},
	} {
		got := map[string]int{}
		for _, r := range computePlan(tc.in) {
			got[r.Role] = r.Hosts
		}
		for role, n := range tc.want {
			if got[role] != n {
				t.Errorf("%s: %s needs %d hosts, want %d (all: %v)", tc.name, role, got[role], n, got)
			}
		}
	}
}

func TestPlanCommand(t *testing.T) {
	dir := t.TempDir()
	fig := dir + "/smtp.json"
	os.WriteFile(fig, []byte(`{"command":"smtp","mode":"closed-loop","kinds":{"smtp":{"ops":100,"ok":100,"rate_per_s":1000}}}`), 0o644)
	var out strings.Builder
	if err := runPlan([]string{"--users", "1000", "--peak-msgs-per-s", "3000", "--headroom", "0.5", "--figures", fig}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{"mx              6", "measured: " + fig, "built-in default, not measured here", "headroom 0.50"} {
		if !strings.Contains(s, want) {
			t.Errorf("plan output lacks %q:\n%s", want, s)
		}
	}
	// make bench's figures: the rows naming a capacity are taken, the
	// others (and unknown kinds) ignored.
	bench := dir + "/figures.jsonl"
	os.WriteFile(bench, []byte(`{"bench":"smtp-bench","figure":"SMTP in","unit":"msgs/s","correo":1500,"baseline":700,"capacity":"smtp"}
{"bench":"nss-bench","figure":"getpwnam","unit":"µs","correo":13}
{"bench":"x","figure":"y","correo":5,"capacity":"teleport"}
`), 0o644)
	out.Reset()
	if err := runPlan([]string{"--users", "1000", "--peak-msgs-per-s", "3000", "--headroom", "0.5", "--figures", bench}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "mx              4") || !strings.Contains(s, `smtp-bench: \"SMTP in\"`) && !strings.Contains(s, `smtp-bench: "SMTP in"`) {
		t.Errorf("plan from make bench's figures:\n%s", s)
	}
	os.WriteFile(fig, []byte(`not json`), 0o644)
	if err := runPlan([]string{"--users", "1", "--peak-msgs-per-s", "1", "--figures", fig}, io.Discard, io.Discard); err == nil {
		t.Error("a figures file that is not JSON accepted")
	}
	for _, args := range [][]string{{}, {"--users", "10"}, {"--users", "10", "--peak-msgs-per-s", "1", "--headroom", "2"}} {
		if err := runPlan(args, io.Discard, io.Discard); err == nil {
			t.Errorf("plan %v accepted", args)
		}
	}
}

// TestServerDeltas: counters and histograms that moved are listed with
// their change, rate and mean; gauges, other programs' metrics and
// series that did not move are not.
func TestServerDeltas(t *testing.T) {
	parse := func(s string) metrics.Families {
		f, err := metrics.Parse(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	before := map[string]metrics.Families{"h:1": parse(`# TYPE correo_lmtp_deliveries_total counter
correo_lmtp_deliveries_total{result="delivered"} 5
correo_lmtp_deliveries_total{result="tempfail"} 1
# TYPE correo_queue_messages gauge
correo_queue_messages 3
# TYPE correo_queue_attempt_duration_seconds histogram
correo_queue_attempt_duration_seconds_bucket{le="+Inf"} 2
correo_queue_attempt_duration_seconds_sum 0.2
correo_queue_attempt_duration_seconds_count 2
# TYPE go_goroutines gauge
go_goroutines 10
`)}
	after := map[string]metrics.Families{"h:1": parse(`# TYPE correo_lmtp_deliveries_total counter
correo_lmtp_deliveries_total{result="delivered"} 25
correo_lmtp_deliveries_total{result="tempfail"} 1
# TYPE correo_queue_messages gauge
correo_queue_messages 7
# TYPE correo_queue_attempt_duration_seconds histogram
correo_queue_attempt_duration_seconds_bucket{le="+Inf"} 6
correo_queue_attempt_duration_seconds_sum 0.6
correo_queue_attempt_duration_seconds_count 6
# TYPE correo_new_total counter
correo_new_total 3
`), "h:2": parse("# TYPE correo_x_total counter\ncorreo_x_total 1\n")}
	got := serverDeltas(before, after, 2*time.Second)
	want := []ServerFigure{
		{Endpoint: "h:1", Series: `correo_lmtp_deliveries_total{result="delivered"}`, Delta: 20, PerS: 10},
		{Endpoint: "h:1", Series: "correo_new_total", Delta: 3, PerS: 1.5},
		{Endpoint: "h:1", Series: "correo_queue_attempt_duration_seconds", Delta: 4, PerS: 2, Mean: 0.1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		g := got[i]
		if g.Endpoint != want[i].Endpoint || g.Series != want[i].Series || g.Delta != want[i].Delta || g.PerS != want[i].PerS ||
			math.Abs(g.Mean-want[i].Mean) > 1e-9 {
			t.Errorf("figure %d: %+v, want %+v", i, g, want[i])
		}
	}
}
