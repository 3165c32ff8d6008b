package cluster

import (
	"fmt"
	"net/netip"
)

// Service is one listening endpoint a role provides.
type Service string

const (
	SvcSMTP        Service = "smtp"         // mx: inbound mail, port 25
	SvcRelay       Service = "relay"        // relay: port 25 for the cluster's own hosts
	SvcSubmission  Service = "submission"   // relay: 587, STARTTLS then AUTH
	SvcSubmissions Service = "submissions"  // relay: 465, implicit TLS
	SvcLMTP        Service = "lmtp"         // storage: pdeliveryd, 24
	SvcPOP3        Service = "pop3"         // mailproxy: 110
	SvcPOP3S       Service = "pop3s"        // mailproxy: 995
	SvcPOP3Backend Service = "pop3_backend" // storage: pop3d behind the proxy, 110
	SvcIMAP        Service = "imap"         // mailproxy: 143, STARTTLS
	SvcIMAPS       Service = "imaps"        // mailproxy: 993
	SvcIMAPBackend Service = "imap_backend" // storage: imapd behind the proxy, 143
	SvcDNS         Service = "dns"          // dns: 53, UDP and TCP
	SvcSyslog      Service = "syslog"       // loghost: 514, UDP and TCP
	SvcPasswd      Service = "passwd"       // passwd servers: queries, UDP
	SvcPasswdAdmin Service = "passwd_admin" // passwd servers: admin and replication, TCP
	SvcMailboxMove Service = "mailbox_move" // storage: pdeliveryd's mailbox moves between storage hosts, 4424

	// Each daemon program serves its metrics on its own port: the
	// profile's one metrics port (9420) plus the program's fixed offset,
	// so several daemons on one host never clash and a scraper finds
	// every daemon of every host from the profile alone.
	SvcMetricsPasswdd    Service = "metrics_passwdd"    // 9420
	SvcMetricsNSSD       Service = "metrics_nssd"       // 9421, every host
	SvcMetricsSMTPD      Service = "metrics_smtpd"      // 9422
	SvcMetricsPdeliveryd Service = "metrics_pdeliveryd" // 9423
	SvcMetricsPOP3D      Service = "metrics_pop3d"      // 9424
	SvcMetricsIMAPD      Service = "metrics_imapd"      // 9425
	SvcMetricsMailproxy  Service = "metrics_mailproxy"  // 9426
)

// DefaultMetricsPort is the standard [cluster.ports] metrics: the first of
// MetricsPorts consecutive ports, one per daemon program.
const DefaultMetricsPort = 9420

// MetricsPorts is how many ports from the metrics port on are used.
const MetricsPorts = 7

// metricsOffset is each metrics service's place after the metrics port.
var metricsOffset = map[Service]int{
	SvcMetricsPasswdd: 0, SvcMetricsNSSD: 1, SvcMetricsSMTPD: 2, SvcMetricsPdeliveryd: 3,
	SvcMetricsPOP3D: 4, SvcMetricsIMAPD: 5, SvcMetricsMailproxy: 6,
}

// MetricsService is the metrics service of a daemon program, or "" for
// a program that has none.
func MetricsService(program string) Service {
	s := Service("metrics_" + program)
	if _, ok := metricsOffset[s]; !ok {
		return ""
	}
	return s
}

// Transport says which socket types a service listens on.
type Transport int

const (
	TCP Transport = 1 << iota
	UDP
)

type serviceInfo struct {
	roles       []Role
	stdPort     int
	transport   Transport
	description string
}

var services = map[Service]serviceInfo{
	SvcSMTP:        {[]Role{RoleMX}, 25, TCP, "SMTP for inbound mail"},
	SvcRelay:       {[]Role{RoleRelay}, 25, TCP, "SMTP relay for the cluster's hosts"},
	SvcSubmission:  {[]Role{RoleRelay}, 587, TCP, "message submission"},
	SvcSubmissions: {[]Role{RoleRelay}, 465, TCP, "message submission over TLS"},
	SvcLMTP:        {[]Role{RoleStorage}, 24, TCP, "LMTP delivery"},
	SvcPOP3:        {[]Role{RoleMailProxy}, 110, TCP, "POP3 proxy"},
	SvcPOP3S:       {[]Role{RoleMailProxy}, 995, TCP, "POP3 proxy over TLS"},
	SvcPOP3Backend: {[]Role{RoleStorage}, 110, TCP, "POP3 server behind the proxy"},
	SvcIMAP:        {[]Role{RoleMailProxy}, 143, TCP, "IMAP proxy"},
	SvcIMAPS:       {[]Role{RoleMailProxy}, 993, TCP, "IMAP proxy over TLS"},
	SvcIMAPBackend: {[]Role{RoleStorage}, 143, TCP, "IMAP server behind the proxy"},
	SvcDNS:         {[]Role{RoleDNS}, 53, TCP | UDP, "DNS"},
	SvcSyslog:      {[]Role{RoleLoghost}, 514, TCP | UDP, "syslog"},
	SvcPasswd:      {[]Role{RolePasswdPrimary, RolePasswdSecondary}, 0, UDP, "passwd queries"},
	SvcPasswdAdmin: {[]Role{RolePasswdPrimary, RolePasswdSecondary}, 0, TCP, "passwd admin and replication"},
	SvcMailboxMove: {[]Role{RoleStorage}, 4424, TCP, "mailbox moves between storage hosts"},

	SvcMetricsPasswdd:    {[]Role{RolePasswdPrimary, RolePasswdSecondary}, 0, TCP, "passwdd's metrics"},
	SvcMetricsNSSD:       {allRoles, 0, TCP, "nssd's metrics"},
	SvcMetricsSMTPD:      {[]Role{RoleMX, RoleRelay}, 0, TCP, "smtpd's metrics"},
	SvcMetricsPdeliveryd: {[]Role{RoleStorage}, 0, TCP, "pdeliveryd's metrics"},
	SvcMetricsPOP3D:      {[]Role{RoleStorage}, 0, TCP, "pop3d's metrics"},
	SvcMetricsIMAPD:      {[]Role{RoleStorage}, 0, TCP, "imapd's metrics"},
	SvcMetricsMailproxy:  {[]Role{RoleMailProxy}, 0, TCP, "mailproxy's metrics"},
}

// allRoles: nssd runs on every host, and every host has a role.
var allRoles = []Role{RoleDNS, RoleLoghost, RolePasswdPrimary, RolePasswdSecondary, RoleMX, RoleRelay, RoleStorage, RoleMailProxy}

// Services lists every service in a fixed order.
func Services() []Service {
	return []Service{SvcSMTP, SvcRelay, SvcSubmission, SvcSubmissions, SvcLMTP,
		SvcPOP3, SvcPOP3S, SvcPOP3Backend, SvcIMAP, SvcIMAPS, SvcIMAPBackend, SvcDNS, SvcSyslog, SvcPasswd, SvcPasswdAdmin, SvcMailboxMove,
		SvcMetricsPasswdd, SvcMetricsNSSD, SvcMetricsSMTPD, SvcMetricsPdeliveryd, SvcMetricsPOP3D, SvcMetricsIMAPD, SvcMetricsMailproxy}
}

// MetricsServices lists the metrics services, one per daemon program.
func MetricsServices() []Service {
	return []Service{SvcMetricsPasswdd, SvcMetricsNSSD, SvcMetricsSMTPD, SvcMetricsPdeliveryd, SvcMetricsPOP3D, SvcMetricsIMAPD, SvcMetricsMailproxy}
}

// ServicesOf lists the services a role provides.
func ServicesOf(r Role) []Service {
	var out []Service
	for _, s := range Services() {
		for _, sr := range services[s].roles {
			if sr == r {
				out = append(out, s)
			}
		}
	}
	return out
}

// TransportOf says whether a service listens on TCP, UDP or both.
func TransportOf(s Service) Transport { return services[s].transport }

// Port is the port the cluster uses for a service: the profile's override,
// or the standard one.
func (p *Profile) Port(s Service) int {
	c := &p.Cluster
	if off, ok := metricsOffset[s]; ok {
		base := c.Ports.Metrics
		if base == 0 {
			base = DefaultMetricsPort
		}
		return base + off
	}
	override := map[Service]int{
		SvcSMTP: c.Ports.SMTP, SvcRelay: c.Ports.Relay, SvcSubmission: c.Ports.Submission,
		SvcSubmissions: c.Ports.Submissions, SvcLMTP: c.Ports.LMTP, SvcPOP3: c.Ports.POP3,
		SvcPOP3S: c.Ports.POP3S, SvcPOP3Backend: c.Ports.POP3Backend, SvcIMAP: c.Ports.IMAP, SvcIMAPS: c.Ports.IMAPS, SvcIMAPBackend: c.Ports.IMAPBackend, SvcDNS: c.Ports.DNS,
		SvcSyslog: c.Ports.Syslog, SvcPasswd: c.Passwd.UDPPort, SvcPasswdAdmin: c.Passwd.TCPPort,
		SvcMailboxMove: c.Ports.MailboxMove,
	}[s]
	if override != 0 {
		return override
	}
	return services[s].stdPort
}

// Provides reports whether the host has a role that serves s.
func (h *Host) Provides(s Service) bool {
	for _, r := range services[s].roles {
		if h.HasRole(r) {
			return true
		}
	}
	return false
}

// Listen is the address a host's daemon binds for a service. It fails when
// the host has no role that provides the service, so a daemon started on
// the wrong host says so instead of listening where nobody looks.
func (p *Profile) Listen(hostName string, s Service) (netip.AddrPort, error) {
	h, err := p.Host(hostName)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if _, ok := services[s]; !ok {
		return netip.AddrPort{}, fmt.Errorf("unknown service %q", s)
	}
	if !h.Provides(s) {
		return netip.AddrPort{}, fmt.Errorf("%s: host %q has roles %v, none of which provides %s (%s needs one of %v)",
			p.Source, h.Name, h.Roles, s, services[s].description, services[s].roles)
	}
	return netip.AddrPortFrom(h.addr, uint16(p.Port(s))), nil
}

// Endpoint is one host providing a service.
type Endpoint struct {
	Host string
	Addr netip.AddrPort
}

// Endpoints lists every host that provides a service, in profile order:
// the peers a client of that service may contact.
func (p *Profile) Endpoints(s Service) []Endpoint {
	var out []Endpoint
	for i := range p.Hosts {
		h := &p.Hosts[i]
		if h.Provides(s) {
			out = append(out, Endpoint{Host: h.Name, Addr: netip.AddrPortFrom(h.addr, uint16(p.Port(s)))})
		}
	}
	return out
}
