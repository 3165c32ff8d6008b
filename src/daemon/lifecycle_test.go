package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/src/cluster"
)

// notifySocket stands in for systemd's notify socket: every datagram the
// daemon sends arrives on the returned channel.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(clustertest.ShortTempDir(t, "notify-"), "n.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan string, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

// waitNotify waits for a notify message containing want and returns it;
// the messages before it are skipped.
func waitNotify(t *testing.T, ch <-chan string, want string) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("notify socket closed before %q", want)
			}
			if strings.Contains(m, want) {
				return m
			}
		case <-timeout:
			t.Fatalf("no notify message with %q", want)
		}
	}
}

// fakeServer holds one session until release is closed.
type fakeServer struct {
	ln          net.Listener
	release     chan struct{}
	shutdownErr atomic.Value // error from the last Shutdown, wrapped
	closed      atomic.Bool
}

type errBox struct{ err error }

func newFake(t *testing.T) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &fakeServer{ln: ln, release: make(chan struct{})}
}

func (f *fakeServer) Serve() error {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return err
		}
		c.Close()
	}
}

func (f *fakeServer) Shutdown(ctx context.Context) error {
	f.ln.Close()
	var err error
	select {
	case <-f.release:
	case <-ctx.Done():
		err = ctx.Err()
	}
	f.shutdownErr.Store(errBox{err})
	return err
}

func (f *fakeServer) Close() error { f.closed.Store(true); return nil }

func (f *fakeServer) Sessions() int {
	select {
	case <-f.release:
		return 0
	default:
		return 1
	}
}

// startEnv starts a daemon environment on a one-host profile.
func startEnv(t *testing.T, spec clustertest.Spec) (*Env, string) {
	t.Helper()
	spec.Domains = []string{"t.example"}
	if spec.LogLevel == "" {
		spec.LogLevel = "info"
	}
	spec.Hosts = []clustertest.HostSpec{{Name: "a", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}, DataDir: "/m"}}
	path := clustertest.NewCluster(t, spec).ProfilePath
	env, err := NewFlags("nssd").Start([]string{"-profile", path, "-state", t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	return env, path
}

// TestRunNotifyAndStop: READY, STATUS, WATCHDOG while serving; STOPPING
// and the sessions left while stopping; Shutdown within the grace period,
// then Close, whichever way the sessions end.
func TestRunNotifyAndStop(t *testing.T) {
	tests := []struct {
		name  string
		grace string
		// end ends the sessions (or not) once the stop has begun.
		end     func(env *Env, f *fakeServer)
		wantErr error // what Shutdown's ctx said; nil: the sessions ended in time
	}{
		{"sessions end within the grace period", "10m", func(_ *Env, f *fakeServer) { close(f.release) }, nil},
		{"grace period runs out", "1s", func(*Env, *fakeServer) {}, context.DeadlineExceeded},
		{"second SIGTERM cuts the grace short", "10m", func(env *Env, _ *fakeServer) { env.sigs <- syscall.SIGTERM }, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			notes := notifySocket(t)
			// systemd's WatchdogSec=200ms.
			t.Setenv("WATCHDOG_USEC", "200000")
			t.Setenv("WATCHDOG_PID", "")
			env, _ := startEnv(t, clustertest.Spec{ShutdownGrace: tt.grace})
			f := newFake(t)
			// A socket systemd passed that no Listen claims: Run closes it.
			unused, err := os.CreateTemp(t.TempDir(), "sock")
			if err != nil {
				t.Fatal(err)
			}
			env.passed = map[string][]*os.File{"bogus": {unused}}
			env.Go("fake", f.Serve)
			done := make(chan error, 1)
			go func() { done <- env.Run(f) }()

			if m := waitNotify(t, notes, "READY=1"); !strings.Contains(m, "STATUS=serving") {
				t.Errorf("READY without STATUS=serving: %q", m)
			}
			waitNotify(t, notes, "WATCHDOG=1")
			waitNotify(t, notes, "WATCHDOG=1") // and again: it repeats
			if err := unused.Close(); !errors.Is(err, os.ErrClosed) {
				t.Errorf("an unclaimed passed socket was left open (Close: %v)", err)
			}

			env.sigs <- syscall.SIGTERM
			waitNotify(t, notes, "STOPPING=1")
			waitNotify(t, notes, "STATUS=stopping: 1 sessions left")
			if env.Ctx.Err() == nil {
				t.Error("Env.Ctx not cancelled when the stop began")
			}
			tt.end(env, f)
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run after SIGTERM: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return")
			}
			got, _ := f.shutdownErr.Load().(errBox)
			if !errors.Is(got.err, tt.wantErr) || (tt.wantErr == nil) != (got.err == nil) {
				t.Errorf("Shutdown returned %v, want %v", got.err, tt.wantErr)
			}
			if !f.closed.Load() {
				t.Error("Close not called after Shutdown")
			}
		})
	}
}

// TestRunLoopFailure: a serve loop that ends on its own stops the daemon
// with its error, after a graceful stop.
func TestRunLoopFailure(t *testing.T) {
	env, _ := startEnv(t, clustertest.Spec{})
	f := newFake(t)
	close(f.release)
	env.Go("broken", func() error { return errors.New("accept: too many open files") })
	err := env.Run(f)
	if err == nil || !strings.Contains(err.Error(), "serving broken: accept: too many open files") {
		t.Fatalf("Run = %v", err)
	}
	if !f.closed.Load() {
		t.Error("servers not closed after a serve loop failed")
	}
}

// TestReload: SIGHUP applies a new log level and runs the reload hooks;
// a profile that does not load is refused and everything kept.
func TestReload(t *testing.T) {
	notes := notifySocket(t)
	env, path := startEnv(t, clustertest.Spec{LogLevel: "info"})
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var hooks atomic.Int32
	env.OnReload(func(p *cluster.Profile, h *cluster.Host) error {
		if h.Name != "a" || p.Cluster.Log.Level == "" {
			t.Errorf("reload hook got host %s, level %q", h.Name, p.Cluster.Log.Level)
		}
		hooks.Add(1)
		return nil
	})
	f := newFake(t)
	close(f.release)
	env.Go("fake", f.Serve)
	done := make(chan error, 1)
	go func() { done <- env.Run(f) }()
	waitNotify(t, notes, "READY=1")

	steps := []struct {
		name      string
		profile   string
		wantLevel slog.Level
		wantHooks int32
		wantNote  string
	}{
		{"level to debug", strings.Replace(string(orig), `level = "info"`, `level = "debug"`, 1), slog.LevelDebug, 1, "READY=1"},
		{"broken profile refused", string(orig) + "\n[cluster.bogus]\nx = 1\n", slog.LevelDebug, 1, "reload refused"},
		{"host gone refused", strings.Replace(string(orig), `name = "a"`, `name = "b"`, 1), slog.LevelDebug, 1, "reload refused"},
		{"level back to info", string(orig), slog.LevelInfo, 2, "READY=1"},
	}
	for _, st := range steps {
		if err := os.WriteFile(path, []byte(st.profile), 0o644); err != nil {
			t.Fatal(err)
		}
		env.sigs <- syscall.SIGHUP
		if m := waitNotify(t, notes, "RELOADING=1"); !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[0-9]+\n$`).MatchString(m) {
			t.Errorf("%s: reload notification %q, want RELOADING=1 and MONOTONIC_USEC=<µs>", st.name, m)
		}
		waitNotify(t, notes, st.wantNote)
		if st.wantNote != "READY=1" {
			waitNotify(t, notes, "READY=1")
		}
		if got := env.Log.Level(); got != st.wantLevel {
			t.Errorf("%s: level %v, want %v", st.name, got, st.wantLevel)
		}
		if got := hooks.Load(); got != st.wantHooks {
			t.Errorf("%s: reload hooks ran %d times, want %d", st.name, got, st.wantHooks)
		}
	}
	env.sigs <- syscall.SIGTERM
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRestartOnly names the settings a reload cannot apply, and not the
// log level, which it does.
func TestRestartOnly(t *testing.T) {
	a, err := cluster.Load("../../hosts/example.toml", cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := cluster.Load("../../hosts/example.toml", cluster.Options{SkipFiles: true})
	b.Cluster.Log.Level = "debug"
	if got := restartOnly(a, b); len(got) != 0 {
		t.Errorf("log level alone: %v", got)
	}
	b.Cluster.ShutdownGrace = cluster.Duration(time.Minute)
	if got := strings.Join(restartOnly(a, b), " "); got != "cluster.shutdown_grace_ms" {
		t.Errorf("shutdown_grace changed: %q", got)
	}
}
