// Package cluster loads and validates host profiles: the TOML files in
// hosts/ that describe a whole correo cluster. Every daemon starts from a
// Profile and the name of the host it runs as, and learns from them its
// listen addresses, its peers and the cluster's policies. The Nix library
// in nix/lib reads the same files and must agree with this package; the
// bad profiles in testdata/bad are checked by both.
package cluster

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"correo/src/dkimkeys"
)

// Role is one job a host does in the cluster.
type Role string

const (
	RoleDNS             Role = "dns"
	RoleLoghost         Role = "loghost"
	RolePasswdPrimary   Role = "passwd-primary"
	RolePasswdSecondary Role = "passwd-secondary"
	RoleMX              Role = "mx"
	RoleRelay           Role = "relay"
	RoleStorage         Role = "storage"
	RoleMailProxy       Role = "mailproxy"
	// roleLegacyPOPProxy is mailproxy's name before it served IMAP: a
	// profile that still says popproxy loads as mailproxy.
	roleLegacyPOPProxy Role = "popproxy"
)

// Roles lists every role a profile may name, in documentation order.
func Roles() []Role {
	return []Role{RoleDNS, RoleLoghost, RolePasswdPrimary, RolePasswdSecondary,
		RoleMX, RoleRelay, RoleStorage, RoleMailProxy}
}

func (r Role) valid() bool {
	for _, k := range Roles() {
		if r == k {
			return true
		}
	}
	return false
}

// Placement policies for users added without a storage host.
const (
	// PlacementLetters is the paper's rule: contiguous first-letter ranges
	// over the storage hosts in profile order.
	PlacementLetters = "letters"
	// PlacementLeastUsers puts a new user on the storage host with the
	// fewest users relative to its weight.
	PlacementLeastUsers = "least-users"
)

// Profile is a loaded, validated host profile.
type Profile struct {
	// Source names where the profile came from, for messages.
	Source  string
	Cluster Cluster
	Hosts   []Host
	// DKIM is the records file [cluster.mail_auth] dkim_records names.
	DKIM []dkimkeys.Record

	network netip.Prefix
}

// Cluster holds the settings shared by every host.
type Cluster struct {
	Name    string   `toml:"name"`
	Domains []string `toml:"domains"`
	Network string   `toml:"network"`
	// KeyFile holds the cluster key that seals every passwd datagram. A
	// relative path is relative to the working directory.
	KeyFile   string `toml:"key_file"`
	Layout    string `toml:"layout"`
	Placement string `toml:"placement"`
	// TrustedNetwork allows AUTH without TLS. Only for loopback dev
	// clusters or networks the operator fully controls.
	TrustedNetwork bool `toml:"trusted_network"`
	// RunAs is the account daemons switch to once their sockets are
	// bound, when started as root; empty leaves that to the service
	// manager (systemd's User=, as the NixOS modules do).
	RunAs string `toml:"run_as"`
	// ShutdownGrace is how long a daemon lets sessions and messages in
	// progress finish after SIGTERM before it closes what is left. The
	// service manager's stop timeout must be longer.
	ShutdownGrace Duration `toml:"shutdown_grace"`

	Passwd Passwd `toml:"passwd"`
	Log    Log    `toml:"log"`
	DNS    DNS    `toml:"dns"`
	Ports  Ports  `toml:"ports"`
	NSS    NSS    `toml:"nss"`
	Queue  Queue  `toml:"queue"`
	// MailAuth is what the zone tells other mail systems about the
	// cluster's own mail: SPF and DMARC.
	MailAuth MailAuth `toml:"mail_auth"`
	// Milters are the content filters smtpd hands every message to
	// (rspamd's proxy worker in milter mode, say), in order.
	Milters []Milter `toml:"milter"`
	// Moves is how mailboxes move between storage hosts (correoctl
	// mailbox move).
	Moves Moves `toml:"moves"`
}

// Moves is [cluster.moves]: the policy of online mailbox moves.
type Moves struct {
	// Grace is how long the source host keeps a moved mailbox, frozen,
	// before deleting it: the undo window, and what turns away deliveries
	// from hosts whose view of the directory is stale.
	Grace Duration `toml:"grace"`
	// FreezeTimeout bounds how long the source waits, once the mailbox
	// is frozen, for POP and IMAP sessions and deliveries in progress to
	// end; past it the move is rolled back and the mailbox thawed.
	FreezeTimeout Duration `toml:"freeze_timeout"`
	// RateLimitMB caps a move's copy in MB/s (0: as fast as the disks and
	// network allow), so that moves leave room for mail.
	RateLimitMB int `toml:"rate_limit_mb"`
	// JournalDir is where correoctl journals each move's steps, on the
	// host it runs on, so that `correoctl mailbox move --resume` finishes
	// or rolls back a move that was interrupted.
	JournalDir string `toml:"journal_dir"`
}

// Milter is one [[cluster.milter]].
type Milter struct {
	Name string `toml:"name"`
	// Address is "tcp:HOST:PORT" or "unix:/PATH".
	Address string `toml:"address"`
	// Roles are the smtpd roles that use it: "mx" (mail from outside)
	// and/or "relay" (the users' and hosts' own mail).
	Roles []Role `toml:"roles"`
	// Timeout bounds each exchange with the milter (default 30s).
	Timeout Duration `toml:"timeout"`
	// OnFailure is what a message gets when the milter is down, slow or
	// answers garbage: "tempfail" (the default: 451, the sender retries)
	// or "accept" (queued unfiltered, logged).
	OnFailure string `toml:"on_failure"`
}

// MailAuth is [cluster.mail_auth].
type MailAuth struct {
	// SPFAll is the SPF verdict the cluster's domains give mail from
	// anywhere but the relay pool: "fail" (-all, the default) or
	// "softfail" (~all, while customers still send through other
	// servers).
	SPFAll string `toml:"spf_all"`
	// DMARCPolicy is the p= the domains publish: "none" (the default:
	// receivers only report), "quarantine" or "reject". Start at none,
	// read the reports, then raise it.
	DMARCPolicy string `toml:"dmarc_policy"`
	// DMARCReports is the address receivers send aggregate reports to
	// (rua=mailto:); empty asks for none.
	DMARCReports string `toml:"dmarc_reports"`
	// DKIMRecords is the DKIM public keys file `correoctl dkim` keeps
	// (package dkimkeys), relative to the profile's directory: the zone
	// publishes every key in it, and the relays sign with them. Empty: no
	// DKIM.
	DKIMRecords string `toml:"dkim_records"`
	// DKIMKeyDir holds the private keys on the relay hosts,
	// DIR/DOMAIN/SELECTOR.pem, 0640 root:correo-key like the cluster key.
	DKIMKeyDir string `toml:"dkim_key_dir"`
	// DKIMPublishWait is how long a new key is published before the relays
	// sign with it, so receivers' resolvers have it (default 1h; the
	// zone's TTL and its secondaries' refresh must fit in it).
	DKIMPublishWait Duration `toml:"dkim_publish_wait"`
	// AuthServID names the cluster in the Authentication-Results the mx
	// hosts add (RFC 8601); default: the DNS zone.
	AuthServID string `toml:"authserv_id"`
	// Inbound is what the mx does with DMARC failures of mail from
	// outside: "enforce" (the default: p=reject refused at the end of
	// DATA with 550 5.7.1, p=quarantine filed in the user's Junk) or
	// "record" (only the Authentication-Results field).
	Inbound string `toml:"inbound"`
}

// SPF's all and DMARC's p= values.
const (
	SPFFail         = "fail"
	SPFSoftfail     = "softfail"
	DMARCNone       = "none"
	DMARCQuarantine = "quarantine"
	DMARCReject     = "reject"

	MilterTempfail       = "tempfail"
	MilterAccept         = "accept"
	DefaultMilterTimeout = 30 * time.Second

	InboundEnforce = "enforce"
	InboundRecord  = "record"

	DefaultDKIMKeyDir      = "/var/lib/correo/dkim"
	DefaultDKIMPublishWait = time.Hour

	DefaultMoveGrace         = 7 * 24 * time.Hour
	DefaultMoveFreezeTimeout = 10 * time.Second
	DefaultMoveJournalDir    = "/var/lib/correo/moves"
)

// Queue is the retry policy of smtpd's on-disk queue (mx and relay).
type Queue struct {
	// Retry lists the waits after each failed attempt; the last one
	// repeats until Lifetime has passed since the message arrived.
	Retry []Duration `toml:"retry"`
	// Lifetime is how long a message may stay queued before it is
	// bounced to its sender.
	Lifetime Duration `toml:"lifetime"`
}

// Passwd holds the password service's ports and client policy.
type Passwd struct {
	// UDPPort answers queries, TCPPort serves admin and replication. There
	// is no standard port, so the profile must name both.
	UDPPort int `toml:"udp_port"`
	TCPPort int `toml:"tcp_port"`
	// Timeout is how long a client waits for the primary before asking the
	// secondary (the paper's 2 s).
	Timeout Duration `toml:"timeout"`
	// BcryptCost is the cost of the bcrypt hashes passwdd makes for new
	// passwords (user.add, user.passwd, plaintext imports). Each step
	// doubles the CPU one login costs passwdd: 10 is ~75 ms of a core.
	BcryptCost int `toml:"bcrypt_cost"`
	// AuthCacheTTL is how long passwdd answers a login from its
	// verified-credentials cache (a keyed hash of user and password)
	// instead of verifying the password hash again. Any change to the
	// user's record drops the entry at once; the TTL bounds how long a
	// fast-to-check verifier of a password stays in memory.
	AuthCacheTTL Duration `toml:"auth_cache_ttl"`
	// AuthCacheEntries bounds that cache (about 150 bytes an entry).
	AuthCacheEntries int `toml:"auth_cache_entries"`
	// AuthQueue bounds the logins waiting for a password verifier (one
	// per core): past it passwdd answers "try later" at once, and the
	// POP, IMAP and SMTP servers turn that into their temporary failure
	// instead of letting clients time out.
	AuthQueue int `toml:"auth_queue"`
}

// Log says where every daemon of the cluster sends its log lines.
type Log struct {
	Target  string `toml:"target"`  // stderr | journald | syslog
	Network string `toml:"network"` // syslog only: udp | tcp | unix
	Level   string `toml:"level"`   // debug | info | warn | error
}

// DNS holds the cluster zone served by the dns hosts.
type DNS struct {
	Zone   string `toml:"zone" json:"zone"`
	Serial uint32 `toml:"serial" json:"serial"`
	TTL    int    `toml:"ttl" json:"ttl"`
}

// NSS configures nssd, the agent on every host that answers
// libnss_correo.so.2 (the operating system's view of cluster users).
type NSS struct {
	// PositiveTTL and NegativeTTL bound how long nssd answers a user, or
	// "no such user", from its cache; CacheEntries bounds its size.
	PositiveTTL  Duration `toml:"positive_ttl"`
	NegativeTTL  Duration `toml:"negative_ttl"`
	CacheEntries int      `toml:"cache_entries"`
	// Socket is where nssd listens. The module looks at
	// /run/correo/nssd.sock unless built with another CORREO_NSS_SOCKET
	// (or, for programs that are not setuid, told so by that environment
	// variable): change both together.
	Socket string `toml:"socket"`
	// Socketmap, when set, is where nssd also answers Postfix's socketmap
	// tables (src/postfixmap: virtual_mailbox, virtual_alias,
	// relay_recipient, transport) from passwdd, for a Postfix on the
	// host. Empty: not served. It lives beside Socket, in the directory
	// nssd owns under systemd.
	Socketmap string `toml:"socketmap"`
	// Groups are the cluster's mail groups, answered by getgrnam,
	// getgrgid and getgrent. Users belong to them through the gid of
	// their passwd entry; the groups list no members.
	Groups []NSSGroup `toml:"groups"`
}

// NSSGroup is one mail group.
type NSSGroup struct {
	Name string `toml:"name" json:"name"`
	GID  int64  `toml:"gid" json:"gid"`
}

// Ports overrides the standard ports; zero means the standard one.
type Ports struct {
	SMTP        int `toml:"smtp"`
	Relay       int `toml:"relay"`
	Submission  int `toml:"submission"`
	Submissions int `toml:"submissions"`
	LMTP        int `toml:"lmtp"`
	POP3        int `toml:"pop3"`
	POP3S       int `toml:"pop3s"`
	POP3Backend int `toml:"pop3_backend"`
	IMAP        int `toml:"imap"`
	IMAPS       int `toml:"imaps"`
	IMAPBackend int `toml:"imap_backend"`
	DNS         int `toml:"dns"`
	Syslog      int `toml:"syslog"`
	MailboxMove int `toml:"mailbox_move"`
	// Metrics is the first of the daemons' metrics ports (see
	// MetricsService): each program adds its own offset, 0 to 6.
	Metrics int `toml:"metrics"`
}

// Host is one machine of the cluster.
type Host struct {
	Name    string   `toml:"name"`
	Address string   `toml:"address"`
	Roles   []Role   `toml:"roles"`
	MX      *MX      `toml:"mx"`
	Storage *Storage `toml:"storage"`
	SMTPD   *SMTPD   `toml:"smtpd"`
	// MailProxy holds a mailproxy host's limits.
	MailProxy *MailProxy `toml:"mailproxy"`
	// LegacyPOPProxy is [host.popproxy], the section's name before the
	// proxy served IMAP too: still read, as MailProxy.
	LegacyPOPProxy *MailProxy `toml:"popproxy" json:"-"`
	TLS            *TLS       `toml:"tls"`

	addr netip.Addr
}

// MX holds an mx host's settings.
type MX struct {
	// Preference is the MX record preference; equal preferences share the
	// load, as the paper's DNS round robin did.
	Preference int `toml:"preference" json:"preference"`
}

// Storage holds a storage host's settings.
type Storage struct {
	DataDir string `toml:"data_dir" json:"data_dir"`
	// Weight scales the share of new users the least-users policy gives
	// this host.
	Weight int `toml:"weight" json:"weight"`
}

// SMTPD holds the limits of an mx or relay host.
type SMTPD struct {
	MaxMessageBytes         int64 `toml:"max_message_bytes" json:"max_message_bytes"`
	MaxRecipients           int   `toml:"max_recipients" json:"max_recipients"`
	MaxConnections          int   `toml:"max_connections" json:"max_connections"`
	MaxConnectionsPerClient int   `toml:"max_connections_per_client" json:"max_connections_per_client"`
	// MaxMessagesPerHour bounds what one authenticated user may submit
	// through the relay role in an hour (a stolen password must not turn
	// the relay into a spam cannon).
	MaxMessagesPerHour int `toml:"max_messages_per_hour" json:"max_messages_per_hour"`
	// ExposeAuthUser names the authenticated user in the Received header
	// of submitted mail. Off by default: the user is logged, and the
	// header would tell every recipient the sender's login name.
	ExposeAuthUser bool `toml:"expose_auth_user" json:"expose_auth_user"`
	// CommandTimeout bounds the wait for each command and each read of
	// message data (RFC 5321 §4.5.3.2 asks for at least 5 minutes).
	CommandTimeout Duration `toml:"command_timeout" json:"-"`
	// DataTimeout bounds a whole DATA phase, so a client trickling a byte
	// a minute cannot hold a connection for ever.
	DataTimeout Duration `toml:"data_timeout" json:"-"`
	// Workers is how many queued messages are delivered at once (and how
	// many LMTP connections to storage are kept open).
	Workers int `toml:"workers" json:"-"`
}

// MailProxy holds the limits of a mailproxy host before a client has
// logged in: what a password guesser or a flood may cost.
type MailProxy struct {
	// FailDelay is the wait before answering a failed login; it doubles
	// with every further failure from the same address, up to
	// MaxFailDelay.
	FailDelay    Duration `toml:"fail_delay"`
	MaxFailDelay Duration `toml:"max_fail_delay"`
	// MaxConnections bounds concurrent sessions, MaxConnectionsPerClient
	// those from one client address.
	MaxConnections          int `toml:"max_connections"`
	MaxConnectionsPerClient int `toml:"max_connections_per_client"`
}

// TLS names a host's certificate and key files (PEM).
type TLS struct {
	Cert string `toml:"cert" json:"cert"`
	Key  string `toml:"key" json:"key"`
}

// Defaults applied when a profile leaves a setting out. nix/lib/default.nix
// applies the same ones.
const (
	DefaultPasswdTimeout           = 2 * time.Second
	DefaultBcryptCost              = 10
	MinBcryptCost                  = 4 // bcrypt's own minimum
	MaxBcryptCost                  = 16
	DefaultAuthCacheTTL            = 15 * time.Minute
	DefaultAuthCacheEntries        = 1000000
	DefaultAuthQueue               = 1024
	DefaultDNSTTL                  = 300
	DefaultDNSSerial               = 1
	DefaultMXPreference            = 10
	DefaultStorageWeight           = 1
	DefaultMaxMessageBytes         = 25 << 20
	DefaultMaxRecipients           = 100
	DefaultMaxConnections          = 1000
	DefaultMaxConnectionsPerClient = 20
	DefaultMaxMessagesPerHour      = 500
	DefaultNSSPositiveTTL          = 5 * time.Minute
	DefaultNSSNegativeTTL          = 30 * time.Second
	DefaultNSSCacheEntries         = 100000
	DefaultNSSSocket               = "/run/correo/nssd.sock"
	DefaultQueueLifetime           = 120 * time.Hour
	DefaultShutdownGrace           = 30 * time.Second
	MaxShutdownGrace               = 10 * time.Minute
	DefaultSMTPCommandTimeout      = 5 * time.Minute
	DefaultSMTPDataTimeout         = 10 * time.Minute
	DefaultSMTPWorkers             = 32
	DefaultProxyFailDelay          = 500 * time.Millisecond
	DefaultProxyMaxFailDelay       = 8 * time.Second
	DefaultProxyMaxConnections     = 5000
	DefaultProxyMaxConnsPerClient  = 20
)

// DefaultQueueRetry is the queue's back-off when the profile names none:
// about 1 m, 5 m, 15 m, 30 m, then hourly (Postfix and Sendmail use
// similar ladders).
func DefaultQueueRetry() []Duration {
	return []Duration{Duration(time.Minute), Duration(5 * time.Minute), Duration(15 * time.Minute),
		Duration(30 * time.Minute), Duration(time.Hour)}
}

// DefaultNSSGroups is the mail group a profile gets when it names none:
// gid 5000, outside the ranges Debian and NixOS give system (<1000) and
// local human (1000-4999 in practice) accounts, where ISP mail users'
// uids start too.
func DefaultNSSGroups() []NSSGroup { return []NSSGroup{{Name: "correo", GID: 5000}} }

// Duration is a TOML string such as "2s" or "1m30s".
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("expected a duration such as \"2s\" or \"1m30s\", got %q", b)
	}
	if v <= 0 {
		return fmt.Errorf("expected a positive duration, got %q", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration back in Go syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std returns the duration as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// HasRole reports whether the host does the given job.
func (h *Host) HasRole(r Role) bool {
	for _, x := range h.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Addr is the host's parsed address.
func (h *Host) Addr() netip.Addr { return h.addr }

// NetworkPrefix is the cluster's parsed network.
func (p *Profile) NetworkPrefix() netip.Prefix { return p.network }

// Host returns the host with the given name.
func (p *Profile) Host(name string) (*Host, error) {
	for i := range p.Hosts {
		if p.Hosts[i].Name == name {
			return &p.Hosts[i], nil
		}
	}
	return nil, fmt.Errorf("%s: no host named %q (hosts: %v); pass one of them with -host", p.Source, name, p.hostNames())
}

// HostsWithRole returns the hosts that do the given job, in profile order.
func (p *Profile) HostsWithRole(r Role) []*Host {
	var out []*Host
	for i := range p.Hosts {
		if p.Hosts[i].HasRole(r) {
			out = append(out, &p.Hosts[i])
		}
	}
	return out
}

// PasswdServers returns the primary and, when the profile has one, the
// secondary password server (nil otherwise).
func (p *Profile) PasswdServers() (primary, secondary *Host) {
	if hs := p.HostsWithRole(RolePasswdPrimary); len(hs) > 0 {
		primary = hs[0]
	}
	if hs := p.HostsWithRole(RolePasswdSecondary); len(hs) > 0 {
		secondary = hs[0]
	}
	return primary, secondary
}

// IsLocalDomain reports whether domain (any case) is one of the cluster's
// mail domains.
func (p *Profile) IsLocalDomain(domain string) bool {
	for _, d := range p.Cluster.Domains {
		if equalFoldASCII(d, domain) {
			return true
		}
	}
	return false
}

func (p *Profile) hostNames() []string {
	var out []string
	for _, h := range p.Hosts {
		out = append(out, h.Name)
	}
	return out
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// DKIMRecordsPath is the DKIM records file, a relative dkim_records
// resolved against the profile's directory; "" without one.
func (p *Profile) DKIMRecordsPath() string {
	r := p.Cluster.MailAuth.DKIMRecords
	if r == "" || filepath.IsAbs(r) {
		return r
	}
	return filepath.Join(filepath.Dir(p.Source), r)
}
