// Package dnszone turns a host profile into the cluster's DNS zone: the
// paper's round-robin pools, made by a real authoritative server from the
// same file every daemon reads. nix/lib/zone.nix writes the same text from
// the same profile; a test holds the two byte for byte equal.
package dnszone

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"correo/src/cluster"
)

// Pools are the round-robin names clients and the Internet use: each has
// one address record per host with the role, so DNS spreads the load.
var Pools = []struct {
	Name string
	Role cluster.Role
}{
	{"mx", cluster.RoleMX},
	{"relay", cluster.RoleRelay},
	{"pop", cluster.RoleMailProxy},
	{"imap", cluster.RoleMailProxy},
}

// SOA timers (refresh, retry, expire, negative-cache TTL) are fixed: the
// zone changes only when the profile does, and a secondary of the cluster
// zone should follow within the hour.
const (
	soaRefresh = 3600
	soaRetry   = 900
	soaExpire  = 1209600
)

// Zone renders the cluster zone in master-file format (RFC 1035 §5). The
// format is deliberately plain — one record per line, tab separated, names
// relative to $ORIGIN — so that the Nix generator can produce identical
// bytes with string concatenation alone.
func Zone(p *cluster.Profile) (string, error) {
	c := p.Cluster
	zone := c.DNS.Zone
	nsHosts := p.HostsWithRole(cluster.RoleDNS)
	if len(nsHosts) == 0 {
		return "", fmt.Errorf("%s: no host has role dns: the zone %s needs at least one name server", p.Source, zone)
	}
	fqdn := func(host string) string { return host + "." + zone + "." }
	var b strings.Builder
	fmt.Fprintf(&b, "; zone %s of correo cluster %s, generated from its host profile; do not edit\n", zone, c.Name)
	fmt.Fprintf(&b, "$ORIGIN %s.\n", zone)
	fmt.Fprintf(&b, "$TTL %d\n", c.DNS.TTL)
	fmt.Fprintf(&b, "@\tIN\tSOA\t%s\thostmaster.%s.\t%d %d %d %d %d\n",
		fqdn(nsHosts[0].Name), zone, c.DNS.Serial, soaRefresh, soaRetry, soaExpire, c.DNS.TTL)
	for _, h := range nsHosts {
		fmt.Fprintf(&b, "@\tIN\tNS\t%s\n", fqdn(h.Name))
	}
	mxHosts := p.HostsWithRole(cluster.RoleMX)
	// Stable sort: equal preferences keep profile order, so the output is
	// deterministic and the servers rotate them.
	sort.SliceStable(mxHosts, func(i, j int) bool { return mxHosts[i].MX.Preference < mxHosts[j].MX.Preference })
	for _, d := range c.Domains {
		owner, ok := ownerIn(d, zone)
		if !ok {
			// A domain outside the cluster zone is delegated by the ISP's own
			// DNS, with its MX pointing at mx.<zone>.
			continue
		}
		for _, h := range mxHosts {
			fmt.Fprintf(&b, "%s\tIN\tMX\t%d %s\n", owner, h.MX.Preference, fqdn(h.Name))
		}
	}
	for _, h := range p.Hosts {
		fmt.Fprintf(&b, "%s\tIN\t%s\t%s\n", h.Name, addrType(h.Address), h.Address)
	}
	for _, pool := range Pools {
		for _, h := range p.HostsWithRole(pool.Role) {
			fmt.Fprintf(&b, "%s\tIN\t%s\t%s\n", pool.Name, addrType(h.Address), h.Address)
		}
	}
	writeMailAuth(&b, p)
	return b.String(), nil
}

// SRV lists RFC 6186's records, which let mail clients configure
// themselves from the address alone: each names a pool and its port.
// The implicit-TLS ones are published only when a host of the pool has a
// TLS pair (without one it does not listen there).
var SRV = []struct {
	Name    string
	Service cluster.Service
	Pool    string
	Role    cluster.Role
	TLS     bool
}{
	{"_submission._tcp", cluster.SvcSubmission, "relay", cluster.RoleRelay, false},
	{"_submissions._tcp", cluster.SvcSubmissions, "relay", cluster.RoleRelay, true},
	{"_pop3s._tcp", cluster.SvcPOP3S, "pop", cluster.RoleMailProxy, true},
	{"_imaps._tcp", cluster.SvcIMAPS, "imap", cluster.RoleMailProxy, true},
}

// writeMailAuth writes, for each domain in the zone, its SPF record (the
// relay pool may send; -all or ~all from the profile), its DMARC record
// and its SRV records; and an SPF record for each mx and relay host's own
// name, which receivers check for bounces (empty MAIL FROM, RFC 7208
// 2.3).
func writeMailAuth(b *strings.Builder, p *cluster.Profile) {
	c := p.Cluster
	zone := c.DNS.Zone
	all := "-all"
	if c.MailAuth.SPFAll == cluster.SPFSoftfail {
		all = "~all"
	}
	spf := "v=spf1 " + all
	if len(p.HostsWithRole(cluster.RoleRelay)) > 0 {
		spf = "v=spf1 a:relay." + zone + " " + all
	}
	dmarc := "v=DMARC1; p=" + c.MailAuth.DMARCPolicy
	if c.MailAuth.DMARCReports != "" {
		dmarc += "; rua=mailto:" + c.MailAuth.DMARCReports
	}
	for _, d := range c.Domains {
		owner, ok := ownerIn(d, zone)
		if !ok {
			continue
		}
		fmt.Fprintf(b, "%s\tIN\tTXT\t%q\n", owner, spf)
		fmt.Fprintf(b, "%s\tIN\tTXT\t%q\n", under("_dmarc", owner), dmarc)
		for _, k := range p.DKIM {
			if k.Domain == d {
				fmt.Fprintf(b, "%s\tIN\tTXT\t%s\n", under(k.Owner(), owner), txtStrings(k.TXT()))
			}
		}
		for _, s := range SRV {
			hosts := p.HostsWithRole(s.Role)
			withTLS := false
			for _, h := range hosts {
				withTLS = withTLS || h.TLS != nil
			}
			if len(hosts) == 0 || s.TLS && !withTLS {
				continue
			}
			fmt.Fprintf(b, "%s\tIN\tSRV\t0 1 %d %s.%s.\n", under(s.Name, owner), p.Port(s.Service), s.Pool, zone)
		}
	}
	for _, h := range p.Hosts {
		if h.HasRole(cluster.RoleMX) || h.HasRole(cluster.RoleRelay) {
			fmt.Fprintf(b, "%s\tIN\tTXT\t%q\n", h.Name, "v=spf1 a "+all)
		}
	}
}

// txtStrings quotes a TXT record's text as character-strings of at most
// 255 bytes each (RFC 1035 3.3): an RSA-2048 DKIM key is about 400.
// Receivers join them without spaces (RFC 6376 3.6.2.2).
func txtStrings(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, strconv.Quote(s[:255]))
		s = s[255:]
	}
	return strings.Join(append(parts, strconv.Quote(s)), " ")
}

// under is label's owner name below owner ("@" is the apex).
func under(label, owner string) string {
	if owner == "@" {
		return label
	}
	return label + "." + owner
}

// ownerIn returns the owner name of domain relative to zone ("@" for the
// apex), or false when the domain lies outside the zone.
func ownerIn(domain, zone string) (string, bool) {
	if domain == zone {
		return "@", true
	}
	if rel, ok := strings.CutSuffix(domain, "."+zone); ok {
		return rel, true
	}
	return "", false
}

func addrType(addr string) string {
	if strings.Contains(addr, ":") {
		return "AAAA"
	}
	return "A"
}
