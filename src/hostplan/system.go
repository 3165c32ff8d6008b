package hostplan

import (
	"fmt"
	"net/netip"
	"path"
	"sort"

	"correo/src/cluster"
	"correo/src/dnszone"
	"correo/src/peerconf"
)

// LoghostDir is where a rendered loghost files what it receives:
// hosts/<host>.log and all.log.
const LoghostDir = "/var/log/correo"

// NSDZoneDir holds the cluster's zone on a DNS host.
const NSDZoneDir = "/etc/nsd/correo"

// MDADir holds the snippets that make pdelivery an MTA's local mailer.
const MDADir = "/etc/correo/mda"

// system adds the operating system's side of the host: accounts,
// directories, NSS, network, logging, DNS and the local mailer.
func (pl *Plan) system(p *cluster.Profile, h *cluster.Host) {
	daemons := DaemonsOf(h)
	pl.add(File{Path: "/etc/hostname", Mode: 0o644, Data: lines(h.Name)})
	pl.add(File{Path: "/etc/sysusers.d/correo.conf", Mode: 0o644, Data: sysusers(daemons, h)})
	pl.add(File{Path: "/etc/tmpfiles.d/correo.conf", Mode: 0o644, Data: tmpfiles(p, h, daemons)})
	pl.add(File{Path: "/etc/nsswitch.conf", Mode: 0o644, Data: nsswitch()})
	pl.add(File{Path: "/etc/systemd/network/10-correo.network", Mode: 0o644, Data: network(p, h)})
	pl.add(File{Path: "/etc/resolv.conf", Mode: 0o644, Data: resolv(p)})
	// Debian's journald hands every message to rsyslog already; say it,
	// so a journald.conf changed elsewhere cannot cut the loghost off.
	pl.add(File{Path: "/etc/systemd/journald.conf.d/correo.conf", Mode: 0o644,
		Data: lines("[Journal]", "ForwardToSyslog=yes")})
	pl.add(File{Path: "/etc/rsyslog.d/correo.conf", Mode: 0o644, Data: rsyslog(p, h)})
	if h.HasRole(cluster.RoleLoghost) {
		// rsyslog cannot bind an address the host does not have yet (it has
		// no freebind), and drops the listener for good if it tries.
		pl.add(File{Path: "/etc/systemd/system/rsyslog.service.d/correo.conf", Mode: 0o644,
			Data: lines("[Unit]", "Wants=network-online.target", "After=network-online.target")})
	}
	if h.HasRole(cluster.RoleDNS) {
		zone, _ := dnszone.Zone(p)
		zoneFile := path.Join(NSDZoneDir, p.Cluster.DNS.Zone+".zone")
		pl.add(File{Path: zoneFile, Mode: 0o644, Data: []byte(zone)})
		pl.add(File{Path: "/etc/nsd/nsd.conf.d/correo.conf", Mode: 0o644, Data: nsd(p, h, zoneFile)})
	} else {
		pl.Mask = append(pl.Mask, "nsd.service")
	}
	if h.HasRole(cluster.RoleStorage) {
		pl.mda()
	}
}

// sysusers creates one static system account per role family (daemons
// that share files share an account: pop3d and pdeliveryd both own the
// Maildirs) and the groups that may read the cluster key and the TLS key.
func sysusers(daemons []Daemon, h *cluster.Host) []byte {
	out := []string{
		"# correo's service accounts: one per role family. The key group reads the cluster key,",
		"# the TLS group the host's certificate key.",
		"g " + Data.KeyGroup + " -",
	}
	if h.TLS != nil {
		out = append(out, "g "+Data.TLSGroup+" -")
	}
	seen := map[string]bool{}
	for _, d := range daemons {
		if seen[d.User] {
			continue
		}
		seen[d.User] = true
		out = append(out, fmt.Sprintf("u %s - %q %s/%s -", d.User, "correo "+d.Program, Data.StateRoot, d.Program))
	}
	return lines(out...)
}

// tmpfiles gives the cluster key, the TLS pair and the Maildirs their
// owners and modes at every boot (the accounts exist only once
// systemd-sysusers has run, so render cannot chown them itself).
func tmpfiles(p *cluster.Profile, h *cluster.Host, daemons []Daemon) []byte {
	out := []string{
		"# Type Path Mode User Group Age",
		"d " + Data.StateRoot + " 0755 root root -",
		fmt.Sprintf("z %s 0640 root %s -", p.Cluster.KeyFile, Data.KeyGroup),
	}
	if h.TLS != nil {
		out = append(out,
			fmt.Sprintf("z %s 0644 root root -", h.TLS.Cert),
			fmt.Sprintf("z %s 0640 root %s -", h.TLS.Key, Data.TLSGroup))
	}
	if h.HasRole(cluster.RoleRelay) && p.Cluster.MailAuth.DKIMRecords != "" {
		// The DKIM private keys: the relays' smtpd reads them through the
		// key group; files an operator copies in get that group too.
		dir := p.Cluster.MailAuth.DKIMKeyDir
		out = append(out, fmt.Sprintf("d %s 0750 root %s -", dir, Data.KeyGroup), fmt.Sprintf("Z %s - root %s -", dir, Data.KeyGroup))
	}
	if h.Storage != nil {
		for _, d := range daemons {
			if d.Mail {
				out = append(out, fmt.Sprintf("d %s 0750 %s %s -", h.Storage.DataDir, d.User, d.User))
				break
			}
		}
	}
	out = append(out, "d "+LoghostDir+" 0750 root adm -")
	return lines(out...)
}

// nsswitch puts correo after files: the service accounts and root resolve
// without nssd, so nothing at boot (systemd itself resolving User=) waits
// for it.
func nsswitch() []byte {
	return lines(
		"# correo: users and groups of the cluster through nssd (libnss_correo.so.2).",
		"passwd:         files correo systemd",
		"group:          files correo systemd",
		"shadow:         files",
		"gshadow:        files",
		"",
		"hosts:          files dns",
		"networks:       files",
		"",
		"protocols:      db files",
		"services:       db files",
		"ethers:         db files",
		"rpc:            db files",
		"",
		"netgroup:       nis",
	)
}

// network gives the host its profile address on its first Ethernet link
// (host0 in a container, enp*/eth* on hardware and VMs).
func network(p *cluster.Profile, h *cluster.Host) []byte {
	pfx := netip.PrefixFrom(h.Addr(), p.NetworkPrefix().Bits())
	out := []string{"[Match]", "Name=host0 en* eth*", "", "[Network]", "Address=" + pfx.String()}
	for _, a := range dnsServers(p) {
		out = append(out, "DNS="+a)
	}
	// A switch port that flaps must not take the profile address away
	// from the daemons' sockets.
	out = append(out, "Domains="+p.Cluster.DNS.Zone, "LinkLocalAddressing=no", "IPv6AcceptRA=no", "IgnoreCarrierLoss=yes")
	return lines(out...)
}

func dnsServers(p *cluster.Profile) []string {
	var out []string
	for _, e := range p.Endpoints(cluster.SvcDNS) {
		out = append(out, e.Addr.Addr().String())
	}
	return out
}

// resolv points the host at the cluster's own DNS servers, as the paper's
// hosts did.
func resolv(p *cluster.Profile) []byte {
	out := []string{"search " + p.Cluster.DNS.Zone}
	for _, a := range dnsServers(p) {
		out = append(out, "nameserver "+a)
	}
	return lines(out...)
}

// rsyslog: the loghost receives and files by host (its own messages
// included); every other host forwards everything over TCP.
func rsyslog(p *cluster.Profile, h *cluster.Host) []byte {
	head := "# correo: central syslog (README, \"Logs\").\n"
	if a, err := p.Listen(h.Name, cluster.SvcSyslog); err == nil {
		return []byte(head + peerconf.RsyslogLoghost(a, LoghostDir, ""))
	}
	eps := p.Endpoints(cluster.SvcSyslog)
	if len(eps) == 0 {
		return []byte(head + "# the profile has no loghost: messages stay on this host\n")
	}
	return []byte(head + peerconf.RsyslogForward(eps[0].Addr))
}

// nsd serves the cluster zone on the DNS host's profile address, added to
// Debian's nsd.conf through its nsd.conf.d include.
func nsd(p *cluster.Profile, h *cluster.Host, zoneFile string) []byte {
	a, _ := p.Listen(h.Name, cluster.SvcDNS)
	return lines(
		"server:",
		"    ip-address: "+a.Addr().String(),
		fmt.Sprintf("    port: %d", a.Port()),
		// Bind the profile address even before networkd has set it.
		"    ip-freebind: yes",
		"zone:",
		`    name: "`+p.Cluster.DNS.Zone+`"`,
		`    zonefile: "`+zoneFile+`"`,
	)
}

// mda writes how an MTA on a storage host hands local mail to pdelivery:
// Postfix's mailbox_command and Sendmail's local mailer (the lines README,
// "Delivery", documents), with this host's paths filled in.
func (pl *Plan) mda() {
	bin := "/usr/bin/pdelivery"
	prof := Data.ProfilePath
	pl.add(File{Path: path.Join(MDADir, "postfix-main.cf"), Mode: 0o644, Data: lines(
		"# Append to /etc/postfix/main.cf: local(8) hands each message to pdelivery,",
		"# which delivers it through this host's pdeliveryd (or the user's storage host).",
		fmt.Sprintf(`mailbox_command = %s -profile %s -f "$SENDER" -a "$RECIPIENT" -d "$USER"`, bin, prof),
	)})
	pl.add(File{Path: path.Join(MDADir, "sendmail.mc"), Mode: 0o644, Data: lines(
		"dnl Add before MAILER(local) in /etc/mail/sendmail.mc: pdelivery is the local mailer.",
		"define(`LOCAL_MAILER_PATH', `"+bin+"')dnl",
		"define(`LOCAL_MAILER_ARGS', `pdelivery -profile "+prof+" -f $g -d $u')dnl",
	)})
}

// Programs lists what `render --bin` installs and where: the daemons under
// the rules' BinDir, the operator's tools in /usr/bin, the NSS module in
// the multiarch library directory.
func Programs() map[string]string {
	out := map[string]string{
		"correoctl": "/usr/bin/correoctl",
		"pdelivery": "/usr/bin/pdelivery",
		// Dovecot's checkpassword passdb over passwdd (README, "Dovecot").
		"correo-checkpassword": "/usr/libexec/correo/correo-checkpassword",
		"libnss_correo.so.2":   "/usr/lib/x86_64-linux-gnu/libnss_correo.so.2",
	}
	for _, d := range Data.Daemons {
		out[d.Program] = Data.BinDir + "/" + d.Program
	}
	return out
}

// ProgramNames is Programs' keys, sorted.
func ProgramNames() []string {
	m := Programs()
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
