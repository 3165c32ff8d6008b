package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"correo/src/cluster"
	"correo/src/dkimkeys"
	"correo/src/hostplan"
)

// hostFlags are the flags of `host render` and `host install`.
type hostFlags struct {
	fs                            *flag.FlagSet
	profile, host, root, bin, key string
	tlsCert, tlsKey               string
	dkimKeys                      string
}

func newHostFlags(name, rootDefault string) *hostFlags {
	f := &hostFlags{fs: newFlags(name)}
	f.fs.StringVar(&f.profile, "profile", "", "host profile (default: the embedded hosts/dev.toml)")
	f.fs.StringVar(&f.host, "host", "", "which host of the profile to render (required)")
	f.fs.StringVar(&f.root, "root", rootDefault, "directory the host's files are written under (install: / or, with -dry-run, any)")
	f.fs.StringVar(&f.bin, "bin", "", "also install the programs and libnss_correo.so.2 from this directory (make build's bin/)")
	f.fs.StringVar(&f.key, "key", "", "also install this cluster key file at the profile's key_file")
	f.fs.StringVar(&f.tlsCert, "tls-cert", "", "also install this certificate (PEM chain) at the host's [host.tls] cert (with -tls-key)")
	f.fs.StringVar(&f.tlsKey, "tls-key", "", "also install this private key (PEM) at the host's [host.tls] key (with -tls-cert)")
	f.fs.StringVar(&f.dkimKeys, "dkim-keys", "", "also install, on a relay host, the DKIM private keys of every published selector from this directory (the dkim_key_dir where `correoctl dkim new` wrote them)")
	return f
}

func (f *hostFlags) parse(args []string) (*cluster.Profile, error) {
	if err := parseFlags(f.fs, args); err != nil {
		return nil, err
	}
	if f.host == "" || f.root == "" {
		return nil, fmt.Errorf("%w: -host and -root are required", errUsage)
	}
	return cluster.LoadFlag(f.profile, cluster.Options{SkipFiles: true})
}

// render writes the host's tree, its programs and key under f.root and
// returns the plan.
func (f *hostFlags) render(p *cluster.Profile) (*hostplan.Plan, error) {
	pl, err := hostplan.Build(p, f.host, hostplan.Options{})
	if err != nil {
		return nil, err
	}
	if f.bin != "" {
		if err := addPrograms(pl, f.bin); err != nil {
			return nil, err
		}
	}
	if f.key != "" {
		data, err := os.ReadFile(f.key)
		if err != nil {
			return nil, fmt.Errorf("reading the cluster key to install: %w", err)
		}
		// Group-readable: the host's tmpfiles.d gives it to the key group at boot.
		pl.Files = append(pl.Files, hostplan.File{Path: p.Cluster.KeyFile, Mode: 0o640, Data: data})
	}
	if f.tlsCert != "" || f.tlsKey != "" {
		files, err := tlsFiles(p, f.host, f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, err
		}
		pl.Files = append(pl.Files, files...)
	}
	if f.dkimKeys != "" {
		files, err := dkimFiles(p, f.host, f.dkimKeys)
		if err != nil {
			return nil, err
		}
		pl.Files = append(pl.Files, files...)
	}
	return pl, pl.Write(f.root)
}

// dkimFiles are the private keys of every selector in the records file,
// from dir to the profile's dkim_key_dir, each checked to be the half of
// its published key. Only relay hosts sign, so other hosts get none: a
// key copied where it is not needed is one more place it can leak from.
func dkimFiles(p *cluster.Profile, host, dir string) ([]hostplan.File, error) {
	if p.Cluster.MailAuth.DKIMRecords == "" {
		return nil, fmt.Errorf("-dkim-keys: %s has no [cluster.mail_auth] dkim_records, so no selector is published to sign with", p.Source)
	}
	h, err := p.Host(host)
	if err != nil {
		return nil, err
	}
	if !h.HasRole(cluster.RoleRelay) {
		return nil, nil
	}
	var files []hostplan.File
	for _, r := range p.DKIM {
		if _, err := dkimkeys.LoadPrivate(dir, r); err != nil {
			return nil, fmt.Errorf("-dkim-keys: %w", err)
		}
		data, err := os.ReadFile(dkimkeys.KeyPath(dir, r.Domain, r.Selector))
		if err != nil {
			return nil, fmt.Errorf("-dkim-keys: %w", err)
		}
		// Group-readable: the host's tmpfiles.d gives the directory to the key group at boot.
		files = append(files, hostplan.File{Path: dkimkeys.KeyPath(p.Cluster.MailAuth.DKIMKeyDir, r.Domain, r.Selector), Mode: 0o640, Data: data})
	}
	return files, nil
}

// tlsFiles are the host's certificate and key, checked to be a matching
// pair before they go where [host.tls] says: a host rendered with a broken
// pair would boot with its TLS daemons failing.
func tlsFiles(p *cluster.Profile, host, certPath, keyPath string) ([]hostplan.File, error) {
	h, err := p.Host(host)
	if err != nil {
		return nil, err
	}
	if h.TLS == nil {
		return nil, fmt.Errorf("-tls-cert/-tls-key: host %s has no [host.tls] in %s: add cert and key paths there first", host, p.Source)
	}
	if certPath == "" || keyPath == "" {
		return nil, fmt.Errorf("%w: -tls-cert and -tls-key go together", errUsage)
	}
	cert, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("reading the TLS certificate to install: %w", err)
	}
	key, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading the TLS key to install: %w", err)
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return nil, fmt.Errorf("-tls-cert %s and -tls-key %s are not a usable pair: %w", certPath, keyPath, err)
	}
	// The key group-readable: tmpfiles.d gives it to the TLS group at boot.
	return []hostplan.File{
		{Path: h.TLS.Cert, Mode: 0o644, Data: cert},
		{Path: h.TLS.Key, Mode: 0o640, Data: key},
	}, nil
}

// addPrograms adds the programs the host runs (and the tools and NSS
// module every host has) from dir, failing on any that is missing.
func addPrograms(pl *hostplan.Plan, dir string) error {
	var missing []string
	for _, name := range hostplan.ProgramNames() {
		dst := hostplan.Programs()[name]
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			missing = append(missing, name)
			continue
		} else if err != nil {
			return err
		}
		mode := os.FileMode(0o755)
		if strings.HasSuffix(name, ".so.2") {
			mode = 0o644
		}
		pl.Files = append(pl.Files, hostplan.File{Path: dst, Mode: mode, Data: data})
	}
	if len(missing) > 0 {
		return fmt.Errorf("-bin %s lacks %s: run make build", dir, strings.Join(missing, ", "))
	}
	return nil
}

func runHostRender(args []string, stdout, stderr io.Writer) error {
	f := newHostFlags("host render", "")
	p, err := f.parse(args)
	if err != nil {
		return err
	}
	pl, err := f.render(p)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rendered %s: %d units, %d files under %s\n", pl.Host, len(pl.Units), len(pl.AllFiles()), f.root)
	return nil
}

// runHostPlan prints every host's units (or one host's) as JSON: the
// document nix/lib/units.nix must reproduce.
func runHostPlan(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("host plan")
	path := fs.String("profile", "", "host profile (default: the embedded hosts/dev.toml)")
	host := fs.String("host", "", "only this host (default: every host)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p, err := cluster.LoadFlag(*path, cluster.Options{SkipFiles: true})
	if err != nil {
		return err
	}
	out := map[string][]hostplan.Unit{}
	for _, h := range p.Hosts {
		if *host != "" && h.Name != *host {
			continue
		}
		units, err := hostplan.Units(p, h.Name)
		if err != nil {
			return err
		}
		out[h.Name] = units
	}
	if len(out) == 0 {
		return fmt.Errorf("%s has no host %q", p.Source, *host)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// runCommand runs one step of `host install`; tests replace it.
var runCommand = func(argv []string, stdout, stderr io.Writer) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return nil
}

// installSteps are the commands that bring a live host to its rendered
// tree: accounts and directories first (units name them), then systemd
// rereads its units and starts the host's sockets and daemons, and the
// distribution's peers reread their configuration. The network file takes
// effect at the next boot: changing addresses under an operator's
// ssh session is not install's call.
func installSteps(pl *hostplan.Plan) [][]string {
	steps := [][]string{
		{"systemd-sysusers", "/etc/sysusers.d/correo.conf"},
		{"systemd-tmpfiles", "--create", "/etc/tmpfiles.d/correo.conf"},
		{"systemctl", "daemon-reload"},
	}
	for _, m := range pl.Mask {
		steps = append(steps, []string{"systemctl", "stop", m})
	}
	steps = append(steps, []string{"systemctl", "restart", "rsyslog.service"})
	if pl.File("/etc/nsd/nsd.conf.d/correo.conf") != nil {
		steps = append(steps, []string{"systemctl", "restart", "nsd.service"})
	}
	enable := []string{"systemctl", "enable", "--now"}
	for _, u := range pl.Units {
		enable = append(enable, u.Name)
	}
	return append(steps, enable)
}

func runHostInstall(args []string, stdout, stderr io.Writer) error {
	f := newHostFlags("host install", "/")
	dry := f.fs.Bool("dry-run", false, "print the files and commands, change nothing")
	p, err := f.parse(args)
	if err != nil {
		return err
	}
	if *dry {
		pl, err := hostplan.Build(p, f.host, hostplan.Options{})
		if err != nil {
			return err
		}
		for _, file := range pl.AllFiles() {
			fmt.Fprintf(stdout, "write %s\n", filepath.Join(f.root, file.Path))
		}
		for _, s := range installSteps(pl) {
			fmt.Fprintf(stdout, "run %s\n", strings.Join(s, " "))
		}
		return nil
	}
	if f.root != "/" {
		return fmt.Errorf("%w: install acts on this machine: -root must be / (use host render for another tree, or -dry-run)", errUsage)
	}
	return install(f, p, stdout, stderr)
}

// install renders the host onto f.root and runs the steps.
func install(f *hostFlags, p *cluster.Profile, stdout, stderr io.Writer) error {
	pl, err := f.render(p)
	if err != nil {
		return err
	}
	for _, s := range installSteps(pl) {
		fmt.Fprintf(stdout, "+ %s\n", strings.Join(s, " "))
		if err := runCommand(s, stdout, stderr); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "installed %s: %d units started; the network settings apply at the next boot\n", pl.Host, len(pl.Units))
	return nil
}
