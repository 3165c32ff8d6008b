package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"correo/src/cluster"
	"correo/src/tlsconf"
)

// Server is a daemon's server value with net/http's lifecycle: Shutdown
// stops accepting and lets what is in progress finish until ctx is done;
// Close drops whatever is left. Serving is started by the main with Go.
type Server interface {
	Shutdown(ctx context.Context) error
	Close() error
}

// Sessions is implemented by servers that can say how many sessions (or
// messages) they still hold; Run reports the sum in STATUS= while it
// waits for them to finish.
type Sessions interface {
	Sessions() int
}

// StopFunc makes a graceful stop with nothing to drop afterwards a
// Server, e.g. smtpd's queue, whose workers finish or give up by ctx.
type StopFunc func(ctx context.Context) error

// Shutdown calls f.
func (f StopFunc) Shutdown(ctx context.Context) error { return f(ctx) }

// Close does nothing: Shutdown has already stopped everything.
func (f StopFunc) Close() error { return nil }

// loopResult is a serve loop that returned.
type loopResult struct {
	name string
	err  error
}

// Go runs one serve loop (a server on a listener) until Run stops the
// daemon. A loop that returns before that is fatal: its listener failed,
// and a daemon that silently stopped serving one port is worse than one
// the service manager restarts.
func (e *Env) Go(name string, serve func() error) {
	e.loops.Add(1)
	go func() {
		defer e.loops.Done()
		err := serve()
		select {
		case e.loopDone <- loopResult{name, err}:
		default: // Run has already seen a failure, or returned
		}
	}()
}

// OnReload registers what a SIGHUP should reload beyond the log level,
// given the newly loaded and validated profile and this host in it. An
// error is logged; the daemon keeps running with what it had.
func (e *Env) OnReload(f func(p *cluster.Profile, h *cluster.Host) error) {
	e.reloaders = append(e.reloaders, f)
}

// TLS loads the host's certificate ([host.tls]) and reloads it on SIGHUP,
// so a renewed certificate needs no restart. It returns
// tlsconf.ErrNoTLS when the host has no [host.tls].
func (e *Env) TLS() (*tls.Config, error) {
	certs, err := tlsconf.Load(e.Profile, e.Host)
	if err != nil {
		return nil, err
	}
	e.OnReload(func(*cluster.Profile, *cluster.Host) error {
		if err := certs.Reload(); err != nil {
			return fmt.Errorf("%w; the certificate loaded before stays in use", err)
		}
		leaf := certs.Leaf()
		e.Log.Info("TLS certificate reloaded", "subject", leaf.Subject.CommonName, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		return nil
	})
	return certs.Config(), nil
}

// notify sends one sd_notify message; without NOTIFY_SOCKET it does
// nothing. A failure is logged at debug level only: a supervisor that
// stopped listening is no reason to stop serving.
func (e *Env) notify(state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		e.Log.Debug("sd_notify failed", "state", state, "err", err)
	}
}

// Run serves until SIGTERM or SIGINT (or a serve loop fails), then stops
// the servers gracefully in the order given. Before serving it gives back
// sockets systemd passed that nothing claimed, drops root
// (cluster.run_as) and tells the supervisor READY=1; while serving it
// pings the watchdog when systemd asks for one and reloads on SIGHUP.
//
// Stopping: STOPPING=1, then every server's Shutdown with one deadline of
// cluster.shutdown_grace, then every Close. A second SIGTERM cuts the
// grace short. Run returns nil after a requested stop, or the error of
// the serve loop that failed.
func (e *Env) Run(servers ...Server) error {
	servers = append(servers, e.last...)
	for name, files := range e.passed {
		e.Log.Warn("systemd passed a socket this daemon does not use; closing it (check the unit's socket names)", "name", name, "count", len(files))
		for _, f := range files {
			f.Close()
		}
	}
	e.passed = nil
	// Every socket is bound: root is no longer needed.
	if err := e.DropPrivileges(); err != nil {
		e.stopAll(servers)
		return err
	}
	e.notify("READY=1\nSTATUS=serving")
	e.Log.Info("ready", "host", e.Host.Name)

	stopWatchdog := e.watchdog()
	defer stopWatchdog()

	var runErr error
wait:
	for {
		select {
		case sig := <-e.sigs:
			if sig == syscall.SIGHUP {
				e.reload()
				continue
			}
			e.Log.Info("stopping", "signal", sig.String(), "grace", e.Profile.Cluster.ShutdownGrace.Std().String())
			break wait
		case r := <-e.loopDone:
			if r.err == nil || errors.Is(r.err, net.ErrClosed) {
				r.err = errors.New("the listener closed unexpectedly")
			}
			runErr = fmt.Errorf("serving %s: %w", r.name, r.err)
			e.Log.Error("a serve loop failed: stopping the daemon", "listener", r.name, "err", r.err)
			break wait
		}
	}
	e.stopAll(servers)
	return runErr
}

// stopAll is the graceful stop: Shutdown within the grace period, then
// Close, then wait (briefly) for the serve loops.
func (e *Env) stopAll(servers []Server) {
	e.cancel()
	e.notify("STOPPING=1\nSTATUS=stopping")
	ctx, cancel := context.WithTimeout(context.Background(), e.Profile.Cluster.ShutdownGrace.Std())
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case sig := <-e.sigs:
				if sig != syscall.SIGHUP {
					e.Log.Warn("second stop signal: dropping the sessions left", "signal", sig.String())
					cancel()
				}
			case <-tick.C:
				if n, ok := sessions(servers); ok {
					e.notify(fmt.Sprintf("STATUS=stopping: %d sessions left", n))
				}
			}
		}
	}()
	if n, ok := sessions(servers); ok {
		e.notify(fmt.Sprintf("STATUS=stopping: %d sessions left", n))
	}
	for _, s := range servers {
		if err := s.Shutdown(ctx); err != nil {
			e.Log.Warn("graceful stop incomplete: closing what is left", "server", fmt.Sprintf("%T", s), "err", err)
		}
	}
	for _, s := range servers {
		if err := s.Close(); err != nil {
			e.Log.Warn("closing", "server", fmt.Sprintf("%T", s), "err", err)
		}
	}
	// Loops end once their servers are closed; one that does not (a
	// server that ignores Close) must not keep the process alive.
	loops := make(chan struct{})
	go func() { e.loops.Wait(); close(loops) }()
	select {
	case <-loops:
	case <-time.After(5 * time.Second):
		e.Log.Warn("a serve loop did not return after Close")
	}
	e.Log.Info("stopped")
}

func sessions(servers []Server) (int, bool) {
	n, any := 0, false
	for _, s := range servers {
		if c, ok := s.(Sessions); ok {
			n += c.Sessions()
			any = true
		}
	}
	return n, any
}

// watchdog pings systemd at half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
// advises, when the unit sets WatchdogSec=. The pings come from the same
// process as the servers, so a hung process stops them.
func (e *Env) watchdog() (stop func()) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		e.Log.Warn("ignoring the watchdog settings systemd passed", "err", err)
	}
	if err != nil || interval <= 0 {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval / 2)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				e.notify("WATCHDOG=1")
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

// reload rereads the profile file and applies what can change live: the
// log level and what OnReload registered (TLS certificates). A profile
// that does not load is refused and the one in force kept. Other settings
// need a restart; reload names those that changed.
func (e *Env) reload() {
	// systemd (Type=notify-reload, v253+) wants the time of the reload
	// with RELOADING=1; SdNotifyMonotonicUsec gives the whole
	// "MONOTONIC_USEC=...\n" line.
	e.notify("RELOADING=1\n" + sd.SdNotifyMonotonicUsec())
	defer e.notify("READY=1\nSTATUS=serving")
	p, err := cluster.LoadFlag(e.profilePath, cluster.Options{})
	var h *cluster.Host
	if err == nil {
		h, err = p.Host(e.Host.Name)
	}
	if err != nil {
		e.Log.Error("SIGHUP: the profile does not load; keeping the one in force (fix it and send SIGHUP again)",
			"profile", e.Profile.Source, "err", oneLine(err))
		e.notify("STATUS=serving (reload refused: the profile does not load)")
		return
	}
	lcfg, err := LogConfig(p, e.Host.Name, e.Program)
	if err != nil {
		e.Log.Error("SIGHUP: keeping the log level", "err", err)
	} else if old := e.Log.Level(); old != lcfg.Level {
		e.Log.SetLevel(lcfg.Level)
		e.Log.Info("log level changed", "from", old.String(), "to", lcfg.Level.String())
	}
	for _, f := range e.reloaders {
		if err := f(p, h); err != nil {
			e.Log.Error("SIGHUP: reload failed", "err", err)
		}
	}
	if changed := restartOnly(e.Profile, p); len(changed) > 0 {
		e.Log.Warn("the profile changed settings that only a restart applies", "settings", strings.Join(changed, ", "))
	}
	e.Log.Info("reloaded", "profile", p.Source, "level", e.Log.Level().String())
}

// restartOnly lists the settings (as paths in the settings document)
// that differ between two profiles, leaving out what reload applies.
func restartOnly(old, new *cluster.Profile) []string {
	a, b := old.Settings(), new.Settings()
	a.Cluster.Log.Level, b.Cluster.Log.Level = "", ""
	var am, bm any
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	json.Unmarshal(ja, &am)
	json.Unmarshal(jb, &bm)
	var out []string
	diffPaths("", am, bm, &out)
	sort.Strings(out)
	if len(out) > 10 {
		out = append(out[:10], fmt.Sprintf("and %d more", len(out)-10))
	}
	return out
}

func diffPaths(path string, a, b any, out *[]string) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok {
		if !reflect.DeepEqual(a, b) {
			*out = append(*out, path)
		}
		return
	}
	keys := map[string]bool{}
	for k := range am {
		keys[k] = true
	}
	for k := range bm {
		keys[k] = true
	}
	for k := range keys {
		p := k
		if path != "" {
			p = path + "." + k
		}
		diffPaths(p, am[k], bm[k], out)
	}
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// Immediate makes a Server of a server whose requests are too short to
// wait for (nssd answers one lookup per request): Shutdown closes it.
func Immediate(c io.Closer) Server { return immediate{c} }

type immediate struct{ c io.Closer }

func (i immediate) Shutdown(context.Context) error { return i.c.Close() }
func (i immediate) Close() error                   { return nil }

// Names of the sockets systemd may pass that are not a profile service
// (those are named after the service: "smtp", "lmtp", "pop3", "passwd"...).
const (
	// SocketNSS is nssd's Unix socket (cluster.nss.socket).
	SocketNSS = "nss_socket"
	// SocketLMTPUnix is pdeliveryd's Unix socket for local MDAs.
	SocketLMTPUnix = "lmtp_socket"
	// SocketSocketmap is nssd's Postfix socketmap socket
	// (cluster.nss.socketmap).
	SocketSocketmap = "socketmap_socket"
)
