package logging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// Values of Config.Target.
const (
	TargetStderr   = "stderr"
	TargetJournald = "journald"
	TargetSyslog   = "syslog"
)

// DefaultSocket is the local syslog socket used by Network "unix".
const DefaultSocket = "/dev/log"

// Config says where a daemon's log goes. The zero value logs Info and above
// to stderr.
type Config struct {
	Target   string     // "stderr" (default) | "journald" | "syslog"
	Network  string     // for syslog: "udp" | "tcp" | "unix" (local datagram socket)
	Address  string     // host:port for udp/tcp; socket path for unix (default "/dev/log")
	Level    slog.Level // minimum level logged
	AppName  string     // RFC 5424 APP-NAME / syslog tag; default: program name
	Hostname string     // RFC 5424 HOSTNAME, the profile's host name; default os.Hostname
	Facility int        // syslog facility 1..23; 0 means the default, 2 (mail); kern (0) cannot be chosen
	QueueLen int        // records queued in front of a network sink; default 4096

	// Test hooks.
	now            func() time.Time
	pid            int
	stderr         io.Writer
	journalSend    journalSender
	journalEnabled func() bool
}

// Logger is a *slog.Logger plus the lifecycle of its sink.
type Logger struct {
	*slog.Logger
	net     *netSink
	journal *journalSink
	// level is shared by every handler derived from this logger, so a
	// daemon can change its level on SIGHUP without rebuilding loggers it
	// has already handed to its packages.
	level *slog.LevelVar
}

// SetLevel changes the minimum level of this logger and of every logger
// derived from it (With, WithGroup).
func (l *Logger) SetLevel(lv slog.Level) { l.level.Set(lv) }

// Level is the minimum level currently logged.
func (l *Logger) Level() slog.Level { return l.level.Level() }

// Slog returns the underlying *slog.Logger, e.g. for slog.SetDefault.
func (l *Logger) Slog() *slog.Logger { return l.Logger }

// Dropped reports how many records were lost: queue full, loghost
// unreachable, journald send failures, or logged after Close.
func (l *Logger) Dropped() uint64 {
	switch {
	case l.net != nil:
		return l.net.dropped.Load()
	case l.journal != nil:
		return l.journal.dropped.Load()
	}
	return 0
}

// Close flushes queued records for at most about a second, then stops the
// writer. It returns an error only if queued records could not be sent in
// that time. Logging after Close is safe; such records are dropped.
func (l *Logger) Close() error {
	if l.net != nil {
		return l.net.close()
	}
	return nil
}

// New builds the logger described by cfg. It fails only on a configuration
// error (or journald requested where there is none); an unreachable loghost
// is not an error, so a daemon starts even while the loghost is down.
func New(cfg Config) (*Logger, error) {
	if cfg.Target == "" {
		cfg.Target = TargetStderr
	}
	if cfg.AppName == "" {
		cfg.AppName = filepath.Base(os.Args[0])
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.Facility == 0 {
		cfg.Facility = 2
	}
	if cfg.Facility < 0 || cfg.Facility > 23 {
		return nil, fmt.Errorf("logging: syslog facility %d out of range 1..23 (0 selects the default, mail)", cfg.Facility)
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 4096
	}
	if cfg.pid == 0 {
		cfg.pid = os.Getpid()
	}
	if cfg.stderr == nil {
		cfg.stderr = os.Stderr
	}
	lv := new(slog.LevelVar)
	lv.Set(cfg.Level)
	h := &handler{level: lv, now: cfg.now}
	l := &Logger{level: lv}
	switch cfg.Target {
	case TargetStderr:
		h.out = &textSink{w: cfg.stderr}
	case TargetJournald:
		enabled := journal.Enabled
		if cfg.journalEnabled != nil {
			enabled = cfg.journalEnabled
		}
		if !enabled() {
			return nil, errors.New(`logging: journald is not available on this host (no /run/systemd/journal/socket); choose target "stderr" or "syslog"`)
		}
		send := journalSender(journal.Send)
		if cfg.journalSend != nil {
			send = cfg.journalSend
		}
		l.journal = &journalSink{send: send, ident: cfg.AppName, facility: cfg.Facility}
		h.out = l.journal
	case TargetSyslog:
		hdr := newHeader(cfg.Facility, cfg.Hostname, cfg.AppName, cfg.pid)
		var network string
		var format func(*event) []byte
		switch cfg.Network {
		case "udp":
			network = "udp"
			format = func(ev *event) []byte { return format5424(&hdr, ev, maxUDP) }
		case "tcp":
			network = "tcp"
			format = func(ev *event) []byte { return frameOctet(format5424(&hdr, ev, maxStream)) }
		case "unix":
			network = "unixgram"
			if cfg.Address == "" {
				cfg.Address = DefaultSocket
			}
			format = func(ev *event) []byte { return format3164(&hdr, ev, maxStream) }
		default:
			return nil, fmt.Errorf("logging: syslog network %q: want udp, tcp or unix", cfg.Network)
		}
		if network != "unixgram" {
			if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
				return nil, fmt.Errorf("logging: syslog over %s needs Address host:port: %v", network, err)
			}
		}
		l.net = newNetSink(network, cfg.Address, cfg.QueueLen, format, cfg.stderr)
		h.out = l.net
	default:
		return nil, fmt.Errorf("logging: unknown target %q: want stderr, journald or syslog", cfg.Target)
	}
	l.Logger = slog.New(h)
	return l, nil
}

// ParseTarget reads the one-word form used in flags and profiles into the
// Target, Network and Address fields of a Config:
//
//	stderr | journald | udp://host:port | tcp://host:port | unix[:///path]
//
// A udp or tcp address without a port gets the standard syslog port 514.
func ParseTarget(s string) (Config, error) {
	switch s {
	case "", TargetStderr:
		return Config{Target: TargetStderr}, nil
	case TargetJournald:
		return Config{Target: TargetJournald}, nil
	case "unix", "syslog":
		return Config{Target: TargetSyslog, Network: "unix", Address: DefaultSocket}, nil
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || rest == "" {
		return Config{}, fmt.Errorf("logging: target %q: want stderr, journald, udp://host:port, tcp://host:port or unix:///path", s)
	}
	switch scheme {
	case "udp", "tcp":
		if _, _, err := net.SplitHostPort(rest); err != nil {
			rest = net.JoinHostPort(strings.Trim(rest, "[]"), "514")
		}
		return Config{Target: TargetSyslog, Network: scheme, Address: rest}, nil
	case "unix":
		return Config{Target: TargetSyslog, Network: "unix", Address: rest}, nil
	}
	return Config{}, fmt.Errorf("logging: target %q: unknown scheme %q", s, scheme)
}
