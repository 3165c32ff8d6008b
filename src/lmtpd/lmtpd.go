// Package lmtpd is pdeliveryd's LMTP server (RFC 2033): it accepts
// messages for the users whose mailboxes live on this storage host and
// writes them into their Maildirs, answering each recipient on its own.
//
// # Per recipient
//
// Every RCPT is checked with passwdd (pwclient.LookupAddr, so aliases and
// +detail work) and answered at once:
//
//	not at a cluster domain      550 5.1.2
//	unknown, or not a valid name 550 5.1.1
//	disabled                     550 5.2.1
//	mailbox being moved          451 4.2.0
//	stored on another host       451 4.3.0 <user> is stored on H, not here
//	over quota                   552 5.2.2
//	passwd servers silent        451 4.4.3   (never a 5xx: the user may exist)
//
// After DATA each accepted recipient gets its own reply: 250 only once the
// message is durable in its Maildir (written, fsynced, renamed, directory
// fsynced: see package mailbox); a full disk or any write error is 452
// 4.3.1 and leaves nothing in new/; a message that would take a user over
// quota is 552 5.2.2.
//
// # One write, several recipients
//
// The message is received completely first (memory, or an unlinked spool
// file for large ones), then written once into the first mailbox and hard
// linked into the others (mailbox.DeliverMany). A shared file cannot carry
// per-recipient lines, so the prepended headers depend on the number of
// mailboxes written in the transaction, as Dovecot's LMTP and Postfix do:
//
//	one:     Return-Path, Delivered-To: user@domain, Received ... for <rcpt>
//	several: Return-Path, Received (no "for": that would disclose Bcc
//	         recipients to each other)
//
// The Received line carries the trace id: the X-Correo-Trace header smtpd
// adds when present, a new id otherwise. One log line per recipient
// outcome carries it too.
//
// # Delivery keys
//
// smtpd's queue sends each message with a delivery key as its first line
// (package dedup: queue id and trace id, sealed with the cluster key).
// Per recipient, a key already recorded is answered "250 2.0.0 delivered
// to <user> (<trace>)", as the first delivery was, and nothing is stored;
// otherwise an intent is appended to the key log before the Maildir
// write, and the delivered record after it, fdatasynced (one sync for
// concurrent deliveries) before the 250. A key left as an intent by a
// crash makes the next attempt look in the mailbox for the message's
// trace before storing it. The key line is never stored. A message
// without a key, or with a line whose MAC is wrong, is handled as if keys
// did not exist.
//
// # Access and limits
//
// TCP connections are accepted only from the cluster's network (profile);
// anyone else gets "554 5.7.1" instead of a greeting and is logged (at
// most once a second). The Unix socket is for local MDAs (pdelivery) and
// is protected by its file mode. Limits: message size, recipients per
// transaction, idle and data timeouts (see Limits).
//
// # Privileges
//
// pdeliveryd writes every user's Maildir as one service user that owns
// the data directory: virtual mailboxes, like Dovecot's vmail. It never
// changes uid per user; user names never reach a path without passing
// mailbox.NormalizeName.
package lmtpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"correo/src/cluster"
	"correo/src/dedup"
	"correo/src/delivery"
	"correo/src/keyfile"
	"correo/src/logging"
	"correo/src/mailbox"
	"correo/src/netserve"
)

// Limits of one server. The storage host's profile has no [host.smtpd]
// table: these are fixed, generous values, since every client is a correo
// host or a local MDA that has already applied its own (smaller) limits.
type Limits struct {
	// MaxMessageBytes is larger than any smtpd's max_message_bytes so
	// that a message an MX accepted is never refused here.
	MaxMessageBytes int64
	// MaxRecipients per transaction: an MX delivers a whole envelope's
	// recipients on this host at once.
	MaxRecipients int
	// IdleTimeout bounds the wait for each command (RFC 5321 asks for 5
	// minutes) and for each read of message data.
	IdleTimeout time.Duration
	// DataTimeout bounds the whole DATA phase, so a client trickling a
	// byte a minute cannot hold a session forever.
	DataTimeout time.Duration
	// MaxLineLength bounds command lines and message lines. RFC 5322
	// allows 998 characters, but real mail has longer lines; this refuses
	// only what is not mail at all.
	MaxLineLength int
}

// DefaultLimits are the limits pdeliveryd runs with.
var DefaultLimits = Limits{
	MaxMessageBytes: 50 << 20,
	MaxRecipients:   1000,
	IdleTimeout:     5 * time.Minute,
	DataTimeout:     10 * time.Minute,
	MaxLineLength:   32 << 10,
}

// Config configures a Server.
type Config struct {
	Profile *cluster.Profile
	// Host is the storage host this server runs on: its name is what a
	// user's Storage must be, its data_dir holds the Maildirs.
	Host *cluster.Host
	// Users answers the RCPT lookups (a *pwclient.Client).
	Users delivery.Resolver
	// SpoolDir holds the spool files of messages too big for memory
	// (pdeliveryd's state directory).
	SpoolDir string
	Log      *slog.Logger
	// Limits; zero fields take DefaultLimits.
	Limits Limits
	// QuotaTTL is how long a user's computed mailbox usage is trusted
	// (default 60 s); QuotaEntries bounds the cache (default 100 000).
	QuotaTTL     time.Duration
	QuotaEntries int
	// LookupTimeout bounds one passwd lookup including failover (default:
	// twice the profile's passwd timeout plus a second).
	LookupTimeout time.Duration
	// Ring checks the delivery keys smtpd sends (the cluster key file);
	// Keys records them (in pdeliveryd's state directory). With Ring nil
	// a key header is neither honoured nor removed; with Keys nil a valid
	// one is removed but every message is stored (see package dedup).
	Ring *keyfile.Ring
	Keys *dedup.Store
	// Gate is shared with the process's mailbox mover, which waits on it
	// for the deliveries to a mailbox it freezes (nil: a private one,
	// when nothing moves mailboxes).
	Gate *mailbox.Gate
	// Metrics, when set, counts sessions and recipients' outcomes
	// (NewMetrics).
	Metrics *Metrics
}

// Server is one storage host's LMTP service. Serve it on any number of
// listeners.
type Server struct {
	cfg      Config
	log      *slog.Logger
	name     string // the host's name in greetings and Received lines
	dataDir  string
	scheme   mailbox.Scheme
	network  netip.Prefix
	smtp     *smtp.Server
	usage    *usageCache
	refusals logging.Throttle
	forged   logging.Throttle

	mu        sync.Mutex
	listeners []net.Listener

	draining atomic.Bool
	inData   netserve.InFlight
}

// New builds a server; nothing listens until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Profile == nil || cfg.Host == nil || cfg.Users == nil {
		return nil, errors.New("lmtpd: Profile, Host and Users are required")
	}
	if !cfg.Host.HasRole(cluster.RoleStorage) || cfg.Host.Storage == nil || cfg.Host.Storage.DataDir == "" {
		return nil, fmt.Errorf("lmtpd: host %s is not a storage host with a data_dir in %s", cfg.Host.Name, cfg.Profile.Source)
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = os.TempDir()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	l := &cfg.Limits
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = DefaultLimits.MaxMessageBytes
	}
	if l.MaxRecipients <= 0 {
		l.MaxRecipients = DefaultLimits.MaxRecipients
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultLimits.IdleTimeout
	}
	if l.DataTimeout <= 0 {
		l.DataTimeout = DefaultLimits.DataTimeout
	}
	if l.MaxLineLength <= 0 {
		l.MaxLineLength = DefaultLimits.MaxLineLength
	}
	if cfg.QuotaTTL <= 0 {
		cfg.QuotaTTL = time.Minute
	}
	if cfg.QuotaEntries <= 0 {
		cfg.QuotaEntries = 100000
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = 2*cfg.Profile.Cluster.Passwd.Timeout.Std() + time.Second
	}
	if cfg.Gate == nil {
		cfg.Gate = new(mailbox.Gate)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Log,
		name:    hostFQDN(cfg.Profile, cfg.Host),
		dataDir: cfg.Host.Storage.DataDir,
		scheme:  cfg.Profile.LayoutScheme(),
		network: cfg.Profile.NetworkPrefix(),
		usage:   newUsageCache(cfg.QuotaTTL, cfg.QuotaEntries),
	}
	srv := smtp.NewServer(s)
	srv.LMTP = true
	srv.Domain = s.name
	srv.MaxMessageBytes = l.MaxMessageBytes
	srv.MaxRecipients = l.MaxRecipients
	srv.MaxLineLength = l.MaxLineLength
	srv.ReadTimeout = l.IdleTimeout
	srv.WriteTimeout = l.IdleTimeout
	srv.ErrorLog = slogPrinter{s.log}
	s.smtp = srv
	return s, nil
}

// hostFQDN is host.zone when the profile has a DNS zone, else the name.
func hostFQDN(p *cluster.Profile, h *cluster.Host) string {
	if z := p.Cluster.DNS.Zone; z != "" {
		return h.Name + "." + z
	}
	return h.Name
}

// slogPrinter routes go-smtp's internal error log to slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) {
	p.log.Warn("lmtp server", "msg", fmt.Sprintf(format, v...))
}
func (p slogPrinter) Println(v ...any) { p.log.Warn("lmtp server", "msg", fmt.Sprint(v...)) }

// ServeTCP serves connections from ln, refusing peers outside the
// cluster's network. It returns when ln is closed.
func (s *Server) ServeTCP(ln net.Listener) error {
	return s.serve(&filterListener{Listener: ln, s: s})
}

// ServeUnix serves a Unix socket: its file mode is the access control.
func (s *Server) ServeUnix(ln net.Listener) error { return s.serve(ln) }

func (s *Server) serve(ln net.Listener) error {
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	// The client pipelines MAIL, RCPT and DATA (src/lmtpclient): their
	// replies leave in one write.
	err := s.smtp.Serve(netserve.BatchReplies(ln))
	if s.draining.Load() || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// ListenUnix creates the Unix socket at path, replacing a stale one left
// by a crash, with mode 0660: the service user and its group (add the
// local MTA's user to it) may deliver; others go through TCP, where the
// network check applies.
func ListenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; remove it or choose another state directory", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another running pdeliveryd", path)
		}
		os.Remove(path)
	}
	// The umask decides the mode between bind and chmod; a restrictive
	// one only delays access by a moment.
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("LMTP socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("LMTP socket %s: %w", path, err)
	}
	return ln, nil
}

// Shutdown stops accepting, refuses new transactions (421), lets messages
// already in DATA finish being written and answered, then closes every
// connection. It returns when that is done or ctx expires; either way the
// server is closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	err := s.inData.Wait(ctx)
	s.smtp.Close()
	return err
}

// Sessions is the number of messages being written and answered (what a
// graceful stop waits for).
func (s *Server) Sessions() int { return s.inData.Len() }

// Close closes listeners and connections at once.
func (s *Server) Close() error {
	s.draining.Store(true)
	return s.smtp.Close()
}

// filterListener refuses TCP peers outside the cluster network before
// go-smtp sees them, so they get a 554 instead of a greeting (RFC 5321
// §3.1) and never reach a command.
type filterListener struct {
	net.Listener
	s *Server
}

func (l *filterListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		if ip.IsValid() && l.s.network.Contains(ip) {
			return c, nil
		}
		go l.s.refuse(c, ip)
	}
}

func remoteIP(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

func (s *Server) refuse(c net.Conn, ip netip.Addr) {
	s.cfg.Metrics.session("refused")
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "554 5.7.1 %s access denied: %s is outside the cluster network\r\n", s.name, ip)
	c.Close()
	if ok, suppressed := s.refusals.Allow("", time.Now()); ok {
		s.log.Warn("refused a connection from outside the cluster network", "client", ip.String(),
			"network", s.network.String(), "suppressed", suppressed)
	}
}
