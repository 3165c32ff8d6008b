// Package daemon is the one lifecycle every correo daemon shares, so that
// a main is wiring only:
//
//	env, err := daemon.NewFlags("pop3d").Start(args, cluster.RoleStorage)
//	ln, err := env.Listen(cluster.SvcPOP3Backend) // systemd's socket, or listen
//	srv, err := pop3.New(...)
//	env.Go("pop3", func() error { return srv.Serve(ln) })
//	return env.Run(srv)
//
// Start parses -profile/-host/-state, loads the profile, builds the logger
// it asks for and takes the sockets systemd passed (socket activation,
// matched by FileDescriptorName= = the service name). Run drops root
// (cluster.run_as), sends sd_notify READY=1 and STATUS=, pings the
// watchdog when the unit asks, reloads on SIGHUP (log level, TLS
// certificates) and on SIGTERM stops the servers as net/http's Shutdown
// and Close do, within cluster.shutdown_grace.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"

	"correo/src/cluster"
	"correo/src/logging"
)

// Env is what a daemon knows after start-up.
type Env struct {
	Program  string
	Profile  *cluster.Profile
	Host     *cluster.Host
	StateDir string
	Log      *logging.Logger
	// Ctx is cancelled when the daemon starts stopping (SIGINT, SIGTERM,
	// or a failed serve loop): background work started with it ends.
	Ctx    context.Context
	cancel context.CancelFunc
	// sigs receives SIGINT, SIGTERM and SIGHUP from Start on, so a signal
	// that arrives while the daemon is still starting is acted on by Run.
	sigs chan os.Signal
	// passed holds the sockets systemd passed, by name, until a Listen
	// claims them; Run closes the rest.
	passed      map[string][]*os.File
	profilePath string
	loops       sync.WaitGroup
	loopDone    chan loopResult
	reloaders   []func(*cluster.Profile, *cluster.Host) error
	profile     *os.File
	// last are servers Run stops after the main's (the metrics server).
	last []Server
}

// Flags are the flags every daemon accepts; a daemon may add its own to
// FlagSet before calling Parse.
type Flags struct {
	FlagSet *flag.FlagSet
	Profile string
	Host    string
	State   string
}

// NewFlags defines the common flags for program.
func NewFlags(program string) *Flags {
	f := &Flags{FlagSet: flag.NewFlagSet(program, flag.ContinueOnError)}
	f.FlagSet.StringVar(&f.Profile, "profile", "", "host profile (default: the embedded hosts/dev.toml)")
	f.FlagSet.StringVar(&f.Host, "host", "", "which host of the profile this is (default: the only host, if there is one)")
	f.FlagSet.StringVar(&f.State, "state", "", "state directory (default: /var/lib/correo/<program>)")
	return f
}

// Start loads the profile, finds this host, checks it has one of the roles
// the program serves, and builds the logger. Errors are meant for stderr
// and exit status 1 (EX_CONFIG would be kinder, but supervisors treat any
// non-zero exit the same).
func (f *Flags) Start(args []string, roles ...cluster.Role) (*Env, error) {
	program := f.FlagSet.Name()
	if err := f.FlagSet.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &UsageError{err}
	}
	p, err := cluster.LoadFlag(f.Profile, cluster.Options{})
	if err != nil {
		return nil, err
	}
	hostName := f.Host
	if hostName == "" {
		if len(p.Hosts) != 1 {
			return nil, fmt.Errorf("%s: the profile has %d hosts: say which one this is with -host", p.Source, len(p.Hosts))
		}
		hostName = p.Hosts[0].Name
	}
	h, err := p.Host(hostName)
	if err != nil {
		return nil, err
	}
	if len(roles) > 0 {
		ok := false
		for _, r := range roles {
			ok = ok || h.HasRole(r)
		}
		if !ok {
			return nil, fmt.Errorf("%s: host %s has roles %v; %s serves %v", p.Source, h.Name, h.Roles, program, roles)
		}
	}
	state := f.State
	if state == "" {
		state = "/var/lib/correo/" + program
	}
	if err := os.MkdirAll(state, 0o750); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	lcfg, err := LogConfig(p, h.Name, program)
	if err != nil {
		return nil, err
	}
	lg, err := logging.New(lcfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	env := &Env{Program: program, Profile: p, Host: h, StateDir: state, Log: lg, Ctx: ctx, cancel: cancel,
		sigs: sigs, passed: passedSockets(), profilePath: f.Profile, loopDone: make(chan loopResult, 64)}
	// CORREO_CPUPROFILE=DIR writes DIR/<program>-<host>.pprof until the
	// daemon stops: how a benchmark finds where a daemon spends its time.
	if dir := os.Getenv("CORREO_CPUPROFILE"); dir != "" {
		if f, err := os.Create(filepath.Join(dir, program+"-"+h.Name+".pprof")); err == nil && pprof.StartCPUProfile(f) == nil {
			env.profile = f
		}
	}
	return env, nil
}

// LogConfig turns the profile's [cluster.log] into a logging.Config for
// one program on one host: syslog over the network goes to the loghost.
func LogConfig(p *cluster.Profile, host, program string) (logging.Config, error) {
	l := p.Cluster.Log
	cfg := logging.Config{Target: l.Target, AppName: program, Hostname: host}
	if err := cfg.Level.UnmarshalText([]byte(strings.ToUpper(l.Level))); err != nil {
		return cfg, fmt.Errorf("%s: cluster.log.level %q: %v", p.Source, l.Level, err)
	}
	if l.Target == logging.TargetSyslog {
		cfg.Network = l.Network
		if l.Network != "unix" {
			eps := p.Endpoints(cluster.SvcSyslog)
			if len(eps) == 0 {
				return cfg, fmt.Errorf("%s: logging to syslog over %s needs a loghost", p.Source, l.Network)
			}
			cfg.Address = eps[0].Addr.String()
		}
	}
	return cfg, nil
}

// Close flushes the logger and releases the signal handler and any
// socket systemd passed that was not used.
func (e *Env) Close() {
	if e.profile != nil {
		pprof.StopCPUProfile()
		e.profile.Close()
	}
	signal.Stop(e.sigs)
	e.cancel()
	// A main that failed before Run leaves the metrics server serving.
	for _, s := range e.last {
		s.Close()
	}
	for _, files := range e.passed {
		for _, f := range files {
			f.Close()
		}
	}
	e.passed = nil
	e.Log.Close()
}

// Main runs a daemon's body and turns its error into an exit status: 0 on
// clean shutdown, 2 for bad flags, 1 otherwise, with one line on stderr.
func Main(program string, run func(args []string, stderr io.Writer) error) {
	err := run(os.Args[1:], os.Stderr)
	switch {
	case err == nil:
		os.Exit(0)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", program, err)
		var ue *UsageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// GCPercent sets the garbage collector's target (debug.SetGCPercent)
// unless the operator set GOGC. The mail-path daemons keep a small live
// heap and make garbage with every message; the default of 100 had the
// collector take about 5% of smtpd's and pdeliveryd's CPU under load, for
// a few megabytes saved. passwdd, whose live heap is the user directory,
// keeps the default.
func GCPercent(percent int) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
}

// UsageError is a bad command line: exit status 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }
