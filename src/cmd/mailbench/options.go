package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"correo/src/cluster"
	"correo/src/loadstat"
)

// options are one run's settings, from the command line.
type options struct {
	cmd string

	profilePath string
	targets     []string
	allowRemote bool
	metrics     []string // daemons' metrics endpoints to scrape around the run

	plan loadstat.Plan

	usersFile string
	users     int
	password  string
	domain    string
	timeout   time.Duration
	json      bool
	progress  string
	seed      uint64

	// smtp, submission, lmtp
	msgsPerSession int
	sizes          sizeDist
	sizeSpec       string
	rcpts          int
	pipelining     bool
	from           string
	hello          string
	caFile         string
	insecure       bool
	plainAuth      bool

	// pop3, imap
	retr     int
	dele     bool
	fetch    int
	idle     time.Duration
	starttls bool

	// passwd
	auth    bool
	keyFile string

	// nss
	nssLib    string
	nssSocket string
	libc      bool

	// mix
	mixSpec string
	day     time.Duration
}

// commands lists what mailbench drives, with the profile service whose
// endpoints are its default targets.
var commands = []struct {
	name    string
	service cluster.Service
	summary string
}{
	{"smtp", cluster.SvcSMTP, "inbound SMTP to the MX pool: sessions of messages, sizes, recipients, pipelining"},
	{"submission", cluster.SvcSubmission, "submission to the relay: STARTTLS, AUTH PLAIN, then messages"},
	{"lmtp", cluster.SvcLMTP, "LMTP deliveries to a storage host's pdeliveryd"},
	{"pop3", cluster.SvcPOP3, "POP3 sessions: login, STAT, LIST, RETR of n, DELE"},
	{"imap", cluster.SvcIMAP, "IMAP sessions: LOGIN, SELECT, FETCH, IDLE"},
	{"passwd", cluster.SvcPasswd, "passwd lookups (or --auth: authentications) with pwclient"},
	{"nss", "", "getpwnam through the NSS module (libnss_correo.so.2 and nssd)"},
	{"mix", "", "a day's ISP mix, compressed: SMTP, submission, POP3, IMAP and passwd together"},
}

func serviceOf(cmd string) cluster.Service {
	if cmd == "passwd-lookup" || cmd == "passwd-auth" {
		return cluster.SvcPasswd
	}
	for _, c := range commands {
		if c.name == cmd {
			return c.service
		}
	}
	return ""
}

type listFlag struct{ v *[]string }

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l.v = append(*l.v, p)
		}
	}
	return nil
}

// parseOptions reads a command's flags. Each command knows only the
// flags that mean something to it, so a misplaced one is an error rather
// than silently ignored.
func parseOptions(cmd string, args []string, stderr io.Writer) (*options, error) {
	o := &options{cmd: cmd}
	fs := flag.NewFlagSet("mailbench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.profilePath, "profile", "", "host profile: default targets, the network loads may go to, the cluster key (default: the embedded hosts/dev.toml)")
	fs.Var(listFlag{&o.targets}, "target", "host:port to load, repeatable or comma-separated (default: the profile's hosts for this service)")
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "allow targets outside loopback and the profile's network")
	fs.Var(listFlag{&o.metrics}, "metrics", "daemons' metrics endpoints (host:port, or \"profile\" for all of the profile's) to scrape before and after the run: their counters' change is printed beside mailbench's figures")
	fs.IntVar(&o.plan.N, "n", 0, "stop after this many measured operations (0: use --duration)")
	fs.DurationVar(&o.plan.Duration, "duration", 0, "measure for this long (default 10s when -n is not given)")
	fs.DurationVar(&o.plan.Warmup, "warmup", 0, "run unmeasured for this long first")
	fs.Float64Var(&o.plan.Rate, "rate", 0, "open loop: operations per second, latency counted from each one's due time (0: closed loop)")
	fs.IntVar(&o.plan.Concurrency, "concurrency", 8, "workers (closed loop), or most operations in flight (open loop)")
	fs.StringVar(&o.usersFile, "users-file", "", "users to act as, one \"name\" or \"name:password\" a line (default: the profile's directory)")
	fs.IntVar(&o.users, "users", 0, "draw at most this many users from the directory (0: all)")
	fs.StringVar(&o.password, "password", "", "password of users without one in --users-file, and of directory users")
	fs.StringVar(&o.domain, "domain", "", "mail domain of the users' addresses (default: the profile's first)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-operation network timeout")
	fs.BoolVar(&o.json, "json", false, "print the summary as JSON on stdout (the figures mailbench plan reads)")
	fs.StringVar(&o.progress, "progress", "auto", "live progress line on stderr: auto (on a terminal), always, never")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed: the same seed draws the same users and sizes")
	switch cmd {
	case "smtp", "submission", "lmtp", "mix":
		fs.IntVar(&o.msgsPerSession, "msgs-per-session", 10, "messages per connection before reconnecting")
		fs.StringVar(&o.sizeSpec, "size", "4k", "message size, or a distribution of sizes with weights: 2k:60,16k:30,1m:10")
		fs.IntVar(&o.rcpts, "rcpts", 1, "recipients per message")
		fs.StringVar(&o.from, "from", "mailbench@example.org", "envelope sender (submission sends as the logged-in user)")
		fs.StringVar(&o.hello, "hello", "mailbench.invalid", "EHLO/LHLO name")
	}
	switch cmd {
	case "smtp", "submission", "mix":
		fs.BoolVar(&o.pipelining, "pipelining", true, "pipeline MAIL, RCPT and DATA when the server offers PIPELINING")
	}
	switch cmd {
	case "submission", "pop3", "imap", "mix":
		fs.StringVar(&o.caFile, "ca", "", "PEM file of the certificate(s) to trust for STARTTLS (e.g. the cluster's self-signed one)")
		fs.BoolVar(&o.insecure, "insecure-skip-verify", false, "do not verify the server's certificate (test clusters only)")
	}
	switch cmd {
	case "submission", "mix":
		fs.BoolVar(&o.plainAuth, "plain-auth", false, "send AUTH without TLS when the server offers no STARTTLS (a trusted network's dev cluster)")
	}
	switch cmd {
	case "pop3", "imap", "mix":
		fs.BoolVar(&o.starttls, "starttls", false, "STLS/STARTTLS before logging in (default in mix: when the profile's network is not trusted)")
	}
	switch cmd {
	case "pop3", "mix":
		fs.IntVar(&o.retr, "retr", 1, "POP3: RETR this many messages per session")
		fs.BoolVar(&o.dele, "dele", false, "POP3: DELE the retrieved messages")
	}
	switch cmd {
	case "imap", "mix":
		fs.IntVar(&o.fetch, "fetch", 1, "IMAP: FETCH this many messages' bodies per session")
		fs.DurationVar(&o.idle, "idle", 0, "IMAP: stay in IDLE this long per session (0: no IDLE)")
	}
	switch cmd {
	case "passwd", "pop3", "imap", "submission", "smtp", "lmtp", "nss", "mix":
		fs.StringVar(&o.keyFile, "key", "", "cluster key file for passwd (default: the profile's key_file)")
	}
	switch cmd {
	case "passwd":
		fs.BoolVar(&o.auth, "auth", false, "authenticate (name and password) instead of looking up names")
	}
	switch cmd {
	case "nss":
		fs.StringVar(&o.nssLib, "nss-lib", "libnss_correo.so.2", "the NSS module to dlopen (a path, or a name the dynamic loader finds)")
		fs.StringVar(&o.nssSocket, "nss-socket", "", "nssd's socket (sets CORREO_NSS_SOCKET; default: the module's built-in /run/correo/nssd.sock)")
		fs.BoolVar(&o.libc, "libc", false, "call glibc's getpwnam_r (the whole nsswitch.conf chain) instead of the module directly")
	}
	switch cmd {
	case "mix":
		fs.StringVar(&o.mixSpec, "mix", defaultMix, "operations per user per day, by kind")
		fs.DurationVar(&o.day, "day", 0, "how long one compressed day lasts; sets the rate from --users and --mix (default: --duration)")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: every setting is a flag (see mailbench %s -h)", fs.Arg(0), cmd)
	}
	if o.plan.N == 0 && o.plan.Duration == 0 {
		o.plan.Duration = 10 * time.Second
	}
	if err := o.plan.Validate(); err != nil {
		return nil, err
	}
	switch o.progress {
	case "auto", "always", "never":
	default:
		return nil, fmt.Errorf("--progress %q: want auto, always or never", o.progress)
	}
	if o.timeout <= 0 {
		return nil, errors.New("--timeout must be positive")
	}
	if o.users < 0 {
		return nil, fmt.Errorf("--users %d: want a positive count, or 0 for every user", o.users)
	}
	if o.sizeSpec != "" {
		d, err := parseSizeDist(o.sizeSpec)
		if err != nil {
			return nil, err
		}
		o.sizes = d
	}
	if o.msgsPerSession < 0 || (o.sizeSpec != "" && o.msgsPerSession == 0) {
		return nil, fmt.Errorf("--msgs-per-session %d: want at least 1", o.msgsPerSession)
	}
	if o.sizeSpec != "" && (o.rcpts < 1 || o.rcpts > 1000) {
		return nil, fmt.Errorf("--rcpts %d: want 1 to 1000 recipients per message", o.rcpts)
	}
	if o.retr < 0 || o.fetch < 0 || o.idle < 0 {
		return nil, errors.New("--retr, --fetch and --idle must not be negative")
	}
	if o.insecure && o.caFile != "" {
		return nil, errors.New("--ca and --insecure-skip-verify together: verify with --ca, or skip verification, not both")
	}
	return o, nil
}
