package cluster

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHostsProfilesLoad loads every committed profile: they are the
// documentation operators copy, so they must always be valid.
func TestHostsProfilesLoad(t *testing.T) {
	files, _ := filepath.Glob("../../hosts/*.toml")
	if len(files) < 2 {
		t.Fatalf("expected hosts/dev.toml and hosts/example.toml, found %v", files)
	}
	for _, f := range files {
		if _, err := Load(f, Options{SkipFiles: true}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestDefaultIsDevProfile(t *testing.T) {
	p, err := LoadDefault(Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Cluster.Name != "dev" || len(p.Hosts) != 1 {
		t.Fatalf("embedded default is not hosts/dev.toml: %+v", p.Cluster)
	}
	// Every role on one host: every service must have a listen address.
	for _, s := range Services() {
		a, err := p.Listen("dev", s)
		if err != nil {
			t.Errorf("dev host cannot listen for %s: %v", s, err)
			continue
		}
		if !a.Addr().IsLoopback() || a.Port() < 1024 {
			t.Errorf("%s listens on %s: the dev cluster must use high loopback ports", s, a)
		}
	}
}

func TestExampleProfileAPI(t *testing.T) {
	p, err := Load("../../hosts/example.toml", Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host string
		svc  Service
		want string
		err  string
	}{
		{"mx1", SvcSMTP, "10.77.0.10:25", ""},
		{"mx2", SvcPOP3S, "10.77.0.11:995", ""},
		{"relay1", SvcSubmission, "10.77.0.20:587", ""},
		{"relay1", SvcRelay, "10.77.0.20:25", ""},
		{"store2", SvcLMTP, "10.77.0.32:24", ""},
		{"store3", SvcPOP3Backend, "10.77.0.33:110", ""},
		{"pw1", SvcPasswd, "10.77.0.5:7001", ""},
		{"pw2", SvcPasswdAdmin, "10.77.0.6:7002", ""},
		{"ns1", SvcSyslog, "10.77.0.2:514", ""},
		{"ns1", SvcDNS, "10.77.0.2:53", ""},
		{"mx1", SvcLMTP, "", "none of which provides lmtp"},
		{"nosuch", SvcSMTP, "", `no host named "nosuch"`},
	}
	for _, tt := range tests {
		got, err := p.Listen(tt.host, tt.svc)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Listen(%s, %s) error = %v, want %q", tt.host, tt.svc, err, tt.err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("Listen(%s, %s) = %v, %v; want %s", tt.host, tt.svc, got, err, tt.want)
		}
	}
	var storage []string
	for _, h := range p.HostsWithRole(RoleStorage) {
		storage = append(storage, h.Name)
	}
	if strings.Join(storage, ",") != "store1,store2,store3" {
		t.Errorf("storage hosts = %v, want profile order store1,store2,store3", storage)
	}
	prim, sec := p.PasswdServers()
	if prim == nil || prim.Name != "pw1" || sec == nil || sec.Name != "pw2" {
		t.Errorf("passwd servers = %v, %v", prim, sec)
	}
	eps := p.Endpoints(SvcPasswd)
	if len(eps) != 2 || eps[0].Addr.String() != "10.77.0.5:7001" || eps[1].Host != "pw2" {
		t.Errorf("passwd endpoints = %+v", eps)
	}
	if !p.IsLocalDomain("CORREO.example") || p.IsLocalDomain("other.example") {
		t.Error("IsLocalDomain is wrong about the cluster's domains")
	}
	if h, _ := p.Host("store3"); h.Storage.Weight != 2 {
		t.Errorf("store3 weight = %d, want 2", h.Storage.Weight)
	}
	if h, _ := p.Host("mx1"); h.SMTPD.MaxRecipients != 100 || h.MX.Preference != 10 {
		t.Errorf("mx1 settings = %+v %+v", h.SMTPD, h.MX)
	}
	if p.Cluster.Passwd.Timeout.Std().String() != "2s" {
		t.Errorf("passwd timeout = %v", p.Cluster.Passwd.Timeout.Std())
	}
}

// TestBadProfiles loads every profile in testdata/bad, which the Nix
// library's tests load too: both must refuse it with the message on its
// first line.
func TestBadProfiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.toml")
	if len(files) == 0 {
		t.Fatal("no bad profiles found")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want := wantError(t, f)
			_, err := Load(f, Options{SkipFiles: true})
			if err == nil {
				t.Fatalf("loaded without error; want %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, want)
			}
			if !strings.HasPrefix(err.Error(), f) {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

func wantError(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	w, ok := strings.CutPrefix(sc.Text(), "# error: ")
	if !ok {
		t.Fatalf("%s: first line must be `# error: <expected message>`", path)
	}
	return w
}

const goodProfile = `[cluster]
name = "t"
domains = ["t.example"]
network = "10.77.0.0/24"
key_file = "KEY"
layout = "hash2"
placement = "least-users"

[cluster.passwd]
udp_port = 7001
tcp_port = 7002

[[host]]
name = "pw1"
address = "10.77.0.5"
roles = ["passwd-primary"]

[[host]]
name = "store1"
address = "10.77.0.31"
roles = ["storage"]
[host.storage]
data_dir = "/srv/mail"
`

func TestLineNumbers(t *testing.T) {
	tests := []struct {
		name, edit, replace string
		wantLine            int
		wantKey             string
		wantMsg             string
	}{
		{"unknown cluster key", `layout = "hash2"`, "layout = \"hash2\"\nlayuot = 1", 7, "cluster.layuot", `unknown key "layuot"; expected one of: name, domains`},
		{"bad address", `address = "10.77.0.31"`, `address = "10.77.1.31"`, 20, "host[1].address (store1)", "outside the cluster network"},
		{"bad host key", `data_dir = "/srv/mail"`, "data_dir = \"/srv/mail\"\nweigth = 2", 24, "host.storage.weigth", "expected one of: data_dir, weight"},
		{"toml syntax", `tcp_port = 7002`, `tcp_port = = 7002`, 11, "", ""},
		{"wrong type", `tcp_port = 7002`, `tcp_port = "7002"`, 11, "cluster.passwd.tcp_port", "incompatible types"},
		{"non canonical", `address = "10.77.0.5"`, `address = "::ffff:10.77.0.5"`, 15, "host[0].address (pw1)", "canonical form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(goodProfile, tt.edit, tt.replace, 1)
			_, err := Parse([]byte(src), "x.toml", Options{SkipFiles: true})
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error = %v, want cluster.Errors", err)
			}
			e := es[0]
			if e.Line != tt.wantLine || (tt.wantKey != "" && e.Key != tt.wantKey) || !strings.Contains(e.Msg, tt.wantMsg) {
				t.Fatalf("got line %d key %q msg %q; want line %d key %q msg containing %q", e.Line, e.Key, e.Msg, tt.wantLine, tt.wantKey, tt.wantMsg)
			}
		})
	}
	if _, err := Parse([]byte(goodProfile), "x.toml", Options{SkipFiles: true}); err != nil {
		t.Fatalf("base profile invalid: %v", err)
	}
}

func TestAllErrorsReportedAtOnce(t *testing.T) {
	src := strings.Replace(goodProfile, `layout = "hash2"`, `layout = "nope"`, 1)
	src = strings.Replace(src, `placement = "least-users"`, `placement = "nope"`, 1)
	_, err := Parse([]byte(src), "x.toml", Options{SkipFiles: true})
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
}

func TestKeyFileChecks(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	open := filepath.Join(dir, "open.key")
	os.WriteFile(good, []byte("k"), 0o600)
	os.WriteFile(open, []byte("k"), 0o644)
	os.Chmod(open, 0o644)
	shared := filepath.Join(dir, "shared.key")
	os.WriteFile(shared, []byte("k"), 0o640)
	os.Chmod(shared, 0o640)
	tests := []struct {
		key  string
		want string
	}{
		{good, ""},
		{open, "open to others (mode 0644): run chmod 640"},
		{shared, ""},
		{filepath.Join(dir, "missing.key"), "does not exist"},
		{dir, "not a regular file"},
	}
	for _, tt := range tests {
		src := strings.Replace(goodProfile, "KEY", tt.key, 1)
		_, err := Parse([]byte(src), "x.toml", Options{})
		if tt.want == "" {
			if err != nil {
				t.Errorf("key %s: %v", tt.key, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "x.toml:5: cluster.key_file") {
			t.Errorf("key %s: error = %v, want %q at x.toml:5", tt.key, err, tt.want)
		}
		// Tools reading a profile for another machine skip the file check.
		if _, err := Parse([]byte(src), "x.toml", Options{SkipFiles: true}); err != nil {
			t.Errorf("key %s with SkipFiles: %v", tt.key, err)
		}
	}
}

func TestDefaultsFilled(t *testing.T) {
	src := goodProfile + "\n[[host]]\nname = \"mx1\"\naddress = \"10.77.0.10\"\nroles = [\"mx\"]\n[host.mx]\npreference = 0\n"
	p, err := Parse([]byte(src), "x.toml", Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	mx, _ := p.Host("mx1")
	if mx.MX.Preference != 0 {
		t.Errorf("explicit preference 0 replaced by %d", mx.MX.Preference)
	}
	inline := goodProfile + "\n[[host]]\nname = \"mx2\"\naddress = \"10.77.0.11\"\nroles = [\"mx\"]\nmx = { preference = 0 }\n\n[[host]]\nname = \"mx3\"\naddress = \"10.77.0.12\"\nroles = [\"mx\"]\n[host.mx]\n"
	p2, err := Parse([]byte(inline), "x.toml", Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := p2.Host("mx2"); h.MX.Preference != 0 {
		t.Errorf("inline-table preference 0 replaced by %d", h.MX.Preference)
	}
	if h, _ := p2.Host("mx3"); h.MX.Preference != DefaultMXPreference {
		t.Errorf("empty [host.mx] preference = %d, want the default", h.MX.Preference)
	}
	if mx.SMTPD == nil || mx.SMTPD.MaxMessageBytes != DefaultMaxMessageBytes || mx.SMTPD.MaxConnectionsPerClient != DefaultMaxConnectionsPerClient {
		t.Errorf("smtpd defaults not applied: %+v", mx.SMTPD)
	}
	if s := mx.SMTPD; s.CommandTimeout.Std() != DefaultSMTPCommandTimeout || s.DataTimeout.Std() != DefaultSMTPDataTimeout || s.Workers != DefaultSMTPWorkers {
		t.Errorf("smtpd timeout and worker defaults not applied: %+v", s)
	}
	if mx.MailProxy != nil {
		t.Errorf("an mx host got [host.mailproxy] settings: %+v", mx.MailProxy)
	}
	if p.Cluster.ShutdownGrace.Std() != DefaultShutdownGrace {
		t.Errorf("shutdown_grace default = %s", p.Cluster.ShutdownGrace.Std())
	}
	px := goodProfile + "\n[[host]]\nname = \"px1\"\naddress = \"10.77.0.40\"\nroles = [\"mailproxy\"]\n[host.mailproxy]\nfail_delay = \"50ms\"\n"
	p3, err := Parse([]byte(px), "x.toml", Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := p3.Host("px1"); h.MailProxy.FailDelay.Std() != 50*time.Millisecond || h.MailProxy.MaxFailDelay.Std() != DefaultProxyMaxFailDelay ||
		h.MailProxy.MaxConnections != DefaultProxyMaxConnections || h.MailProxy.MaxConnectionsPerClient != DefaultProxyMaxConnsPerClient {
		t.Errorf("mailproxy settings: %+v", h.MailProxy)
	}
	// A profile written before the proxy served IMAP names it popproxy.
	legacy := strings.NewReplacer(`"mailproxy"`, `"popproxy"`, "host.mailproxy", "host.popproxy").Replace(px)
	p4, err := Parse([]byte(legacy), "x.toml", Options{SkipFiles: true})
	if err != nil {
		t.Fatalf("a profile with the old role popproxy: %v", err)
	}
	if h, _ := p4.Host("px1"); !h.HasRole(RoleMailProxy) || h.MailProxy == nil || h.MailProxy.FailDelay.Std() != 50*time.Millisecond || h.LegacyPOPProxy != nil {
		t.Errorf("role popproxy and [host.popproxy] did not load as mailproxy: %+v %+v", h.Roles, h.MailProxy)
	}
	st, _ := p.Host("store1")
	if st.Storage.Weight != 1 {
		t.Errorf("weight default = %d", st.Storage.Weight)
	}
	c := p.Cluster
	if c.DNS.Zone != "t.example" || c.DNS.TTL != DefaultDNSTTL || c.Log.Target != "stderr" || c.Log.Level != "info" || c.Passwd.Timeout.Std() != DefaultPasswdTimeout {
		t.Errorf("cluster defaults not applied: %+v", c)
	}
	if p.Port(SvcSMTP) != 25 || p.Port(SvcPasswd) != 7001 {
		t.Errorf("ports: smtp %d passwd %d", p.Port(SvcSMTP), p.Port(SvcPasswd))
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(goodProfile))
	for _, g := range []string{"../../hosts/dev.toml", "../../hosts/example.toml"} {
		if b, err := os.ReadFile(g); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.toml", Options{SkipFiles: true})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		// A profile that loads must be usable by every daemon.
		for _, h := range p.Hosts {
			for _, s := range Services() {
				if h.Provides(s) {
					if _, err := p.Listen(h.Name, s); err != nil {
						t.Fatalf("valid profile but Listen(%s,%s): %v", h.Name, s, err)
					}
				}
			}
		}
		_ = p.Settings()
	})
}

func TestNSSDefaultsAndChecks(t *testing.T) {
	p, err := LoadDefault(Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	n := p.Cluster.NSS
	if n.PositiveTTL.Std() != DefaultNSSPositiveTTL || n.NegativeTTL.Std() != DefaultNSSNegativeTTL ||
		n.CacheEntries != DefaultNSSCacheEntries || len(n.Groups) != 1 || n.Groups[0] != (NSSGroup{"correo", 5000}) {
		t.Errorf("dev profile nss = %+v", n)
	}
	if n.Socket != ".dev/run/nssd.sock" {
		t.Errorf("dev socket = %q", n.Socket)
	}
	base := string(hostsDev(t))
	for extra, want := range map[string]string{
		"cache_entries = -1":                           "cluster.nss.cache_entries: -1 must be positive",
		`socket = "/` + strings.Repeat("s", 120) + `"`: "a Unix socket path holds at most 107",
		"groups = [{name = \"Mail\", gid = 7}]":        `name "Mail": use 1-32`,
		"groups = [{name = \"mail\", gid = 0}]":        "gid 0 out of range",
		"negative_ttl = \"0s\"":                        "positive duration",
	} {
		src := strings.Replace(base, "[cluster.nss]\nsocket = \".dev/run/nssd.sock\"\n", "[cluster.nss]\n"+extra+"\n", 1)
		_, err := Parse([]byte(src), "x.toml", Options{SkipFiles: true})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", extra, err, want)
		}
	}
}

func hostsDev(t *testing.T) []byte {
	b, err := os.ReadFile("../../hosts/dev.toml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}
