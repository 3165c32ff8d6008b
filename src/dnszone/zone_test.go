package dnszone

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"correo/internal/testutil"
	"correo/src/cluster"
)

func load(t *testing.T, path string) *cluster.Profile {
	t.Helper()
	p, err := cluster.Load(path, cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleZone(t *testing.T) {
	z, err := Zone(load(t, "../../hosts/example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"$ORIGIN correo.example.\n",
		"$TTL 300\n",
		"@\tIN\tSOA\tns1.correo.example.\thostmaster.correo.example.\t2026112901 3600 900 1209600 300\n",
		"@\tIN\tNS\tns1.correo.example.\n",
		"@\tIN\tMX\t10 mx1.correo.example.\n@\tIN\tMX\t10 mx2.correo.example.\n",
		"mail\tIN\tMX\t10 mx1.correo.example.\n",
		"store3\tIN\tA\t10.77.0.33\n",
		"mx\tIN\tA\t10.77.0.10\nmx\tIN\tA\t10.77.0.11\n",
		"relay\tIN\tA\t10.77.0.20\n",
		"pop\tIN\tA\t10.77.0.10\npop\tIN\tA\t10.77.0.11\n",
		// Mail authentication and client autoconfiguration.
		"@\tIN\tTXT\t\"v=spf1 a:relay.correo.example -all\"\n",
		"_dmarc\tIN\tTXT\t\"v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@correo.example\"\n",
		"_submission._tcp\tIN\tSRV\t0 1 587 relay.correo.example.\n",
		"_submissions._tcp\tIN\tSRV\t0 1 465 relay.correo.example.\n",
		"_pop3s._tcp\tIN\tSRV\t0 1 995 pop.correo.example.\n",
		"_imaps._tcp\tIN\tSRV\t0 1 993 imap.correo.example.\n",
		"_imaps._tcp.mail\tIN\tSRV\t0 1 993 imap.correo.example.\n",
		"_dmarc.mail\tIN\tTXT\t",
		"mx1\tIN\tTXT\t\"v=spf1 a -all\"\n",
		"relay1\tIN\tTXT\t\"v=spf1 a -all\"\n",
	}
	for _, w := range want {
		if !strings.Contains(z, w) {
			t.Errorf("zone lacks %q:\n%s", w, z)
		}
	}
}

func TestMXOrderAndOutsideDomains(t *testing.T) {
	src := `[cluster]
name = "t"
domains = ["t.example", "other.example"]
network = "fd00:77::/64"
key_file = "k"
layout = "first3"
placement = "letters"
[cluster.passwd]
udp_port = 7001
tcp_port = 7002
[cluster.dns]
zone = "t.example"

[[host]]
name = "ns"
address = "fd00:77::2"
roles = ["dns", "passwd-primary", "storage"]
[host.storage]
data_dir = "/m"

[[host]]
name = "backup"
address = "fd00:77::20"
roles = ["mx"]
[host.mx]
preference = 20

[[host]]
name = "main"
address = "fd00:77::10"
roles = ["mx"]
`
	p, err := cluster.Parse([]byte(src), "t.toml", cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	z, err := Zone(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(z, "@\tIN\tMX\t10 main.t.example.\n@\tIN\tMX\t20 backup.t.example.\n") {
		t.Errorf("MX records not in preference order:\n%s", z)
	}
	if strings.Contains(z, "other") {
		t.Errorf("domain outside the zone got records:\n%s", z)
	}
	if !strings.Contains(z, "main\tIN\tAAAA\tfd00:77::10\n") {
		t.Errorf("IPv6 host lacks AAAA:\n%s", z)
	}
	// No relay host: the domain says it sends no mail at all; no relay
	// or proxy pool, no SRV records; softfail from the profile.
	for _, w := range []string{"@\tIN\tTXT\t\"v=spf1 -all\"\n", "_dmarc\tIN\tTXT\t\"v=DMARC1; p=none\"\n", "main\tIN\tTXT\t\"v=spf1 a -all\"\n"} {
		if !strings.Contains(z, w) {
			t.Errorf("zone lacks %q:\n%s", w, z)
		}
	}
	if strings.Contains(z, "SRV") {
		t.Errorf("SRV records without the pools:\n%s", z)
	}
	p2, err := cluster.Parse([]byte(src+`
[[host]]
name = "px"
address = "fd00:77::30"
roles = ["relay", "mailproxy"]
`+"\n[cluster.mail_auth]\nspf_all = \"softfail\"\n"), "t.toml", cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	z, _ = Zone(p2)
	if !strings.Contains(z, "@\tIN\tTXT\t\"v=spf1 a:relay.t.example ~all\"\n") || !strings.Contains(z, "px\tIN\tTXT\t\"v=spf1 a ~all\"\n") {
		t.Errorf("softfail SPF:\n%s", z)
	}
	// Submission (STARTTLS) is published; the implicit-TLS services are
	// not, since no host of their pools has a TLS pair.
	if !strings.Contains(z, "_submission._tcp\tIN\tSRV\t0 1 587 relay.t.example.\n") || strings.Contains(z, "_imaps") || strings.Contains(z, "_submissions") {
		t.Errorf("SRV records without TLS:\n%s", z)
	}
}

func TestZoneNeedsDNSHost(t *testing.T) {
	p := load(t, "../../hosts/example.toml")
	for i := range p.Hosts {
		p.Hosts[i].Roles = []cluster.Role{cluster.RoleStorage}
	}
	if _, err := Zone(p); err == nil || !strings.Contains(err.Error(), "no host has role dns") {
		t.Fatalf("err = %v", err)
	}
}

// TestNamedCheckzone hands every committed profile's zone to BIND's
// checker: the zone must load in a real authoritative server.
func TestNamedCheckzone(t *testing.T) {
	checker := testutil.NeedCommand(t, "named-checkzone")
	files, _ := filepath.Glob("../../hosts/*.toml")
	for _, f := range files {
		p := load(t, f)
		z, err := Zone(p)
		if err != nil {
			t.Fatal(err)
		}
		zf := filepath.Join(t.TempDir(), "zone")
		if err := os.WriteFile(zf, []byte(z), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(checker, "-k", "fail", "-m", "fail", "-n", "fail", p.Cluster.DNS.Zone, zf).CombinedOutput()
		if err != nil {
			t.Errorf("%s: named-checkzone refused the zone: %v\n%s\n%s", f, err, out, z)
		}
	}
}
