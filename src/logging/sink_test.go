package logging

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// within fails the test if f has not returned after d: a hang detector, not
// a speed assertion.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v: logging blocked", what, d)
	}
}

// lockedBuffer collects the sink's stderr notices, written from its
// reporter goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// readFrame reads one RFC 6587 octet-counted frame.
func readFrame(r *bufio.Reader) (string, error) {
	n, err := r.ReadString(' ')
	if err != nil {
		return "", err
	}
	size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
	if err != nil {
		return "", err
	}
	b := make([]byte, size)
	_, err = io.ReadFull(r, b)
	return string(b), err
}

func TestNewConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown target", Config{Target: "file"}, "unknown target"},
		{"unknown network", Config{Target: TargetSyslog, Network: "sctp", Address: "h:514"}, "udp, tcp or unix"},
		{"no port", Config{Target: TargetSyslog, Network: "tcp", Address: "loghost"}, "host:port"},
		{"facility", Config{Target: TargetSyslog, Network: "udp", Address: "h:514", Facility: 24}, "facility"},
		{"no journald", Config{Target: TargetJournald, journalEnabled: func() bool { return false }}, "journald is not available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.cfg)
			if err == nil {
				l.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	// The real check too, on a host without journald (like the test box).
	if !journal.Enabled() {
		if _, err := New(Config{Target: TargetJournald}); err == nil || !strings.Contains(err.Error(), "choose target") {
			t.Errorf("journald target without journald: err = %v", err)
		}
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in                string
		target, net, addr string
		wantErr           bool
	}{
		{"", "stderr", "", "", false},
		{"stderr", "stderr", "", "", false},
		{"journald", "journald", "", "", false},
		{"unix", "syslog", "unix", "/dev/log", false},
		{"unix:///run/x.sock", "syslog", "unix", "/run/x.sock", false},
		{"udp://loghost:5514", "syslog", "udp", "loghost:5514", false},
		{"tcp://10.0.0.5", "syslog", "tcp", "10.0.0.5:514", false},
		{"tcp://[fd00::5]", "syslog", "tcp", "[fd00::5]:514", false},
		{"http://x", "", "", "", true},
		{"loghost", "", "", "", true},
	}
	for _, tt := range tests {
		c, err := ParseTarget(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseTarget(%q) err = %v", tt.in, err)
			continue
		}
		if c.Target != tt.target || c.Network != tt.net || c.Address != tt.addr {
			t.Errorf("ParseTarget(%q) = %q %q %q", tt.in, c.Target, c.Network, c.Address)
		}
	}
}

func TestJournald(t *testing.T) {
	type sent struct {
		msg  string
		pri  journal.Priority
		vars map[string]string
	}
	var got []sent
	l, err := New(Config{Target: TargetJournald, AppName: "pop3d", journalEnabled: func() bool { return true },
		journalSend: func(msg string, pri journal.Priority, vars map[string]string) error {
			got = append(got, sent{msg, pri, vars})
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := WithTrace(context.Background(), "tr")
	l.WarnContext(ctx, "login failed", "user", "juan", slog.Group("net", "remote-ip", "10.1.2.3"))
	if len(got) != 1 {
		t.Fatalf("%d sends", len(got))
	}
	want := map[string]string{"SYSLOG_IDENTIFIER": "pop3d", "SYSLOG_FACILITY": "2", "TRACE": "tr",
		"CORREO_USER": "juan", "CORREO_NET_REMOTE_IP": "10.1.2.3"}
	if got[0].msg != "login failed" || got[0].pri != journal.PriWarning || len(got[0].vars) != len(want) {
		t.Fatalf("got %+v", got[0])
	}
	for k, v := range want {
		if got[0].vars[k] != v {
			t.Errorf("%s = %q, want %q", k, got[0].vars[k], v)
		}
	}
}

func TestUDPTarget(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	l, err := New(Config{Target: TargetSyslog, Network: "udp", Address: pc.LocalAddr().String(),
		AppName: "smtpd", Hostname: "mx1", now: fixedNow, pid: 4242})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := WithTrace(context.Background(), "abcdefghijklmnop")
	l.InfoContext(ctx, "queued", "msgid", "Q1", "size", 1234)
	l.Info("big", "v", strings.Repeat("€", 2000))

	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := `<22>1 2026-03-14T15:09:26.535897Z mx1 smtpd 4242 Q1 [correo@32473 trace="abcdefghijklmnop"] msg="queued" size=1234`
	if got := string(buf[:n]); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	n, _, err = pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n > maxUDP || !strings.HasPrefix(string(buf[:n]), "<22>1 ") {
		t.Errorf("big datagram: %d bytes, starts %.40q", n, buf[:n])
	}
}

// A loghost that was down when the previous datagram went out and is up
// now gets the next record: the refusal the socket reports belongs to the
// earlier datagram.
func TestUDPLoghostBackAfterRefusal(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	var stderr lockedBuffer
	l, err := New(Config{Target: TargetSyslog, Network: "udp", Address: addr,
		AppName: "pdeliveryd", Hostname: "store3", stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Info("while the loghost is down")
	// The ICMP port unreachable comes back over loopback at once; give it
	// time to be queued on the socket.
	time.Sleep(300 * time.Millisecond)
	pc, err = net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	defer pc.Close()
	l.Info("delivered", "rcpt", "zoe@correo.example")
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("the record after the loghost came back was lost: %v (stderr: %s)", err, stderr.String())
	}
	if !strings.Contains(string(buf[:n]), `msg="delivered"`) {
		t.Errorf("got %q", buf[:n])
	}
}

func TestUnixTarget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	l, err := New(Config{Target: TargetSyslog, Network: "unix", Address: path,
		AppName: "pdeliveryd", Hostname: "st1", now: fixedNow, pid: 77, Facility: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.ErrorContext(WithTrace(context.Background(), "t1"), "fsync failed", "path", "j/u/juan/new")

	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := "<131>" + fixedTime.Local().Format(time.Stamp) + ` pdeliveryd[77]: msg="fsync failed" trace=t1 path=j/u/juan/new`
	if got := string(buf[:n]); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestTCPFraming(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l, err := New(Config{Target: TargetSyslog, Network: "tcp", Address: ln.Addr().String(),
		AppName: "smtpd", Hostname: "mx1", now: fixedNow, pid: 4242})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("one\ntwo", "k", "v")
	l.Warn("three")
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, want := range []string{
		`<22>1 2026-03-14T15:09:26.535897Z mx1 smtpd 4242 - - msg="one\ntwo" k=v`,
		`<20>1 2026-03-14T15:09:26.535897Z mx1 smtpd 4242 - - msg="three"`,
	} {
		got, err := readFrame(r)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("got\n%s\nwant\n%s", got, want)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if l.Dropped() != 0 {
		t.Errorf("Dropped = %d on a healthy loghost", l.Dropped())
	}
}

// A loghost that is down: logging stays non-blocking, drops are counted and
// reported once, and delivery resumes when the loghost comes back.
func TestTCPLoghostDownThenBack(t *testing.T) {
	addr := closedPort(t)
	var stderr lockedBuffer
	l, err := New(Config{Target: TargetSyslog, Network: "tcp", Address: addr, AppName: "smtpd", stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	within(t, 30*time.Second, "logging 100000 records to a closed port", func() {
		for i := range 100_000 {
			l.Info("while down", "i", i)
		}
	})
	if l.Dropped() == 0 {
		t.Fatal("Dropped() = 0 with the loghost down")
	}
	waitFor(t, 10*time.Second, "drop notice on stderr", func() bool {
		return strings.Contains(stderr.String(), "dropping log records")
	})
	if n := strings.Count(stderr.String(), "\n"); n != 1 {
		t.Errorf("want exactly one drop notice, got %d lines:\n%s", n, stderr.String())
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			f, err := readFrame(r)
			if err != nil {
				return
			}
			if strings.Contains(f, `msg="back"`) {
				got <- f
				return
			}
		}
	}()
	// Backoff is capped at 5 s (+25% jitter); keep logging until one lands.
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case f := <-got:
			if !strings.Contains(f, " smtpd ") {
				t.Errorf("unexpected frame %q", f)
			}
			return
		case <-tick.C:
			l.Info("back")
		case <-deadline:
			t.Fatal("no record arrived after the loghost came back")
		}
	}
}

// A loghost that accepts and then never reads fills the socket buffers; the
// write deadline must free the writer, the queue must drop, Close must
// return, and once the peer reads again records flow.
func TestTCPSlowPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var conns []net.Conn
	reading := make(chan struct{})
	found := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				<-reading
				// Frames on a connection cut mid-write are torn, so
				// look for the marker in the raw stream.
				var tail []byte
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					tail = append(tail, buf[:n]...)
					if bytes.Contains(tail, []byte("recovered-marker")) {
						select {
						case found <- struct{}{}:
						default:
						}
						return
					}
					if len(tail) > 1<<20 {
						tail = tail[len(tail)-100:]
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()

	l, err := New(Config{Target: TargetSyslog, Network: "tcp", Address: ln.Addr().String(), stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 1024)
	within(t, 30*time.Second, "logging 100000 records to a peer that does not read", func() {
		for i := range 100_000 {
			l.Info("flood", "i", i, "pad", pad)
		}
	})
	if l.Dropped() == 0 {
		t.Fatal("Dropped() = 0 with a peer that never reads")
	}

	close(reading)
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-found:
			break loop
		case <-tick.C:
			l.Info("recovered-marker")
		case <-deadline:
			t.Fatal("no record arrived after the peer started reading")
		}
	}
	within(t, 30*time.Second, "Close", func() { l.Close() })
}

// Close must return within its bounded wait even with a full queue and a
// peer that never reads, and logging after Close must be harmless.
func TestCloseBoundedWithStuckPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	l, err := New(Config{Target: TargetSyslog, Network: "tcp", Address: ln.Addr().String(), QueueLen: 64, stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("y", 4096)
	for i := range 20_000 {
		l.Info("fill", "i", i, "pad", pad)
	}
	within(t, 30*time.Second, "Close", func() { l.Close() })
	before := l.Dropped()
	l.Info("after close")
	l.Close()
	if l.Dropped() != before+1 {
		t.Errorf("record logged after Close: Dropped %d → %d, want +1", before, l.Dropped())
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !ok() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
