package cluster

import "time"

// Settings is the profile as every consumer sees it after defaults: the
// same document nix/lib/default.nix computes with builtins.fromTOML. The
// golden files in nix/lib/tests hold it for every profile in hosts/, and
// both implementations are checked against them, so the Nix modules and
// the daemons can never disagree about a port or a default.
type Settings struct {
	Cluster   ClusterSettings               `json:"cluster"`
	Hosts     map[string]HostSettings       `json:"hosts"`
	Endpoints map[Service][]EndpointSetting `json:"endpoints"`
}

// ClusterSettings is [cluster] with defaults applied and every port resolved.
type ClusterSettings struct {
	Name            string           `json:"name"`
	Domains         []string         `json:"domains"`
	Network         string           `json:"network"`
	KeyFile         string           `json:"key_file"`
	Layout          string           `json:"layout"`
	Placement       string           `json:"placement"`
	TrustedNetwork  bool             `json:"trusted_network"`
	RunAs           string           `json:"run_as"`
	ShutdownGraceMS int64            `json:"shutdown_grace_ms"`
	Passwd          PasswdSettings   `json:"passwd"`
	Log             LogSettings      `json:"log"`
	DNS             DNS              `json:"dns"`
	Ports           map[Service]int  `json:"ports"`
	NSS             NSSSettings      `json:"nss"`
	Queue           QueueSettings    `json:"queue"`
	MailAuth        MailAuthSettings `json:"mail_auth"`
	Milters         []MilterSettings `json:"milters"`
	Moves           MovesSettings    `json:"moves"`
}

// MovesSettings is [cluster.moves] with defaults, durations in
// milliseconds.
type MovesSettings struct {
	GraceMS         int64  `json:"grace_ms"`
	FreezeTimeoutMS int64  `json:"freeze_timeout_ms"`
	RateLimitMB     int    `json:"rate_limit_mb"`
	JournalDir      string `json:"journal_dir"`
}

// MilterSettings is one [[cluster.milter]] with defaults.
type MilterSettings struct {
	Name      string `json:"name"`
	Address   string `json:"address"`
	Roles     []Role `json:"roles"`
	TimeoutMS int64  `json:"timeout_ms"`
	OnFailure string `json:"on_failure"`
}

// MailAuthSettings is [cluster.mail_auth] with defaults.
type MailAuthSettings struct {
	SPFAll            string            `json:"spf_all"`
	DMARCPolicy       string            `json:"dmarc_policy"`
	DMARCReports      string            `json:"dmarc_reports"`
	DKIMRecords       string            `json:"dkim_records"`
	DKIMKeyDir        string            `json:"dkim_key_dir"`
	DKIMPublishWaitMS int64             `json:"dkim_publish_wait_ms"`
	DKIMKeys          []DKIMKeySettings `json:"dkim_keys"`
	AuthServID        string            `json:"authserv_id"`
	Inbound           string            `json:"inbound"`
}

// DKIMKeySettings is one published DKIM key of the records file.
type DKIMKeySettings struct {
	Domain    string `json:"domain"`
	Selector  string `json:"selector"`
	Algorithm string `json:"algorithm"`
	PublicKey string `json:"public_key"`
	Created   string `json:"created"`
}

// QueueSettings is [cluster.queue] with defaults, durations in
// milliseconds.
type QueueSettings struct {
	RetryMS    []int64 `json:"retry_ms"`
	LifetimeMS int64   `json:"lifetime_ms"`
}

// NSSSettings is [cluster.nss] with defaults, durations in milliseconds.
type NSSSettings struct {
	PositiveTTLMS int64      `json:"positive_ttl_ms"`
	NegativeTTLMS int64      `json:"negative_ttl_ms"`
	CacheEntries  int        `json:"cache_entries"`
	Socket        string     `json:"socket"`
	Socketmap     string     `json:"socketmap"`
	Groups        []NSSGroup `json:"groups"`
}

// PasswdSettings carries the failover timeout in milliseconds, a unit both
// Go and Nix can print without a duration parser.
type PasswdSettings struct {
	UDPPort          int   `json:"udp_port"`
	TCPPort          int   `json:"tcp_port"`
	TimeoutMS        int64 `json:"timeout_ms"`
	BcryptCost       int   `json:"bcrypt_cost"`
	AuthCacheTTLMS   int64 `json:"auth_cache_ttl_ms"`
	AuthCacheEntries int   `json:"auth_cache_entries"`
	AuthQueue        int   `json:"auth_queue"`
}

// LogSettings is [cluster.log]; Network is null unless the target is syslog.
type LogSettings struct {
	Target  string  `json:"target"`
	Network *string `json:"network"`
	Level   string  `json:"level"`
}

// HostSettings is one [[host]] with defaults and its listen addresses.
type HostSettings struct {
	Name      string             `json:"name"`
	Address   string             `json:"address"`
	Roles     []Role             `json:"roles"`
	Listen    map[Service]string `json:"listen"`
	MX        *MX                `json:"mx"`
	Storage   *Storage           `json:"storage"`
	SMTPD     *SMTPDSettings     `json:"smtpd"`
	MailProxy *MailProxySettings `json:"mailproxy"`
	TLS       *TLS               `json:"tls"`
}

// SMTPDSettings is [host.smtpd] with defaults, durations in milliseconds.
type SMTPDSettings struct {
	SMTPD
	CommandTimeoutMS int64 `json:"command_timeout_ms"`
	DataTimeoutMS    int64 `json:"data_timeout_ms"`
	Workers          int   `json:"workers"`
}

// MailProxySettings is [host.mailproxy] with defaults, durations in
// milliseconds.
type MailProxySettings struct {
	FailDelayMS             int64 `json:"fail_delay_ms"`
	MaxFailDelayMS          int64 `json:"max_fail_delay_ms"`
	MaxConnections          int   `json:"max_connections"`
	MaxConnectionsPerClient int   `json:"max_connections_per_client"`
}

// EndpointSetting is one provider of a service.
type EndpointSetting struct {
	Host   string `json:"host"`
	Listen string `json:"listen"`
}

// Settings computes the resolved settings document.
func (p *Profile) Settings() Settings {
	c := p.Cluster
	s := Settings{
		Cluster: ClusterSettings{
			Name: c.Name, Domains: c.Domains, Network: c.Network, KeyFile: c.KeyFile,
			Layout: c.Layout, Placement: c.Placement, TrustedNetwork: c.TrustedNetwork, RunAs: c.RunAs,
			ShutdownGraceMS: c.ShutdownGrace.Std().Milliseconds(),
			Passwd: PasswdSettings{UDPPort: c.Passwd.UDPPort, TCPPort: c.Passwd.TCPPort,
				TimeoutMS: c.Passwd.Timeout.Std().Milliseconds(), BcryptCost: c.Passwd.BcryptCost,
				AuthCacheTTLMS: c.Passwd.AuthCacheTTL.Std().Milliseconds(), AuthCacheEntries: c.Passwd.AuthCacheEntries,
				AuthQueue: c.Passwd.AuthQueue},
			Log:   LogSettings{Target: c.Log.Target, Level: c.Log.Level},
			DNS:   c.DNS,
			Ports: map[Service]int{},
			NSS: NSSSettings{PositiveTTLMS: c.NSS.PositiveTTL.Std().Milliseconds(),
				NegativeTTLMS: c.NSS.NegativeTTL.Std().Milliseconds(), CacheEntries: c.NSS.CacheEntries,
				Socket: c.NSS.Socket, Socketmap: c.NSS.Socketmap, Groups: c.NSS.Groups},
			MailAuth: MailAuthSettings{SPFAll: c.MailAuth.SPFAll, DMARCPolicy: c.MailAuth.DMARCPolicy,
				DMARCReports: c.MailAuth.DMARCReports, DKIMRecords: c.MailAuth.DKIMRecords,
				DKIMKeyDir: c.MailAuth.DKIMKeyDir, DKIMPublishWaitMS: c.MailAuth.DKIMPublishWait.Std().Milliseconds(),
				DKIMKeys: []DKIMKeySettings{}, AuthServID: c.MailAuth.AuthServID, Inbound: c.MailAuth.Inbound},
		},
		Hosts:     map[string]HostSettings{},
		Endpoints: map[Service][]EndpointSetting{},
	}
	for _, k := range p.DKIM {
		s.Cluster.MailAuth.DKIMKeys = append(s.Cluster.MailAuth.DKIMKeys, DKIMKeySettings{Domain: k.Domain, Selector: k.Selector,
			Algorithm: string(k.Algorithm), PublicKey: k.PublicKey, Created: k.Created.UTC().Format(time.RFC3339)})
	}
	s.Cluster.Milters = []MilterSettings{}
	for _, m := range c.Milters {
		s.Cluster.Milters = append(s.Cluster.Milters, MilterSettings{Name: m.Name, Address: m.Address, Roles: m.Roles,
			TimeoutMS: m.Timeout.Std().Milliseconds(), OnFailure: m.OnFailure})
	}
	s.Cluster.Moves = MovesSettings{GraceMS: c.Moves.Grace.Std().Milliseconds(), FreezeTimeoutMS: c.Moves.FreezeTimeout.Std().Milliseconds(),
		RateLimitMB: c.Moves.RateLimitMB, JournalDir: c.Moves.JournalDir}
	s.Cluster.Queue.LifetimeMS = c.Queue.Lifetime.Std().Milliseconds()
	s.Cluster.Queue.RetryMS = []int64{}
	for _, r := range c.Queue.Retry {
		s.Cluster.Queue.RetryMS = append(s.Cluster.Queue.RetryMS, r.Std().Milliseconds())
	}
	if c.Log.Target == "syslog" {
		n := c.Log.Network
		s.Cluster.Log.Network = &n
	}
	for _, svc := range Services() {
		s.Cluster.Ports[svc] = p.Port(svc)
		eps := []EndpointSetting{}
		for _, e := range p.Endpoints(svc) {
			eps = append(eps, EndpointSetting{Host: e.Host, Listen: e.Addr.String()})
		}
		s.Endpoints[svc] = eps
	}
	for _, h := range p.Hosts {
		hs := HostSettings{Name: h.Name, Address: h.Address, Roles: h.Roles, Listen: map[Service]string{},
			MX: h.MX, Storage: h.Storage, TLS: h.TLS}
		if s := h.SMTPD; s != nil {
			hs.SMTPD = &SMTPDSettings{SMTPD: *s, CommandTimeoutMS: s.CommandTimeout.Std().Milliseconds(),
				DataTimeoutMS: s.DataTimeout.Std().Milliseconds(), Workers: s.Workers}
		}
		if x := h.MailProxy; x != nil {
			hs.MailProxy = &MailProxySettings{FailDelayMS: x.FailDelay.Std().Milliseconds(), MaxFailDelayMS: x.MaxFailDelay.Std().Milliseconds(),
				MaxConnections: x.MaxConnections, MaxConnectionsPerClient: x.MaxConnectionsPerClient}
		}
		for _, svc := range Services() {
			if a, err := p.Listen(h.Name, svc); err == nil {
				hs.Listen[svc] = a.String()
			}
		}
		s.Hosts[h.Name] = hs
	}
	return s
}
