package cluster

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"correo/hosts"
	"correo/src/dkimkeys"
	"correo/src/keyfile"

	"github.com/BurntSushi/toml"
)

// Options tunes Load for callers that are not the daemon of a host.
type Options struct {
	// SkipFiles skips the checks of files the profile names (the cluster
	// key). Tools that read a profile on behalf of other machines (the DNS
	// zone generator, the Nix golden tests, a build host) set it; daemons
	// never do.
	SkipFiles bool
}

// Error is one problem in a profile: where it is and what was expected.
type Error struct {
	Source string
	Line   int    // 0 when unknown
	Key    string // e.g. "host[3].address"; empty for whole-file problems
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": ")
		b.WriteString(e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one profile; all of them are reported
// at once so an operator fixes a profile in one pass.
type Errors []*Error

func (es Errors) Error() string {
	var lines []string
	for _, e := range es {
		lines = append(lines, e.Error())
	}
	return strings.Join(lines, "\n")
}

// Load reads and validates the profile at path.
func Load(path string, opt Options) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading host profile: %w", err)
	}
	return Parse(data, path, opt)
}

// LoadDefault returns the embedded dev profile (hosts/dev.toml).
func LoadDefault(opt Options) (*Profile, error) {
	return Parse(hosts.Dev, hosts.DevName, opt)
}

// LoadFlag is what a daemon's -profile flag does: an empty path means the
// embedded dev profile.
func LoadFlag(path string, opt Options) (*Profile, error) {
	if path == "" {
		return LoadDefault(opt)
	}
	return Load(path, opt)
}

// Parse decodes and validates a profile held in memory; source names it in
// error messages.
func Parse(data []byte, source string, opt Options) (*Profile, error) {
	p := &Profile{Source: source}
	var raw struct {
		Cluster Cluster `toml:"cluster"`
		Hosts   []Host  `toml:"host"`
	}
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, Errors{{Source: source, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}}
		}
		// Type mismatches come back as plain errors that carry the line and
		// key only in their text.
		if m := decodeErrRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, Errors{{Source: source, Line: line, Key: m[2], Msg: m[3]}}
		}
		return nil, Errors{{Source: source, Msg: err.Error()}}
	}
	p.Cluster, p.Hosts = raw.Cluster, raw.Hosts
	// A second, untyped decode tells an explicit zero from an absent key,
	// whatever TOML syntax (tables, inline tables, dotted keys) set it.
	var untyped map[string]any
	toml.Decode(string(data), &untyped)
	v := &validator{p: p, lines: scanKeyLines(data), opt: opt, raw: untyped}
	for _, k := range md.Undecoded() {
		v.unknownKey(k)
	}
	v.validate()
	if len(v.errs) > 0 {
		// File order; errors about the whole file (no line) come last.
		order := func(e *Error) int {
			if e.Line == 0 {
				return math.MaxInt
			}
			return e.Line
		}
		sort.SliceStable(v.errs, func(i, j int) bool { return order(v.errs[i]) < order(v.errs[j]) })
		return nil, v.errs
	}
	return p, nil
}

var decodeErrRE = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

type validator struct {
	p     *Profile
	lines keyLines
	opt   Options
	errs  Errors
	raw   map[string]any
}

// hostKeySet reports whether host[i] sets table.key explicitly.
func (v *validator) hostKeySet(i int, table, key string) bool {
	hosts, _ := v.raw["host"].([]map[string]any)
	if i >= len(hosts) {
		return false
	}
	t, _ := hosts[i][table].(map[string]any)
	_, ok := t[key]
	return ok
}

// errAt records a problem with the key at path (dotted, no indices) in
// array element index (-1 for none).
func (v *validator) errAt(path string, index int, format string, args ...any) {
	key := path
	if index >= 0 {
		head, rest, _ := strings.Cut(path, ".")
		key = fmt.Sprintf("%s[%d]", head, index)
		if rest != "" {
			key += "." + rest
		}
		if name := v.p.Hosts[index].Name; name != "" && head == "host" {
			key += fmt.Sprintf(" (%s)", name)
		}
	}
	v.errs = append(v.errs, &Error{Source: v.p.Source, Line: v.lines.line(path, index), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) unknownKey(k toml.Key) {
	path := strings.Join(k, ".")
	allowed := allowedKeys(reflect.TypeOf(struct {
		Cluster Cluster `toml:"cluster"`
		Hosts   []Host  `toml:"host"`
	}{}), k[:len(k)-1])
	msg := fmt.Sprintf("unknown key %q", k[len(k)-1])
	if len(allowed) > 0 {
		msg += fmt.Sprintf("; expected one of: %s", strings.Join(allowed, ", "))
	}
	v.errs = append(v.errs, &Error{Source: v.p.Source, Line: v.lines.line(path, -1), Key: path, Msg: msg})
}

// allowedKeys lists the TOML keys of the table at path, for telling an
// operator what a misspelt key should have been.
func allowedKeys(t reflect.Type, path []string) []string {
	for _, elem := range path {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return nil
		}
		found := false
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).Tag.Get("toml") == elem {
				t, found = t.Field(i).Type, true
				break
			}
		}
		if !found {
			return nil
		}
	}
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	return out
}

var logLevels = []string{"debug", "info", "warn", "error"}

func (v *validator) validate() {
	v.validateCluster()
	v.validateHosts()
	if len(v.errs) == 0 {
		v.validatePorts()
	}
}

func (v *validator) validateCluster() {
	c := &v.p.Cluster
	if c.Name == "" {
		v.errAt("cluster.name", -1, "missing: every cluster needs a name (a DNS label such as \"isp1\")")
	} else if !isLabel(c.Name) {
		v.errAt("cluster.name", -1, "%q is not a DNS label: use 1-63 lower-case letters, digits and '-'", c.Name)
	}
	if len(c.Domains) == 0 {
		v.errAt("cluster.domains", -1, "missing: list the mail domains the cluster receives mail for")
	}
	seen := map[string]bool{}
	for i, d := range c.Domains {
		d = strings.ToLower(d)
		c.Domains[i] = d
		if !isDomain(d) {
			v.errAt("cluster.domains", -1, "%q is not a domain name", d)
		}
		if seen[d] {
			v.errAt("cluster.domains", -1, "domain %q listed twice", d)
		}
		seen[d] = true
	}
	if c.Network == "" {
		v.errAt("cluster.network", -1, "missing: the cluster network in CIDR form, e.g. \"10.77.0.0/24\"")
	} else if pfx, err := netip.ParsePrefix(c.Network); err != nil {
		v.errAt("cluster.network", -1, "%q is not a network in CIDR form such as \"10.77.0.0/24\"", c.Network)
	} else if pfx.Masked() != pfx {
		v.errAt("cluster.network", -1, "%q has host bits set: did you mean %q?", c.Network, pfx.Masked().String())
	} else {
		v.p.network = pfx
	}
	v.validateKeyFile()
	if c.RunAs != "" && !isAccount(c.RunAs) {
		v.errAt("cluster.run_as", -1, "%q is not an account name: use lower-case letters, digits, '_' and '-', starting with a letter or '_'", c.RunAs)
	}
	if c.Layout == "" {
		v.errAt("cluster.layout", -1, "missing: one of %s", strings.Join(layoutNames(), ", "))
	} else if !validLayout(c.Layout) {
		v.errAt("cluster.layout", -1, "unknown mailbox layout %q: expected one of %s", c.Layout, strings.Join(layoutNames(), ", "))
	}
	switch c.Placement {
	case PlacementLetters, PlacementLeastUsers:
	case "":
		v.errAt("cluster.placement", -1, "missing: %q or %q", PlacementLetters, PlacementLeastUsers)
	default:
		v.errAt("cluster.placement", -1, "unknown placement policy %q: expected %q or %q", c.Placement, PlacementLetters, PlacementLeastUsers)
	}
	for _, port := range []struct {
		key string
		val int
	}{{"cluster.passwd.udp_port", c.Passwd.UDPPort}, {"cluster.passwd.tcp_port", c.Passwd.TCPPort}} {
		if port.val == 0 {
			v.errAt(port.key, -1, "missing: passwd has no standard port, so the profile must choose one (1-65535)")
		} else if port.val < 1 || port.val > 65535 {
			v.errAt(port.key, -1, "port %d out of range 1-65535", port.val)
		}
	}
	if c.Passwd.Timeout == 0 {
		c.Passwd.Timeout = Duration(DefaultPasswdTimeout)
	} else if c.Passwd.Timeout.Std() > time.Minute {
		v.errAt("cluster.passwd.timeout", -1, "%s is too long for a failover timeout: clients would hang that long when the primary is down (the paper uses 2s)", c.Passwd.Timeout.Std())
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = Duration(DefaultShutdownGrace)
	} else if c.ShutdownGrace.Std() > MaxShutdownGrace {
		v.errAt("cluster.shutdown_grace", -1, "%s is longer than %s: every stop and restart would wait that long for slow clients", c.ShutdownGrace.Std(), MaxShutdownGrace)
	}
	v.validatePasswdAuth()
	v.validateLog()
	if c.DNS.Zone == "" && len(c.Domains) > 0 {
		c.DNS.Zone = c.Domains[0]
	}
	c.DNS.Zone = strings.ToLower(c.DNS.Zone)
	if c.DNS.Zone != "" && !isDomain(c.DNS.Zone) {
		v.errAt("cluster.dns.zone", -1, "%q is not a domain name", c.DNS.Zone)
	}
	if c.DNS.Serial == 0 {
		c.DNS.Serial = DefaultDNSSerial
	}
	if c.DNS.TTL == 0 {
		c.DNS.TTL = DefaultDNSTTL
	} else if c.DNS.TTL < 0 {
		v.errAt("cluster.dns.ttl", -1, "TTL %d must be positive (seconds)", c.DNS.TTL)
	}
	v.validateNSS()
	v.validateMailAuth()
	v.validateMilters()
	if len(c.Queue.Retry) == 0 {
		c.Queue.Retry = DefaultQueueRetry()
	}
	if c.Queue.Lifetime == 0 {
		c.Queue.Lifetime = Duration(DefaultQueueLifetime)
	}
	v.validateMoves()
	pv := reflect.ValueOf(c.Ports)
	for i := 0; i < pv.NumField(); i++ {
		if n := int(pv.Field(i).Int()); n < 0 || n > 65535 {
			v.errAt("cluster.ports."+pv.Type().Field(i).Tag.Get("toml"), -1, "port %d out of range 1-65535 (0 or absent: the standard port)", n)
		}
	}
	if n := c.Ports.Metrics; n > 65535-(MetricsPorts-1) && n <= 65535 {
		v.errAt("cluster.ports.metrics", -1, "port %d leaves no room for the %d daemons' metrics ports (%d to %d): at most %d", n, MetricsPorts, n, n+MetricsPorts-1, 65535-(MetricsPorts-1))
	}
}

// groupNameRE is what useradd accepts by default for group names.
var groupNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// maxSocketPath is the room in sockaddr_un.sun_path, without the NUL.
const maxSocketPath = 107

// dirPart is everything before a path's last '/' (nothing without one),
// uncleaned, so that Nix (nix/lib/profile.nix) can say the same.
func dirPart(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func (v *validator) validateNSS() {
	n := &v.p.Cluster.NSS
	if n.PositiveTTL == 0 {
		n.PositiveTTL = Duration(DefaultNSSPositiveTTL)
	}
	if n.NegativeTTL == 0 {
		n.NegativeTTL = Duration(DefaultNSSNegativeTTL)
	}
	positiveOr(v, "cluster.nss.cache_entries", -1, &n.CacheEntries, DefaultNSSCacheEntries, "number of cached answers")
	if n.Socket == "" {
		n.Socket = DefaultNSSSocket
	} else if len(n.Socket) > maxSocketPath {
		v.errAt("cluster.nss.socket", -1, "%q is %d bytes: a Unix socket path holds at most %d", n.Socket, len(n.Socket), maxSocketPath)
	}
	if n.Socketmap != "" {
		if len(n.Socketmap) > maxSocketPath {
			v.errAt("cluster.nss.socketmap", -1, "%q is %d bytes: a Unix socket path holds at most %d", n.Socketmap, len(n.Socketmap), maxSocketPath)
		} else if dirPart(n.Socketmap) != dirPart(n.Socket) || n.Socketmap == n.Socket {
			v.errAt("cluster.nss.socketmap", -1, "%q: put it beside cluster.nss.socket (%q), in the same directory and under another name: that directory is the one nssd may write under systemd", n.Socketmap, n.Socket)
		}
	}
	if len(n.Groups) == 0 {
		n.Groups = DefaultNSSGroups()
	}
	names, gids := map[string]bool{}, map[int64]bool{}
	for i, g := range n.Groups {
		if !groupNameRE.MatchString(g.Name) {
			v.errAt("cluster.nss.groups", -1, "group %d: name %q: use 1-32 of a-z, 0-9, '_' and '-', starting with a letter or '_'", i, g.Name)
		} else if names[g.Name] {
			v.errAt("cluster.nss.groups", -1, "group %d: name %q listed twice", i, g.Name)
		}
		if g.GID < 1 || g.GID > 4294967294 {
			v.errAt("cluster.nss.groups", -1, "group %d (%s): gid %d out of range 1-4294967294", i, g.Name, g.GID)
		} else if gids[g.GID] {
			v.errAt("cluster.nss.groups", -1, "group %d (%s): gid %d listed twice", i, g.Name, g.GID)
		}
		names[g.Name], gids[g.GID] = true, true
	}
}

func (v *validator) validateKeyFile() {
	kf := v.p.Cluster.KeyFile
	if kf == "" {
		v.errAt("cluster.key_file", -1, "missing: the path of the cluster key that seals passwd traffic")
		return
	}
	if v.opt.SkipFiles {
		return
	}
	st, err := os.Stat(kf)
	switch {
	case errors.Is(err, os.ErrNotExist):
		v.errAt("cluster.key_file", -1, "cluster key file %s does not exist: create it (mode 0600 owned by the daemons' user, or 0640 with their group) before starting correo", kf)
	case err != nil:
		v.errAt("cluster.key_file", -1, "cannot read cluster key file: %v", err)
	case !st.Mode().IsRegular():
		v.errAt("cluster.key_file", -1, "cluster key file %s is not a regular file", kf)
	default:
		if err := keyfile.CheckMode(kf, st.Mode().Perm()); err != nil {
			v.errAt("cluster.key_file", -1, "%v", err)
		}
	}
}

// validatePasswdAuth applies the defaults of passwdd's login path: hash
// cost, credentials cache and verification queue.
func (v *validator) validatePasswdAuth() {
	pw := &v.p.Cluster.Passwd
	switch {
	case pw.BcryptCost == 0:
		pw.BcryptCost = DefaultBcryptCost
	case pw.BcryptCost < MinBcryptCost || pw.BcryptCost > MaxBcryptCost:
		v.errAt("cluster.passwd.bcrypt_cost", -1, "%d out of range %d-%d (each step doubles the CPU a login costs; 10 is about 75 ms of a core)",
			pw.BcryptCost, MinBcryptCost, MaxBcryptCost)
	}
	if pw.AuthCacheTTL == 0 {
		pw.AuthCacheTTL = Duration(DefaultAuthCacheTTL)
	} else if pw.AuthCacheTTL.Std() > 24*time.Hour {
		v.errAt("cluster.passwd.auth_cache_ttl", -1, "%s is longer than a day: a verified password would stay in memory that long", pw.AuthCacheTTL.Std())
	}
	positiveOr(v, "cluster.passwd.auth_cache_entries", -1, &pw.AuthCacheEntries, DefaultAuthCacheEntries, "number of cached logins")
	positiveOr(v, "cluster.passwd.auth_queue", -1, &pw.AuthQueue, DefaultAuthQueue, "logins waiting for a verifier")
}

// positiveOr gives a count the profile left out (zero) its default and
// reports a negative one; what, if not empty, says what it counts.
func positiveOr[T ~int | ~int64](v *validator, key string, index int, f *T, def T, what string) {
	switch {
	case *f == 0:
		*f = def
	case *f < 0 && what != "":
		v.errAt(key, index, "%d must be positive (%s)", *f, what)
	case *f < 0:
		v.errAt(key, index, "%d must be positive", *f)
	}
}

func (v *validator) validateMoves() {
	m := &v.p.Cluster.Moves
	positiveOr(v, "cluster.moves.grace", -1, &m.Grace, Duration(DefaultMoveGrace), "how long a moved mailbox is kept on its old host")
	positiveOr(v, "cluster.moves.freeze_timeout", -1, &m.FreezeTimeout, Duration(DefaultMoveFreezeTimeout), "the wait for sessions to end")
	if m.RateLimitMB < 0 {
		v.errAt("cluster.moves.rate_limit_mb", -1, "%d must be positive (MB/s; 0 for no limit)", m.RateLimitMB)
	}
	if m.JournalDir == "" {
		m.JournalDir = DefaultMoveJournalDir
	}
}

func (v *validator) validateMailAuth() {
	m := &v.p.Cluster.MailAuth
	switch m.SPFAll {
	case "":
		m.SPFAll = SPFFail
	case SPFFail, SPFSoftfail:
	default:
		v.errAt("cluster.mail_auth.spf_all", -1, "unknown SPF verdict %q: expected %q (-all) or %q (~all)", m.SPFAll, SPFFail, SPFSoftfail)
	}
	switch m.DMARCPolicy {
	case "":
		m.DMARCPolicy = DMARCNone
	case DMARCNone, DMARCQuarantine, DMARCReject:
	default:
		v.errAt("cluster.mail_auth.dmarc_policy", -1, "unknown DMARC policy %q: expected %q, %q or %q", m.DMARCPolicy, DMARCNone, DMARCQuarantine, DMARCReject)
	}
	if m.DKIMKeyDir == "" {
		m.DKIMKeyDir = DefaultDKIMKeyDir
	}
	if m.AuthServID == "" {
		m.AuthServID = v.p.Cluster.DNS.Zone
	} else if m.AuthServID = strings.ToLower(m.AuthServID); !isDomain(m.AuthServID) {
		v.errAt("cluster.mail_auth.authserv_id", -1, "%q is not a domain name (RFC 8601 wants the receiving host's or cluster's name)", m.AuthServID)
	}
	switch m.Inbound {
	case "":
		m.Inbound = InboundEnforce
	case InboundEnforce, InboundRecord:
	default:
		v.errAt("cluster.mail_auth.inbound", -1, "unknown inbound policy %q: expected %q or %q", m.Inbound, InboundEnforce, InboundRecord)
	}
	if m.DKIMPublishWait == 0 {
		m.DKIMPublishWait = Duration(DefaultDKIMPublishWait)
	}
	if m.DKIMRecords != "" {
		f, err := dkimkeys.Load(v.p.DKIMRecordsPath())
		if err != nil {
			v.errAt("cluster.mail_auth.dkim_records", -1, "%v", err)
		} else {
			for _, k := range f.Keys {
				if !slices.Contains(v.p.Cluster.Domains, k.Domain) {
					v.errAt("cluster.mail_auth.dkim_records", -1, "key %s is for %q, which is not one of the cluster's domains", k.Selector, k.Domain)
				}
			}
			v.p.DKIM = f.Keys
		}
	}
	if m.DMARCReports != "" && !isMailAddress(m.DMARCReports) {
		v.errAt("cluster.mail_auth.dmarc_reports", -1, "%q is not a plain address such as \"dmarc@example.net\" (it goes into a DNS record: no spaces, ';', ',' or '!')", m.DMARCReports)
	}
}

func (v *validator) validateMilters() {
	seen := map[string]bool{}
	for i := range v.p.Cluster.Milters {
		m := &v.p.Cluster.Milters[i]
		key := fmt.Sprintf("cluster.milter[%d]", i)
		if !isLabel(m.Name) {
			v.errAt(key+".name", -1, "%q is not a name: use 1-63 lower-case letters, digits and '-'", m.Name)
		} else if seen[m.Name] {
			v.errAt(key+".name", -1, "milter %q named twice", m.Name)
		}
		seen[m.Name] = true
		if !validMilterAddress(m.Address) {
			v.errAt(key+".address", -1, "%q is not a milter address: want \"tcp:HOST:PORT\" or \"unix:/PATH\"", m.Address)
		}
		if len(m.Roles) == 0 {
			v.errAt(key+".roles", -1, "missing: \"mx\" (mail from outside), \"relay\" (the cluster's own mail) or both")
		}
		for _, r := range m.Roles {
			if r != RoleMX && r != RoleRelay {
				v.errAt(key+".roles", -1, "role %q has no smtpd: expected \"mx\" or \"relay\"", r)
			}
		}
		if m.Timeout == 0 {
			m.Timeout = Duration(DefaultMilterTimeout)
		} else if m.Timeout < 0 || m.Timeout.Std() > 10*time.Minute {
			v.errAt(key+".timeout", -1, "%s is out of range: more than 0s, at most 10m0s", m.Timeout.Std())
		}
		switch m.OnFailure {
		case "":
			m.OnFailure = MilterTempfail
		case MilterTempfail, MilterAccept:
		default:
			v.errAt(key+".on_failure", -1, "unknown failure policy %q: expected %q or %q", m.OnFailure, MilterTempfail, MilterAccept)
		}
	}
}

// validMilterAddress accepts tcp:HOST:PORT (a port of 1-65535) and
// unix:/PATH, the two forms smtpd dials.
func validMilterAddress(a string) bool {
	if p, ok := strings.CutPrefix(a, "unix:"); ok {
		return strings.HasPrefix(p, "/") && len(p) > 1
	}
	rest, ok := strings.CutPrefix(a, "tcp:")
	if !ok {
		return false
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 {
		return false
	}
	port, err := strconv.Atoi(rest[i+1:])
	return err == nil && port >= 1 && port <= 65535 && strings.Trim(rest[:i], "[]") != ""
}

// isMailAddress accepts local@domain with a dot-atom local part of
// letters, digits and ._+-, the kind that can sit in a DMARC record.
func isMailAddress(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" || len(local) > 64 || !isDomain(strings.ToLower(domain)) {
		return false
	}
	for _, r := range local {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-", r)) {
			return false
		}
	}
	return local[0] != '.' && local[len(local)-1] != '.' && !strings.Contains(local, "..")
}

func (v *validator) validateLog() {
	l := &v.p.Cluster.Log
	if l.Target == "" {
		l.Target = "stderr"
	}
	switch l.Target {
	case "stderr", "journald":
		if l.Network != "" {
			v.errAt("cluster.log.network", -1, "network is only for target \"syslog\" (target is %q)", l.Target)
		}
	case "syslog":
		if l.Network == "" {
			l.Network = "udp"
		}
		switch l.Network {
		case "udp", "tcp", "unix":
		default:
			v.errAt("cluster.log.network", -1, "unknown syslog network %q: expected udp, tcp or unix", l.Network)
		}
	default:
		v.errAt("cluster.log.target", -1, "unknown log target %q: expected stderr, journald or syslog", l.Target)
	}
	if l.Level == "" {
		l.Level = "info"
	}
	ok := false
	for _, lv := range logLevels {
		ok = ok || l.Level == lv
	}
	if !ok {
		v.errAt("cluster.log.level", -1, "unknown log level %q: expected one of %s", l.Level, strings.Join(logLevels, ", "))
	}
}

var poolNames = map[string]bool{"mx": true, "relay": true, "pop": true}

func (v *validator) validateHosts() {
	p := v.p
	if len(p.Hosts) == 0 {
		v.errs = append(v.errs, &Error{Source: p.Source, Key: "host", Msg: "no [[host]] entries: a cluster needs at least a passwd-primary and a storage host"})
		return
	}
	names := map[string]int{}
	addrs := map[netip.Addr]int{}
	for i := range p.Hosts {
		h := &p.Hosts[i]
		switch {
		case h.Name == "":
			v.errAt("host.name", i, "missing: every host needs a name")
		case !isLabel(h.Name):
			v.errAt("host.name", i, "%q is not a DNS label: use 1-63 lower-case letters, digits and '-'", h.Name)
		case poolNames[h.Name]:
			v.errAt("host.name", i, "%q is the name of a DNS pool (mx, relay, pop): choose another host name", h.Name)
		default:
			if j, dup := names[h.Name]; dup {
				v.errAt("host.name", i, "duplicate host name %q (also host[%d])", h.Name, j)
			} else {
				names[h.Name] = i
			}
		}
		if h.Address == "" {
			v.errAt("host.address", i, "missing: the host's IP address")
		} else if a, err := netip.ParseAddr(h.Address); err != nil || a.Zone() != "" {
			v.errAt("host.address", i, "%q is not an IP address", h.Address)
		} else {
			h.addr = a.Unmap()
			if h.addr.String() != h.Address {
				// The zone, the Nix modules and the logs all use the written
				// form, so it must be the one every tool prints.
				v.errAt("host.address", i, "write the address in canonical form %q, not %q", h.addr.String(), h.Address)
			}
			if j, dup := addrs[h.addr]; dup {
				v.errAt("host.address", i, "duplicate address %s (also host[%d] %s)", h.addr, j, p.Hosts[j].Name)
			} else {
				addrs[h.addr] = i
			}
			if p.network.IsValid() && !p.network.Contains(h.addr) {
				v.errAt("host.address", i, "address %s is outside the cluster network %s", h.addr, p.network)
			}
		}
		v.validateRoles(i)
		v.validateHostTables(i)
	}
	count := func(r Role) int { return len(p.HostsWithRole(r)) }
	if count(RolePasswdPrimary) == 0 {
		v.errs = append(v.errs, &Error{Source: p.Source, Key: "host", Msg: "no host has role passwd-primary: exactly one must"})
	} else if count(RolePasswdPrimary) > 1 {
		v.errs = append(v.errs, &Error{Source: p.Source, Key: "host", Msg: "more than one host has role passwd-primary: exactly one must"})
	}
	if count(RolePasswdSecondary) > 1 {
		v.errs = append(v.errs, &Error{Source: p.Source, Key: "host", Msg: "more than one host has role passwd-secondary: at most one may"})
	}
	if count(RoleStorage) == 0 {
		v.errs = append(v.errs, &Error{Source: p.Source, Key: "host", Msg: "no host has role storage: at least one must hold the mailboxes"})
	}
	if count(RoleLoghost) > 1 {
		v.errs = append(v.errs, &Error{Source: p.Source, Key: "host", Msg: "more than one host has role loghost: the cluster logs to one central loghost"})
	}
	if l := p.Cluster.Log; l.Target == "syslog" && l.Network != "unix" && count(RoleLoghost) == 0 {
		v.errAt("cluster.log.target", -1, "log target is syslog over %s but no host has role loghost", l.Network)
	}
}

func (v *validator) validateRoles(i int) {
	h := &v.p.Hosts[i]
	if len(h.Roles) == 0 {
		v.errAt("host.roles", i, "missing: list the host's roles from %v", Roles())
	}
	seen := map[Role]bool{}
	for j, r := range h.Roles {
		if r == roleLegacyPOPProxy {
			r, h.Roles[j] = RoleMailProxy, RoleMailProxy
		}
		if !r.valid() {
			v.errAt("host.roles", i, "unknown role %q: expected one of %v", r, Roles())
		} else if seen[r] {
			v.errAt("host.roles", i, "role %q listed twice", r)
		}
		seen[r] = true
	}
	if seen[RolePasswdPrimary] && seen[RolePasswdSecondary] {
		v.errAt("host.roles", i, "a host cannot be both passwd-primary and passwd-secondary: the secondary exists to survive the primary's host")
	}
}

// validateHostTables checks each role's settings table and fills in the
// defaults, so every consumer sees complete settings.
func (v *validator) validateHostTables(i int) {
	h := &v.p.Hosts[i]
	if h.MX != nil && !h.HasRole(RoleMX) {
		v.errAt("host.mx", i, "[host.mx] settings on a host without role mx")
	}
	if h.HasRole(RoleMX) {
		if h.MX == nil {
			h.MX = &MX{Preference: DefaultMXPreference}
		} else if h.MX.Preference < 0 || h.MX.Preference > 65535 {
			v.errAt("host.mx.preference", i, "MX preference %d out of range 0-65535", h.MX.Preference)
		} else if !v.hostKeySet(i, "mx", "preference") {
			h.MX.Preference = DefaultMXPreference
		}
	}
	if h.Storage != nil && !h.HasRole(RoleStorage) {
		v.errAt("host.storage", i, "[host.storage] settings on a host without role storage")
	}
	if h.HasRole(RoleStorage) {
		switch {
		case h.Storage == nil || h.Storage.DataDir == "":
			v.errAt("host.storage.data_dir", i, "missing: a storage host needs [host.storage] data_dir, the root of its Maildirs")
		case h.Storage.Weight < 0:
			v.errAt("host.storage.weight", i, "weight %d must be positive", h.Storage.Weight)
		case h.Storage.Weight == 0:
			h.Storage.Weight = DefaultStorageWeight
		}
	}
	if h.SMTPD != nil && !h.HasRole(RoleMX) && !h.HasRole(RoleRelay) {
		v.errAt("host.smtpd", i, "[host.smtpd] settings on a host without role mx or relay")
	}
	if h.HasRole(RoleMX) || h.HasRole(RoleRelay) {
		if h.SMTPD == nil {
			h.SMTPD = &SMTPD{}
		}
		s := h.SMTPD
		positiveOr(v, "host.smtpd.max_message_bytes", i, &s.MaxMessageBytes, DefaultMaxMessageBytes, "")
		positiveOr(v, "host.smtpd.max_recipients", i, &s.MaxRecipients, DefaultMaxRecipients, "")
		positiveOr(v, "host.smtpd.max_connections", i, &s.MaxConnections, DefaultMaxConnections, "")
		positiveOr(v, "host.smtpd.max_connections_per_client", i, &s.MaxConnectionsPerClient, DefaultMaxConnectionsPerClient, "")
		positiveOr(v, "host.smtpd.max_messages_per_hour", i, &s.MaxMessagesPerHour, DefaultMaxMessagesPerHour, "")
		positiveOr(v, "host.smtpd.workers", i, &s.Workers, DefaultSMTPWorkers, "")
		if s.CommandTimeout == 0 {
			s.CommandTimeout = Duration(DefaultSMTPCommandTimeout)
		}
		if s.DataTimeout == 0 {
			s.DataTimeout = Duration(DefaultSMTPDataTimeout)
		}
		if s.MaxConnectionsPerClient > s.MaxConnections {
			v.errAt("host.smtpd.max_connections_per_client", i, "%d exceeds max_connections %d", s.MaxConnectionsPerClient, s.MaxConnections)
		}
		if s.DataTimeout < s.CommandTimeout {
			v.errAt("host.smtpd.data_timeout", i, "%s is shorter than command_timeout %s: a DATA phase is at least one read", s.DataTimeout.Std(), s.CommandTimeout.Std())
		}
	}
	if h.LegacyPOPProxy != nil {
		if h.MailProxy != nil {
			v.errAt("host.popproxy", i, "[host.popproxy] is the old name of [host.mailproxy]: keep one of them")
		}
		h.MailProxy, h.LegacyPOPProxy = h.LegacyPOPProxy, nil
	}
	if h.MailProxy != nil && !h.HasRole(RoleMailProxy) {
		v.errAt("host.mailproxy", i, "[host.mailproxy] settings on a host without role mailproxy")
	}
	if h.HasRole(RoleMailProxy) {
		if h.MailProxy == nil {
			h.MailProxy = &MailProxy{}
		}
		x := h.MailProxy
		positiveOr(v, "host.mailproxy.max_connections", i, &x.MaxConnections, DefaultProxyMaxConnections, "")
		positiveOr(v, "host.mailproxy.max_connections_per_client", i, &x.MaxConnectionsPerClient, DefaultProxyMaxConnsPerClient, "")
		if x.FailDelay == 0 {
			x.FailDelay = Duration(DefaultProxyFailDelay)
		}
		if x.MaxFailDelay == 0 {
			x.MaxFailDelay = Duration(DefaultProxyMaxFailDelay)
		}
		if x.MaxConnectionsPerClient > x.MaxConnections {
			v.errAt("host.mailproxy.max_connections_per_client", i, "%d exceeds max_connections %d", x.MaxConnectionsPerClient, x.MaxConnections)
		}
		if x.MaxFailDelay < x.FailDelay {
			v.errAt("host.mailproxy.max_fail_delay", i, "%s is shorter than fail_delay %s: the delay starts at fail_delay and doubles up to max_fail_delay", x.MaxFailDelay.Std(), x.FailDelay.Std())
		}
	}
	if h.TLS != nil && (h.TLS.Cert == "" || h.TLS.Key == "") {
		v.errAt("host.tls", i, "[host.tls] needs both cert and key")
	}
}

// validatePorts refuses two services bound to the same address, port and
// transport: on a host with several roles the operator must move one in
// [cluster.ports], as dev.toml does.
func (v *validator) validatePorts() {
	p := v.p
	for i := range p.Hosts {
		h := &p.Hosts[i]
		used := map[string]Service{}
		for _, s := range Services() {
			if !h.Provides(s) {
				continue
			}
			for _, tr := range []Transport{TCP, UDP} {
				if TransportOf(s)&tr == 0 {
					continue
				}
				k := fmt.Sprintf("%d/%d", tr, p.Port(s))
				if other, clash := used[k]; clash {
					v.errAt("host.roles", i, "services %s and %s would both listen on port %d: set a different port for one of them in [cluster.ports]", other, s, p.Port(s))
				}
				used[k] = s
			}
		}
	}
}

// isLabel accepts lower-case DNS labels (RFC 1123 host names).
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func isDomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if !isLabel(l) {
			return false
		}
	}
	return true
}

// isAccount accepts the portable user names of POSIX and Debian's
// adduser default: [a-z_][a-z0-9_-]*, at most 32 bytes.
func isAccount(s string) bool {
	if len(s) == 0 || len(s) > 32 || !(s[0] == '_' || 'a' <= s[0] && s[0] <= 'z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
