package hostplan

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"correo/src/cluster"
)

func load(t *testing.T, name string) *cluster.Profile {
	t.Helper()
	p, err := cluster.Load(filepath.Join("../../hosts", name), cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// get returns every value of key in a section of a unit.
func get(u Unit, section, key string) []string {
	var out []string
	for _, s := range u.Sections {
		if s.Name != section {
			continue
		}
		for _, e := range s.Entries {
			if e[0] == key {
				out = append(out, e[1])
			}
		}
	}
	return out
}

func unitNames(us []Unit) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.Name)
	}
	return out
}

func TestUnitsPerHost(t *testing.T) {
	p := load(t, "example.toml")
	for _, c := range []struct {
		host  string
		units []string
	}{
		{"ns1", []string{"correo-nssd-metrics.socket", "correo-nssd.service"}},
		{"pw1", []string{"correo-passwdd-passwd.socket", "correo-passwdd-passwd-admin.socket", "correo-passwdd-metrics.socket", "correo-passwdd.service",
			"correo-nssd-metrics.socket", "correo-nssd.service"}},
		{"mx1", []string{"correo-nssd-metrics.socket", "correo-nssd.service", "correo-smtpd-smtp.socket", "correo-smtpd-metrics.socket", "correo-smtpd.service",
			"correo-mailproxy-pop3.socket", "correo-mailproxy-pop3s.socket", "correo-mailproxy-imap.socket", "correo-mailproxy-imaps.socket",
			"correo-mailproxy-metrics.socket", "correo-mailproxy.service"}},
		{"relay1", []string{"correo-nssd-metrics.socket", "correo-nssd.service", "correo-smtpd-relay.socket", "correo-smtpd-submission.socket",
			"correo-smtpd-submissions.socket", "correo-smtpd-metrics.socket", "correo-smtpd.service"}},
		{"store1", []string{"correo-nssd-metrics.socket", "correo-nssd.service", "correo-pdeliveryd-lmtp.socket", "correo-pdeliveryd-mailbox-move.socket",
			"correo-pdeliveryd-metrics.socket", "correo-pdeliveryd.service", "correo-pop3d-pop3-backend.socket", "correo-pop3d-metrics.socket", "correo-pop3d.service",
			"correo-imapd-imap-backend.socket", "correo-imapd-metrics.socket", "correo-imapd.service"}},
	} {
		us, err := Units(p, c.host)
		if err != nil {
			t.Fatal(err)
		}
		if got := unitNames(us); !slices.Equal(got, c.units) {
			t.Errorf("%s: units\n got %v\nwant %v", c.host, got, c.units)
		}
	}
}

func TestServiceUnit(t *testing.T) {
	p := load(t, "example.toml")
	find := func(host, name string) Unit {
		us, err := Units(p, host)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range us {
			if u.Name == name {
				return u
			}
		}
		t.Fatalf("%s has no %s", host, name)
		return Unit{}
	}
	pw := find("pw1", "correo-passwdd.service")
	for _, c := range []struct{ key, want string }{
		{"Type", "notify"},
		{"Restart", "on-failure"},
		{"User", "correo-passwd"},
		{"SupplementaryGroups", "correo-key"},
		{"ExecStart", "/usr/libexec/correo/passwdd -profile /etc/correo/profile.toml -host pw1 -state /var/lib/correo/passwdd"},
		{"StateDirectory", "correo/passwdd"},
		// shutdown_grace 30s + the margin: systemd must not kill a daemon
		// still inside its grace period.
		{"TimeoutStopSec", "45s"},
		{"IPAddressDeny", "any"},
		{"IPAddressAllow", "10.77.0.0/24 localhost"},
		{"CapabilityBoundingSet", ""},
		{"Sockets", "correo-passwdd-passwd.socket correo-passwdd-passwd-admin.socket correo-passwdd-metrics.socket"},
	} {
		if got := get(pw, "Service", c.key); !slices.Contains(got, c.want) {
			t.Errorf("passwdd %s = %q, want %q", c.key, got, c.want)
		}
	}
	// Internet-facing daemons have no address allow list, and read the TLS key.
	sm := find("mx1", "correo-smtpd.service")
	if got := get(sm, "Service", "IPAddressDeny"); len(got) != 0 {
		t.Errorf("mx smtpd IPAddressDeny = %q: it must take mail from anywhere", got)
	}
	if got := get(sm, "Service", "SupplementaryGroups"); !slices.Equal(got, []string{"correo-key correo-tls"}) {
		t.Errorf("mx smtpd SupplementaryGroups = %q", got)
	}
	if got := get(sm, "Service", "AmbientCapabilities"); !slices.Equal(got, []string{""}) {
		t.Errorf("smtpd AmbientCapabilities = %q: port 25 comes from its socket unit", got)
	}
	// The Maildirs are the only path outside its own a storage daemon writes.
	for _, name := range []string{"correo-pdeliveryd.service", "correo-pop3d.service"} {
		u := find("store1", name)
		if got := get(u, "Service", "ReadWritePaths"); !slices.Equal(got, []string{"/var/lib/correo/mail"}) {
			t.Errorf("%s ReadWritePaths = %q", name, got)
		}
		if got := get(u, "Service", "User"); !slices.Equal(got, []string{"correo-store"}) {
			t.Errorf("%s User = %q: pdeliveryd and pop3d share the Maildirs", name, got)
		}
	}
	nss := find("store1", "correo-nssd.service")
	if got := get(nss, "Service", "RuntimeDirectory"); !slices.Equal(got, []string{"correo"}) {
		t.Errorf("nssd RuntimeDirectory = %q, want the NSS socket's directory", got)
	}
	// Metrics are for the cluster network only, even from a daemon that
	// faces the Internet: its metrics socket filters peers itself.
	msock := find("mx1", "correo-smtpd-metrics.socket")
	for _, c := range []struct{ key, want string }{
		{"ListenStream", "10.77.0.10:9422"}, {"FileDescriptorName", "metrics_smtpd"},
		{"Service", "correo-smtpd.service"}, {"IPAddressAllow", "10.77.0.0/24 localhost"}, {"IPAddressDeny", "any"},
	} {
		if got := get(msock, "Socket", c.key); !slices.Equal(got, []string{c.want}) {
			t.Errorf("smtpd metrics socket %s = %q, want %q", c.key, got, c.want)
		}
	}
	if got := get(find("mx1", "correo-smtpd-smtp.socket"), "Socket", "IPAddressDeny"); len(got) != 0 {
		t.Errorf("smtp socket IPAddressDeny = %q: only the metrics socket is cluster-only", got)
	}
	sock := find("pw1", "correo-passwdd-passwd.socket")
	for _, c := range []struct{ key, want string }{
		{"ListenDatagram", "10.77.0.5:7001"}, {"FileDescriptorName", "passwd"},
		{"Service", "correo-passwdd.service"}, {"FreeBind", "yes"},
	} {
		if got := get(sock, "Socket", c.key); !slices.Equal(got, []string{c.want}) {
			t.Errorf("passwd socket %s = %q, want %q", c.key, got, c.want)
		}
	}
}

// A host without a certificate gets no socket for the TLS-only services,
// and every role of a one-host cluster its daemons' sockets.
func TestSharedAndTLSOnlySockets(t *testing.T) {
	p, err := cluster.Parse([]byte(`
[cluster]
name = "t"
domains = ["t.example"]
network = "10.1.0.0/24"
key_file = "/var/lib/correo/cluster.key"
layout = "first3"
placement = "letters"
[cluster.passwd]
udp_port = 7001
tcp_port = 7002
[cluster.ports]
relay = 2525
pop3_backend = 1110
imap_backend = 1143
[cluster.dns]
zone = "t.example"
[[host]]
name = "a"
address = "10.1.0.1"
roles = ["mx", "relay", "passwd-primary", "storage", "dns", "loghost", "mailproxy"]
[host.storage]
data_dir = "/srv/mail"
`), "t.toml", cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	us, err := Units(p, "a")
	if err != nil {
		t.Fatal(err)
	}
	got := unitNames(us)
	for _, want := range []string{"correo-smtpd-smtp.socket", "correo-smtpd-relay.socket", "correo-smtpd-submission.socket",
		"correo-mailproxy-pop3.socket", "correo-pop3d-pop3-backend.socket", "correo-pdeliveryd-lmtp.socket", "correo-passwdd-passwd.socket",
		"correo-mailproxy-imap.socket", "correo-imapd-imap-backend.socket"} {
		if !slices.Contains(got, want) {
			t.Errorf("units %v lack %s", got, want)
		}
	}
	for _, bad := range []string{"correo-smtpd-submissions.socket", "correo-mailproxy-pop3s.socket", "correo-mailproxy-imaps.socket"} {
		if slices.Contains(got, bad) {
			t.Errorf("units %v have %s", got, bad)
		}
	}
}

func TestNSSSocketOutsideRun(t *testing.T) {
	p := load(t, "example.toml")
	// Outside /run, in /run itself (no directory of its own), or written
	// so that the directory is empty or one systemd refuses.
	for _, sock := range []string{"/var/lib/correo/nssd.sock", "/run/nssd.sock", ".dev/run/nssd.sock",
		"/run//nssd.sock", "/run/correo/", "/run/correo/../nssd.sock", "/run/./correo/nssd.sock", "/run/correo//nssd.sock"} {
		p.Cluster.NSS.Socket = sock
		if _, err := Units(p, "pw1"); err == nil || !strings.Contains(err.Error(), "under /run") {
			t.Errorf("socket %q: want a refusal naming /run, got %v", sock, err)
		}
	}
	p.Cluster.NSS.Socket = "/run/correo/nss/nssd.sock"
	us, err := Units(p, "pw1")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if u.Name == "correo-nssd.service" {
			if got := get(u, "Service", "RuntimeDirectory"); !slices.Equal(got, []string{"correo/nss"}) {
				t.Errorf("nssd RuntimeDirectory = %q, want correo/nss", got)
			}
		}
	}
}

// daemons.json is read strictly: each mistake below would otherwise pass
// in silence (the daemon on no host, without a socket, or open to the
// Internet).
func TestParseRules(t *testing.T) {
	good := `{"stopMargin": "15s", "daemons": [{"program": "x", "roles": ["storage"], "network": "cluster", "services": ["lmtp"]}], "tlsOnly": ["pop3s"]}`
	if _, err := parseRules([]byte(good)); err != nil {
		t.Fatalf("good rules: %v", err)
	}
	for _, c := range []struct{ json, want string }{
		{`{"stopMargin": "15s", "daemons": [{"program": "x", "roles": ["storage"], "network": "clsuter"}]}`, `network "clsuter"`},
		{`{"stopMargin": "15s", "daemons": [{"program": "x", "roles": ["storgae"], "network": "any"}]}`, `unknown role "storgae"`},
		{`{"stopMargin": "15s", "daemons": [{"program": "x", "roles": ["storage"], "network": "any", "services": ["lmpt"]}]}`, `unknown service "lmpt"`},
		{`{"stopMargin": "15s", "daemons": [{"program": "x", "network": "any"}]}`, `runs on no host`},
		{`{"stopMargin": "15s", "daemons": [{"program": "x", "roles": ["storage"], "network": "any", "evryHost": true}]}`, `unknown key "evryHost"`},
		{`{"stopMargin": "15s", "daemons": [{"program": "x", "roles": ["storage"], "network": "any", "everyhost": true}]}`, `unknown key "everyhost"`},
		{`{"stopmargin": "15s"}`, `unknown key "stopmargin"`},
		{`{"stopMargin": "15s", "tlsOnly": ["pop3z"]}`, `tlsOnly: unknown service "pop3z"`},
		{`{"stopMargin": "soon"}`, `stopMargin`},
	} {
		if _, err := parseRules([]byte(c.json)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want an error with %q, got %v", c.json, c.want, err)
		}
	}
}

func TestWrite(t *testing.T) {
	p := load(t, "example.toml")
	root := t.TempDir()
	for _, h := range p.Hosts {
		pl, err := Build(p, h.Name, Options{})
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(root, h.Name)
		if err := pl.Write(dir); err != nil {
			t.Fatal(err)
		}
		// Twice: rendering over an earlier tree replaces it.
		if err := pl.Write(dir); err != nil {
			t.Fatal(err)
		}
		for _, f := range pl.AllFiles() {
			fi, err := os.Lstat(filepath.Join(dir, f.Path))
			if err != nil {
				t.Fatalf("%s: %v", h.Name, err)
			}
			if f.Link != "" {
				if l, _ := os.Readlink(filepath.Join(dir, f.Path)); l != f.Link {
					t.Errorf("%s %s -> %q, want %q", h.Name, f.Path, l, f.Link)
				}
			} else if fi.Mode().Perm() != f.Mode {
				t.Errorf("%s %s mode %v, want %v", h.Name, f.Path, fi.Mode().Perm(), f.Mode)
			}
		}
	}
	read := func(host, p string) string {
		b, err := os.ReadFile(filepath.Join(root, host, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, c := range []struct{ host, path, want string }{
		{"store1", "/etc/hostname", "store1\n"},
		{"store1", "/etc/systemd/network/10-correo.network", "Address=10.77.0.31/24\n"},
		{"store1", "/etc/resolv.conf", "nameserver 10.77.0.2\n"},
		{"store1", "/etc/nsswitch.conf", "passwd:         files correo systemd\n"},
		{"store1", "/etc/rsyslog.d/correo.conf", `target="10.77.0.2" port="514" protocol="tcp"`},
		{"store1", "/etc/rsyslog.d/correo.conf", `queue.saveOnShutdown="on"`},
		{"store1", "/etc/tmpfiles.d/correo.conf", "d /var/lib/correo/mail 0750 correo-store correo-store -\n"},
		{"store1", "/etc/tmpfiles.d/correo.conf", "z /var/lib/correo/cluster.key 0640 root correo-key -\n"},
		{"store1", "/etc/sysusers.d/correo.conf", "u correo-store - \"correo pdeliveryd\" /var/lib/correo/pdeliveryd -\n"},
		{"store1", "/etc/correo/mda/postfix-main.cf", "mailbox_command = /usr/bin/pdelivery -profile /etc/correo/profile.toml"},
		{"store1", "/etc/correo/mda/sendmail.mc", "define(`LOCAL_MAILER_PATH', `/usr/bin/pdelivery')dnl"},
		{"ns1", "/etc/rsyslog.d/correo.conf", `input(type="imtcp" address="10.77.0.2" port="514")`},
		{"ns1", "/etc/rsyslog.d/correo.conf", `/var/log/correo/hosts/%HOSTNAME:::secpath-replace%.log`},
		{"ns1", "/etc/nsd/nsd.conf.d/correo.conf", `zonefile: "/etc/nsd/correo/correo.example.zone"`},
		{"ns1", "/etc/nsd/correo/correo.example.zone", "$ORIGIN correo.example."},
		{"ns1", "/etc/nsd/nsd.conf.d/correo.conf", "ip-freebind: yes"},
		{"ns1", "/etc/systemd/system/rsyslog.service.d/correo.conf", "After=network-online.target"},
		{"mx1", "/etc/tmpfiles.d/correo.conf", "z /var/lib/correo/tls/mx1.key 0640 root correo-tls -\n"},
		{"mx1", "/etc/correo/profile.toml", `name = "example"`},
	} {
		if got := read(c.host, c.path); !strings.Contains(got, c.want) {
			t.Errorf("%s %s lacks %q:\n%s", c.host, c.path, c.want, got)
		}
	}
	if l, err := os.Readlink(filepath.Join(root, "store1", "/etc/systemd/system/nsd.service")); err != nil || l != "/dev/null" {
		t.Errorf("store1 nsd.service not masked: %q %v", l, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "ns1", "/etc/systemd/system/nsd.service")); err == nil {
		t.Error("ns1 masks nsd, which serves its zone")
	}
	if _, err := os.Lstat(filepath.Join(root, "mx1", "/etc/correo/mda")); err == nil {
		t.Error("mx1 has the local-mailer snippets, which belong to storage hosts")
	}
}

// testdata/units holds profiles nix/lib/tests/run.sh renders with both Go
// and Nix: every host of the good ones has units, and each bad one is
// refused with the message its first line names ("# error: <substring>").
func TestUnitsTestdata(t *testing.T) {
	good, _ := filepath.Glob("testdata/units/*.toml")
	bad, _ := filepath.Glob("testdata/units/bad/*.toml")
	if len(good) == 0 || len(bad) == 0 {
		t.Fatal("no profiles in testdata/units")
	}
	for _, f := range append(good, bad...) {
		p, err := cluster.Load(f, cluster.Options{SkipFiles: true})
		if err != nil {
			t.Fatal(err)
		}
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want, isBad := strings.CutPrefix(strings.SplitN(string(text), "\n", 2)[0], "# error: ")
		for _, h := range p.Hosts {
			_, err := Units(p, h.Name)
			switch {
			case !isBad && err != nil:
				t.Errorf("%s: host %s: %v", f, h.Name, err)
			case isBad && (err == nil || !strings.Contains(err.Error(), want)):
				t.Errorf("%s: host %s: want an error with %q, got %v", f, h.Name, want, err)
			}
		}
	}
}
