package hostplan

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"reflect"
	"slices"
	"strings"
	"time"

	"correo/src/cluster"
)

//go:embed daemons.json
var daemonsJSON []byte

// Daemon is one correo daemon's entry in daemons.json.
type Daemon struct {
	Program     string         `json:"program"`
	Description string         `json:"description"`
	Roles       []cluster.Role `json:"roles"`
	EveryHost   bool           `json:"everyHost"`
	User        string         `json:"user"`
	// Network is "cluster" (only the profile's network and loopback) or
	// "any".
	Network string `json:"network"`
	// TLS: the daemon reads the host's certificate and key.
	TLS bool `json:"tls"`
	// Mail: the daemon reads and writes the storage host's Maildirs.
	Mail     bool              `json:"mail"`
	Services []cluster.Service `json:"services"`
}

// Rules is daemons.json: the unit rules Go and Nix share.
type Rules struct {
	Comment     []string    `json:"_comment"`
	BinDir      string      `json:"binDir"`
	ProfilePath string      `json:"profilePath"`
	StateRoot   string      `json:"stateRoot"`
	KeyGroup    string      `json:"keyGroup"`
	TLSGroup    string      `json:"tlsGroup"`
	RestartSec  string      `json:"restartSec"`
	WatchdogSec string      `json:"watchdogSec"`
	StopMargin  string      `json:"stopMargin"`
	Daemons     []Daemon    `json:"daemons"`
	TLSOnly     []string    `json:"tlsOnly"`
	ClusterOnly []string    `json:"clusterOnly"`
	Hardening   [][2]string `json:"hardening"`
}

// Data is daemons.json, parsed and checked once.
var Data = func() Rules {
	r, err := parseRules(daemonsJSON)
	if err != nil {
		panic("hostplan: daemons.json: " + err.Error())
	}
	return r
}()

// parseRules reads daemons.json strictly: a misspelt key, role, service or
// network would otherwise drop a socket, run a daemon nowhere or open a
// cluster-only daemon to the Internet without a word. nix/lib/units.nix
// refuses the same mistakes.
func parseRules(b []byte) (Rules, error) {
	var r Rules
	if err := exactKeys(b); err != nil {
		return r, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, err
	}
	if _, err := time.ParseDuration(r.StopMargin); err != nil {
		return r, fmt.Errorf("stopMargin: %w", err)
	}
	for _, d := range r.Daemons {
		if d.Network != "cluster" && d.Network != "any" {
			return r, fmt.Errorf("daemon %q: network %q: expected \"cluster\" or \"any\"", d.Program, d.Network)
		}
		if !d.EveryHost && len(d.Roles) == 0 {
			return r, fmt.Errorf("daemon %q runs on no host: give it roles or everyHost", d.Program)
		}
		for _, role := range d.Roles {
			if !slices.Contains(cluster.Roles(), role) {
				return r, fmt.Errorf("daemon %q: unknown role %q: expected one of %v", d.Program, role, cluster.Roles())
			}
		}
		for _, s := range d.Services {
			if !slices.Contains(cluster.Services(), s) {
				return r, fmt.Errorf("daemon %q: unknown service %q: expected one of %v", d.Program, s, cluster.Services())
			}
		}
	}
	for _, s := range r.TLSOnly {
		if !slices.Contains(cluster.Services(), cluster.Service(s)) {
			return r, fmt.Errorf("tlsOnly: unknown service %q: expected one of %v", s, cluster.Services())
		}
	}
	for _, s := range r.ClusterOnly {
		if !slices.Contains(cluster.Services(), cluster.Service(s)) {
			return r, fmt.Errorf("clusterOnly: unknown service %q: expected one of %v", s, cluster.Services())
		}
	}
	return r, nil
}

// Runs reports whether d runs on h.
func (d *Daemon) Runs(h *cluster.Host) bool {
	if d.EveryHost {
		return true
	}
	for _, r := range d.Roles {
		if h.HasRole(r) {
			return true
		}
	}
	return false
}

// DaemonsOf lists the daemons a host runs, in daemons.json's order.
func DaemonsOf(h *cluster.Host) []Daemon {
	var out []Daemon
	for _, d := range Data.Daemons {
		if d.Runs(h) {
			out = append(out, d)
		}
	}
	return out
}

// UnitName is the service unit of a program.
func UnitName(program string) string { return "correo-" + program + ".service" }

// socket is one listening socket a daemon gets from systemd.
type socket struct {
	svc    cluster.Service
	listen string // host:port
	udp    bool
}

// sockets lists the sockets d serves on h: each of its services the host
// provides, once per address, and the TLS-only ones only with a
// certificate. (A valid profile never puts two services of a host on one
// port and transport, so "once per address" is only a guard.)
func sockets(p *cluster.Profile, h *cluster.Host, d *Daemon) []socket {
	var out []socket
	seen := map[string]bool{}
	for _, s := range d.Services {
		if !h.Provides(s) || (h.TLS == nil && contains(Data.TLSOnly, string(s))) {
			continue
		}
		a, err := p.Listen(h.Name, s)
		if err != nil || seen[a.String()] {
			continue
		}
		seen[a.String()] = true
		if cluster.TransportOf(s)&cluster.TCP != 0 {
			out = append(out, socket{svc: s, listen: a.String()})
		}
		if cluster.TransportOf(s)&cluster.UDP != 0 {
			out = append(out, socket{svc: s, listen: a.String(), udp: true})
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// socketUnitName names the socket unit of one service of a program.
// A program's own metrics service is just "metrics" in its socket's name:
// correo-smtpd-metrics.socket.
func socketUnitName(program string, s socket) string {
	svc := string(s.svc)
	if svc == "metrics_"+program {
		svc = "metrics"
	}
	name := "correo-" + program + "-" + strings.ReplaceAll(svc, "_", "-")
	if s.udp && cluster.TransportOf(s.svc) == cluster.TCP|cluster.UDP {
		name += "-udp"
	}
	return name + ".socket"
}

// Units lists the systemd units of one host: per daemon, its socket units
// then its service unit.
func Units(p *cluster.Profile, hostName string) ([]Unit, error) {
	h, err := p.Host(hostName)
	if err != nil {
		return nil, err
	}
	margin, err := time.ParseDuration(Data.StopMargin)
	if err != nil {
		return nil, fmt.Errorf("daemons.json: stopMargin: %w", err)
	}
	stop := time.Duration(p.Cluster.ShutdownGrace) + margin
	var ipFilter [][2]string
	clusterNet := p.NetworkPrefix().String()
	clusterFilter := [][2]string{{"IPAddressAllow", clusterNet + " localhost"}, {"IPAddressDeny", "any"}}
	var out []Unit
	for _, d := range DaemonsOf(h) {
		if d.Network == "cluster" {
			ipFilter = clusterFilter
		} else {
			ipFilter = nil
		}
		var sockNames []string
		for _, s := range sockets(p, h, &d) {
			name := socketUnitName(d.Program, s)
			sockNames = append(sockNames, name)
			listen := "ListenStream"
			if s.udp {
				listen = "ListenDatagram"
			}
			sock := [][2]string{
				{listen, s.listen},
				{"FileDescriptorName", string(s.svc)},
				{"Service", UnitName(d.Program)},
				// The address is the profile's, and may be configured after
				// sockets.target: bind it anyway.
				{"FreeBind", "yes"},
				{"NoDelay", "yes"},
			}
			if s.udp {
				sock = sock[:len(sock)-1]
			}
			filter := ipFilter
			if contains(Data.ClusterOnly, string(s.svc)) {
				filter = clusterFilter
			}
			out = append(out, Unit{Name: name, Sections: []Section{
				{"Unit", [][2]string{{"Description", fmt.Sprintf("%s: %s socket (%s)", d.Description, s.svc, s.listen)}}},
				{"Socket", append(sock, filter...)},
				{"Install", [][2]string{{"WantedBy", "sockets.target"}}},
			}})
		}
		state := Data.StateRoot + "/" + d.Program
		unit := [][2]string{
			{"Description", d.Description + " (" + d.Program + ")"},
			{"After", strings.Join(append([]string{"network.target", "systemd-sysusers.service", "systemd-tmpfiles-setup.service"}, sockNames...), " ")},
		}
		if len(sockNames) > 0 {
			unit = append(unit, [2]string{"Requires", strings.Join(sockNames, " ")})
		}
		svc := [][2]string{
			{"Type", "notify"},
			{"NotifyAccess", "main"},
			{"ExecStart", fmt.Sprintf("%s/%s -profile %s -host %s -state %s", Data.BinDir, d.Program, Data.ProfilePath, h.Name, state)},
			{"ExecReload", "/bin/kill -HUP $MAINPID"},
			{"Restart", "on-failure"},
			{"RestartSec", Data.RestartSec},
			{"TimeoutStopSec", fmtDuration(stop)},
			{"WatchdogSec", Data.WatchdogSec},
		}
		if len(sockNames) > 0 {
			svc = append(svc, [2]string{"Sockets", strings.Join(sockNames, " ")})
		}
		groups := []string{Data.KeyGroup}
		if d.TLS && h.TLS != nil {
			groups = append(groups, Data.TLSGroup)
		}
		svc = append(svc,
			[2]string{"User", d.User},
			[2]string{"Group", d.User},
			[2]string{"SupplementaryGroups", strings.Join(groups, " ")},
			[2]string{"StateDirectory", strings.TrimPrefix(state, "/var/lib/")},
			[2]string{"StateDirectoryMode", stateMode(d)},
			[2]string{"LogsDirectory", "correo/" + d.Program},
			[2]string{"LogsDirectoryMode", "0750"},
		)
		rt, err := runtimeDir(p, &d)
		if err != nil {
			return nil, err
		}
		svc = append(svc, rt...)
		if d.Mail && h.Storage != nil {
			svc = append(svc, [2]string{"ReadWritePaths", h.Storage.DataDir})
		}
		svc = append(svc, Data.Hardening...)
		svc = append(svc, ipFilter...)
		out = append(out, Unit{Name: UnitName(d.Program), Sections: []Section{
			{"Unit", unit},
			{"Service", svc},
			{"Install", [][2]string{{"WantedBy", "multi-user.target"}}},
		}})
	}
	return out, nil
}

// stateMode: pdeliveryd's state directory holds its Unix socket, which
// pdelivery (the MTA's local mailer, run as the recipient or the MTA's
// user) and smtpd must reach; everything else keeps its state to itself.
func stateMode(d Daemon) string {
	if d.Program == "pdeliveryd" {
		return "0751"
	}
	return "0750"
}

// exactKeys refuses a key that is not one of Rules' or Daemon's JSON
// names exactly: encoding/json would take "bindir" for binDir, Nix's
// builtins.fromJSON would not.
func exactKeys(b []byte) error {
	var top map[string]json.RawMessage
	var ds struct {
		Daemons []map[string]json.RawMessage `json:"daemons"`
	}
	if err := json.Unmarshal(b, &top); err != nil {
		return err
	}
	if err := json.Unmarshal(b, &ds); err != nil {
		return err
	}
	if k := unknownKey(top, reflect.TypeFor[Rules]()); k != "" {
		return fmt.Errorf("unknown key %q (keys are case-sensitive)", k)
	}
	for i, d := range ds.Daemons {
		if k := unknownKey(d, reflect.TypeFor[Daemon]()); k != "" {
			return fmt.Errorf("daemon %d: unknown key %q (keys are case-sensitive)", i, k)
		}
	}
	return nil
}

// unknownKey returns the first key of m, in sorted order, that is no
// field's JSON name in struct type t, or "".
func unknownKey(m map[string]json.RawMessage, t reflect.Type) string {
	known := map[string]bool{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		known[name] = true
	}
	keys := slices.Sorted(maps.Keys(m))
	for _, k := range keys {
		if !known[k] {
			return k
		}
	}
	return ""
}

// runtimeDir gives each daemon its own /run directory; nssd's is the one
// that holds the profile's NSS socket, kept across restarts because every
// process on the host looks the socket up by path. The path must be clean:
// "/run//nssd.sock" would give RuntimeDirectory= nothing at all, and
// "/run/x/../nssd.sock" a directory systemd refuses.
func runtimeDir(p *cluster.Profile, d *Daemon) ([][2]string, error) {
	if d.Program == "nssd" {
		sock := p.Cluster.NSS.Socket
		dir := parentDir(sock)
		if path.Clean(sock) != sock || !strings.HasPrefix(dir, "/run/") {
			return nil, fmt.Errorf("%s: cluster.nss.socket %q: under systemd the NSS socket must live in a directory under /run, written as a clean absolute path (no \"//\", \".\", \"..\" or trailing \"/\"; the default is /run/correo/nssd.sock)", p.Source, sock)
		}
		return [][2]string{{"RuntimeDirectory", strings.TrimPrefix(dir, "/run/")}, {"RuntimeDirectoryMode", "0755"}, {"RuntimeDirectoryPreserve", "yes"}}, nil
	}
	return [][2]string{{"RuntimeDirectory", "correo-" + d.Program}, {"RuntimeDirectoryMode", "0750"}}, nil
}

func parentDir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "/"
}

// fmtDuration writes a duration the way systemd and Nix both can: whole
// seconds.
func fmtDuration(d time.Duration) string { return fmt.Sprintf("%ds", int64(d/time.Second)) }
