package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"correo/src/dkimkeys"
	"correo/src/hostplan"
	"correo/src/tlsconf"
)

const example = "../../../hosts/example.toml"

func TestHostCommands(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	for _, n := range hostplan.ProgramNames() {
		os.WriteFile(filepath.Join(bin, n), []byte("program "+n), 0o755)
	}
	partial := filepath.Join(dir, "partial")
	os.Mkdir(partial, 0o755)
	os.WriteFile(filepath.Join(partial, "passwdd"), nil, 0o755)
	key := filepath.Join(dir, "cluster.key")
	os.WriteFile(key, []byte("1 secret\n"), 0o600)
	root := filepath.Join(dir, "root")
	crt, crtKey := filepath.Join(dir, "mx1.crt"), filepath.Join(dir, "mx1.key")
	if err := tlsconf.SelfSigned(crt, crtKey, []string{"mx1.correo.example"}, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string
	}{
		{"render needs host", []string{"host", "render", "-profile", example, "-root", root}, 2, "", "-host and -root are required"},
		{"render unknown host", []string{"host", "render", "-profile", example, "-host", "nope", "-root", root}, 1, "", `"nope"`},
		{"render bin lacks programs", []string{"host", "render", "-profile", example, "-host", "pw1", "-root", root, "-bin", partial}, 1, "", "lacks correo-checkpassword, correoctl, imapd, libnss_correo.so.2"},
		{"render with TLS", []string{"host", "render", "-profile", example, "-host", "mx1", "-root", root, "-tls-cert", crt, "-tls-key", crtKey}, 0, "rendered mx1", ""},
		{"render TLS not a pair", []string{"host", "render", "-profile", example, "-host", "mx1", "-root", root, "-tls-cert", crt, "-tls-key", key}, 1, "", "not a usable pair"},
		{"render TLS half", []string{"host", "render", "-profile", example, "-host", "mx1", "-root", root, "-tls-cert", crt}, 2, "", "go together"},
		{"render TLS without host.tls", []string{"host", "render", "-profile", example, "-host", "store1", "-root", root, "-tls-cert", crt, "-tls-key", crtKey}, 1, "", "has no [host.tls]"},
		{"render", []string{"host", "render", "-profile", example, "-host", "store1", "-root", root, "-bin", bin, "-key", key}, 0, "rendered store1: 12 units", ""},
		{"render dev profile", []string{"host", "render", "-host", "dev", "-root", root}, 1, "", "under /run"},
		{"install dry run", []string{"host", "install", "-profile", example, "-host", "ns1", "-root", root, "-dry-run"}, 0, "run systemctl restart nsd.service", ""},
		{"install elsewhere", []string{"host", "install", "-profile", example, "-host", "ns1", "-root", root}, 2, "", "-root must be /"},
		{"plan", []string{"host", "plan", "-profile", example, "-host", "pw1"}, 0, `"correo-passwdd.service"`, ""},
		{"plan unknown host", []string{"host", "plan", "-profile", example, "-host", "nope"}, 1, "", `no host "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tt.args, &out, &errb)
			if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderr) {
				t.Fatalf("code %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errb.String())
			}
		})
	}
	for path, want := range map[string]string{
		"/usr/libexec/correo/pdeliveryd":               "program pdeliveryd",
		"/usr/lib/x86_64-linux-gnu/libnss_correo.so.2": "program libnss_correo.so.2",
		"/var/lib/correo/cluster.key":                  "1 secret\n",
		"/etc/hostname":                                "store1\n",
	} {
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", path, b, err, want)
		}
	}
	for path, mode := range map[string]os.FileMode{
		"/var/lib/correo/cluster.key": 0o640,
		"/var/lib/correo/tls/mx1.crt": 0o644,
		"/var/lib/correo/tls/mx1.key": 0o640,
	} {
		if fi, err := os.Stat(filepath.Join(root, path)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("installed %s: %v, want mode %04o", path, err, mode)
			continue
		}
	}
}

func TestHostPlanJSON(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"host", "plan", "-profile", example}, &out, os.Stderr); code != 0 {
		t.Fatal(code)
	}
	var plan map[string][]hostplan.Unit
	if err := json.Unmarshal(out.Bytes(), &plan); err != nil {
		t.Fatal(err)
	}
	// store1: nssd, pdeliveryd, pop3d and imapd, each with its metrics
	// socket first, then their other sockets.
	if len(plan) != 9 || len(plan["store1"]) != 12 || plan["store1"][0].Name != "correo-nssd-metrics.socket" ||
		plan["store1"][1].Sections[1].Name != "Service" {
		t.Fatalf("plan: %d hosts, store1 %+v", len(plan), plan["store1"])
	}
}

// install writes the tree, then runs the steps in order; the first that
// fails stops it.
func TestHostInstallSteps(t *testing.T) {
	var ran [][]string
	fail := ""
	orig := runCommand
	t.Cleanup(func() { runCommand = orig })
	runCommand = func(argv []string, _, _ io.Writer) error {
		ran = append(ran, argv)
		if strings.Join(argv, " ") == fail {
			return os.ErrPermission
		}
		return nil
	}
	f := newHostFlags("host install", "/")
	root := t.TempDir()
	p, err := f.parse([]string{"-profile", example, "-host", "store1", "-root", root})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := install(f, p, &out, &out); err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"systemd-sysusers", "/etc/sysusers.d/correo.conf"},
		{"systemd-tmpfiles", "--create", "/etc/tmpfiles.d/correo.conf"},
		{"systemctl", "daemon-reload"},
		{"systemctl", "stop", "nsd.service"},
		{"systemctl", "restart", "rsyslog.service"},
		{"systemctl", "enable", "--now", "correo-nssd-metrics.socket", "correo-nssd.service",
			"correo-pdeliveryd-lmtp.socket", "correo-pdeliveryd-mailbox-move.socket", "correo-pdeliveryd-metrics.socket", "correo-pdeliveryd.service",
			"correo-pop3d-pop3-backend.socket", "correo-pop3d-metrics.socket", "correo-pop3d.service",
			"correo-imapd-imap-backend.socket", "correo-imapd-metrics.socket", "correo-imapd.service"},
	}
	if !slices.EqualFunc(ran, want, slices.Equal) {
		t.Fatalf("ran\n%v\nwant\n%v", ran, want)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/systemd/system/correo-pop3d.service")); err != nil {
		t.Fatal(err)
	}
	ran, fail = nil, "systemctl daemon-reload"
	if err := install(f, p, &out, &out); err == nil || len(ran) != 3 {
		t.Fatalf("a failed step: err %v after %d steps, want an error after 3", err, len(ran))
	}
}

// -dkim-keys installs every published selector's private key on a relay,
// and nothing on other hosts; a key missing or not matching its record
// stops the render.
func TestHostRenderDKIMKeys(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	prof := filepath.Join(dir, "profile.toml")
	text := strings.Replace(string(src), `dmarc_policy = "quarantine"`, "dmarc_policy = \"quarantine\"\ndkim_records = \"dkim.toml\"", 1)
	if err := os.WriteFile(prof, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys")
	f, err := dkimkeys.Ensure(filepath.Join(dir, "dkim.toml"), keys, []string{"correo.example", "mail.correo.example"}, time.Now(), -1)
	if err != nil || len(f.Keys) != 4 {
		t.Fatalf("making keys: %v %v", f, err)
	}
	render := func(host, keyDir string) (string, int, string) {
		root := filepath.Join(t.TempDir(), "root")
		var out, errb bytes.Buffer
		code := run([]string{"host", "render", "-profile", prof, "-host", host, "-root", root, "-dkim-keys", keyDir}, &out, &errb)
		return root, code, errb.String()
	}
	root, code, stderr := render("relay1", keys)
	if code != 0 {
		t.Fatalf("render relay1: %d %s", code, stderr)
	}
	for _, r := range f.Keys {
		path := filepath.Join(root, dkimkeys.KeyPath("/var/lib/correo/dkim", r.Domain, r.Selector))
		want, _ := os.ReadFile(dkimkeys.KeyPath(keys, r.Domain, r.Selector))
		got, err := os.ReadFile(path)
		fi, _ := os.Stat(path)
		if err != nil || !bytes.Equal(got, want) || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: %v, mode %v; want the key file, 0640", path, err, fi)
		}
	}
	if rec, err := dkimkeys.Load(filepath.Join(root, "etc/correo/dkim.toml")); err != nil || len(rec.Keys) != 4 {
		t.Errorf("the records file beside the installed profile: %v %v", rec, err)
	}
	root, code, stderr = render("mx1", keys)
	if _, err := os.Stat(filepath.Join(root, "var/lib/correo/dkim")); code != 0 || err == nil {
		t.Errorf("render mx1: code %d (%s); an MX got the DKIM keys: %v", code, stderr, err)
	}
	if _, code, stderr := render("relay1", t.TempDir()); code != 1 || !strings.Contains(stderr, "DKIM private key of correo.example") {
		t.Errorf("keys missing: code %d, %s", code, stderr)
	}
	// Keys of another records file: same selectors, other key pairs.
	other := t.TempDir()
	if _, err := dkimkeys.Ensure(filepath.Join(other, "dkim.toml"), other, []string{"correo.example", "mail.correo.example"}, time.Now(), -1); err != nil {
		t.Fatal(err)
	}
	if _, code, stderr := render("relay1", other); code != 1 || !strings.Contains(stderr, "does not match the public key") {
		t.Errorf("keys not matching the records: code %d, %s", code, stderr)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"host", "render", "-profile", example, "-host", "relay1", "-root", t.TempDir(), "-dkim-keys", keys}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "no [cluster.mail_auth] dkim_records") {
		t.Errorf("a profile without dkim_records: code %d, %s", code, errb.String())
	}
}
