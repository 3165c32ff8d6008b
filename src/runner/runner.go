// Package runner boots the hosts of a profile on this machine: the DNS
// server with the generated zone, the central loghost, and every correo
// daemon each host's roles call for, as separate processes with their own
// state directories. It is what `make dev` runs for hosts/dev.toml, and
// the base the network-namespace runner builds on.
package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"correo/src/cluster"
	"correo/src/delivery"
	"correo/src/dnszone"
	"correo/src/keyfile"
)

// Runner starts and stops one profile's hosts.
type Runner struct {
	Profile *cluster.Profile
	// ProfilePath is passed to the daemons as -profile; empty means they
	// use their embedded default, which must then be the same profile.
	ProfilePath string
	// StateDir holds one directory per host with configs, pid files and
	// logs.
	StateDir string
	// BinDir holds the built correo programs (make build puts them in bin/).
	BinDir string
	Log    *slog.Logger
	// ReadyTimeout bounds the wait for each process to become ready.
	ReadyTimeout time.Duration
	// ExtraZones are more zones (name → master-file text) the dns hosts
	// serve: in tests, the Internet's domains that the cluster's relay
	// looks up (a foreign MX in the outside namespace).
	ExtraZones map[string]string
	// Echo, when set, also receives every process's output, one line at a
	// time with its host and program in front: the dev cluster logs to the
	// terminal.
	Echo   io.Writer
	echoMu sync.Mutex
	// Netns, when set, boots every host in its own network namespace with
	// the profile's addresses (a real cluster's profile on one machine);
	// nil boots a loopback profile directly.
	Netns *Netns

	mu    sync.Mutex
	procs []*proc
}

// Daemons maps each role to the correo program that serves it. A host
// runs each program once, whatever number of its roles need it.
var Daemons = []struct {
	Role    cluster.Role
	Program string
}{
	{cluster.RolePasswdPrimary, "passwdd"},
	{cluster.RolePasswdSecondary, "passwdd"},
	{cluster.RoleStorage, "pdeliveryd"},
	{cluster.RoleStorage, "pop3d"},
	{cluster.RoleStorage, "imapd"},
	{cluster.RoleMX, "smtpd"},
	{cluster.RoleRelay, "smtpd"},
	{cluster.RoleMailProxy, "mailproxy"},
}

// Spec is one process the runner will start.
type Spec struct {
	Host    string
	Name    string
	Argv    []string
	Dir     string // the process's state directory
	LogFile string
	// Ready probes readiness; nil means the process reports READY=1 on
	// its NOTIFY_SOCKET, as every correo daemon does through sd_notify.
	Ready func(ctx context.Context) error
	// Notify is set when the process reports readiness by sd_notify.
	Notify bool
	// Netns is the network namespace the process runs in ("" for none).
	Netns string
	// Binds are directories mounted over others in the process's private
	// mount namespace (netns mode): source, target.
	Binds [][2]string
}

// Plan lists what Up will start, and the programs that are not built yet
// (their roles are then not served, which Up reports).
func (r *Runner) Plan() (specs []Spec, missing []string, err error) {
	p := r.Profile
	nssStarted := false
	for _, h := range p.Hosts {
		if r.Netns == nil && !h.Addr().IsLoopback() {
			return nil, nil, fmt.Errorf("host %s has address %s, which is not on this machine: boot this profile with network namespaces (--netns)", h.Name, h.Addr())
		}
	}
	for i := range p.Hosts {
		h := &p.Hosts[i]
		hostDir := filepath.Join(r.StateDir, h.Name)
		if h.HasRole(cluster.RoleDNS) {
			s, err := r.dnsSpec(h, filepath.Join(hostDir, "nsd"))
			if err != nil {
				return nil, nil, err
			}
			specs = append(specs, s)
		}
		if h.HasRole(cluster.RoleLoghost) {
			s, err := r.loghostSpec(h, filepath.Join(hostDir, "syslog"))
			if err != nil {
				return nil, nil, err
			}
			specs = append(specs, s)
		}
		// Each program once per host, whatever number of its roles need it.
		type job struct{ program, why string }
		var jobs []job
		started := map[string]bool{}
		for _, d := range Daemons {
			if h.HasRole(d.Role) && !started[d.Program] {
				started[d.Program] = true
				jobs = append(jobs, job{d.Program, "role " + string(d.Role)})
			}
		}
		// nssd runs on every host. Hosts booted directly share this
		// machine's filesystem and so the socket path: one nssd serves them
		// all. In namespaces each host's nssd gets its own socket directory
		// (see Spec.Binds).
		if !nssStarted || r.Netns != nil {
			nssStarted = true
			jobs = append(jobs, job{"nssd", "every host"})
		}
		for _, d := range jobs {
			bin := filepath.Join(r.BinDir, d.program)
			if _, err := os.Stat(bin); err != nil {
				missing = append(missing, fmt.Sprintf("%s (%s on %s)", d.program, d.why, h.Name))
				continue
			}
			dir := filepath.Join(hostDir, d.program)
			argv := []string{bin, "-host", h.Name, "-state", dir}
			if r.ProfilePath != "" {
				argv = append(argv, "-profile", r.ProfilePath)
			}
			spec := Spec{Host: h.Name, Name: d.program, Argv: argv, Dir: dir,
				LogFile: filepath.Join(dir, d.program+".log"), Notify: true}
			if d.program == "smtpd" && h.HasRole(cluster.RoleStorage) {
				// This host's own mailboxes through pdeliveryd's socket.
				spec.Argv = append(spec.Argv, "-lmtp-socket", filepath.Join(hostDir, "pdeliveryd", delivery.SocketName))
			}
			if d.program == "nssd" && r.Netns != nil {
				spec.Binds = [][2]string{{filepath.Join(hostDir, "nss-run"), filepath.Dir(p.Cluster.NSS.Socket)}}
			}
			specs = append(specs, spec)
		}
	}
	if r.Netns != nil {
		for i := range specs {
			specs[i].Netns = r.Netns.Name(specs[i].Host)
		}
	}
	return specs, missing, nil
}

func (r *Runner) dnsSpec(h *cluster.Host, dir string) (Spec, error) {
	nsd, err := lookPath("nsd")
	if err != nil {
		return Spec{}, err
	}
	listen, _ := r.Profile.Listen(h.Name, cluster.SvcDNS)
	zone, err := dnszone.Zone(r.Profile)
	if err != nil {
		return Spec{}, err
	}
	zoneName := r.Profile.Cluster.DNS.Zone
	zoneFile := filepath.Join(dir, zoneName+".zone")
	conf := filepath.Join(dir, "nsd.conf")
	files := map[string]string{zoneFile: zone}
	confText := nsdConfig(dir, listen, zoneName, zoneFile)
	for name, text := range r.ExtraZones {
		f := filepath.Join(dir, name+".zone")
		files[f] = text
		confText += "zone:\n    name: \"" + name + "\"\n    zonefile: \"" + f + "\"\n"
	}
	files[conf] = confText
	if err := writeFiles(dir, files); err != nil {
		return Spec{}, err
	}
	return Spec{Host: h.Name, Name: "nsd", Argv: []string{nsd, "-d", "-c", conf}, Dir: dir,
		LogFile: filepath.Join(dir, "nsd.log"),
		Ready:   func(ctx context.Context) error { return probeDNS(ctx, listen, zoneName) }}, nil
}

func (r *Runner) loghostSpec(h *cluster.Host, dir string) (Spec, error) {
	rsyslogd, err := lookPath("rsyslogd")
	if err != nil {
		return Spec{}, err
	}
	listen, _ := r.Profile.Listen(h.Name, cluster.SvcSyslog)
	conf := filepath.Join(dir, "rsyslog.conf")
	if err := writeFiles(dir, map[string]string{conf: rsyslogConfig(dir, listen)}); err != nil {
		return Spec{}, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "hosts"), 0o750); err != nil {
		return Spec{}, err
	}
	return Spec{Host: h.Name, Name: "rsyslogd",
		Argv: []string{rsyslogd, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid")}, Dir: dir,
		LogFile: filepath.Join(dir, "rsyslogd.out"),
		Ready:   func(ctx context.Context) error { return probeTCP(ctx, listen) }}, nil
}

// LoghostDir is where the loghost writes: hosts/<host>.log and all.log.
func (r *Runner) LoghostDir() string {
	for _, h := range r.Profile.HostsWithRole(cluster.RoleLoghost) {
		return filepath.Join(r.StateDir, h.Name, "syslog")
	}
	return ""
}

// Up prepares the state, removes leftovers of an earlier crashed run,
// starts every process and waits until each is ready. On any failure it
// stops what it started. Call Down to stop.
func (r *Runner) Up(ctx context.Context) error {
	if r.ReadyTimeout == 0 {
		r.ReadyTimeout = 15 * time.Second
	}
	// Absolute, because NSD and rsyslog change directory and would read a
	// relative path against their own.
	abs, err := filepath.Abs(r.StateDir)
	if err != nil {
		return err
	}
	r.StateDir = abs
	if err := os.MkdirAll(r.StateDir, 0o755); err != nil {
		return err
	}
	r.killLeftovers()
	if r.Netns != nil {
		if err := r.netnsUp(); err != nil {
			return err
		}
	}
	if err := r.ensureKey(); err != nil {
		r.Down()
		return err
	}
	specs, missing, err := r.Plan()
	if err != nil {
		r.Down()
		return err
	}
	for _, m := range missing {
		r.Log.Warn("program not built, its role is not served", "program", m, "bin", r.BinDir)
	}
	for _, s := range specs {
		p, err := r.start(s)
		if err != nil {
			r.Down()
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, r.ReadyTimeout)
		err = p.waitReady(rctx)
		cancel()
		if err != nil {
			r.Down()
			return fmt.Errorf("%s on %s did not become ready: %w (log: %s)", s.Name, s.Host, err, s.LogFile)
		}
		r.Log.Info("ready", "host", s.Host, "program", s.Name, "pid", p.cmd.Process.Pid, "log", s.LogFile)
	}
	return r.writePids()
}

// Down stops every process: SIGTERM to its process group, SIGKILL after
// five seconds.
func (r *Runner) Down() {
	r.mu.Lock()
	procs := r.procs
	r.procs = nil
	r.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(p *proc) {
			defer wg.Done()
			p.stop(5 * time.Second)
		}(procs[i])
	}
	wg.Wait()
	os.Remove(filepath.Join(r.StateDir, "runner.pids"))
	if r.Netns != nil {
		r.Netns.teardown(r.Profile)
	}
}

// Exited reports the first process that exits on its own while the
// cluster runs.
func (r *Runner) Exited() <-chan string {
	ch := make(chan string, 1)
	r.mu.Lock()
	procs := append([]*proc(nil), r.procs...)
	r.mu.Unlock()
	for _, p := range procs {
		go func(p *proc) {
			<-p.done
			select {
			case ch <- fmt.Sprintf("%s on %s exited: %v (log: %s)", p.spec.Name, p.spec.Host, p.err, p.spec.LogFile):
			default:
			}
		}(p)
	}
	return ch
}

func (r *Runner) ensureKey() error {
	kf := r.Profile.Cluster.KeyFile
	if _, err := os.Stat(kf); errors.Is(err, os.ErrNotExist) {
		if _, err := keyfile.Create(kf); err != nil {
			return fmt.Errorf("creating the cluster key: %w", err)
		}
		r.Log.Info("created a new cluster key", "file", kf)
	}
	_, err := keyfile.Load(kf)
	return err
}

type proc struct {
	spec   Spec
	cmd    *exec.Cmd
	notify *net.UnixConn
	done   chan struct{}
	err    error
}

func (r *Runner) start(s Spec) (*proc, error) {
	if err := os.MkdirAll(s.Dir, 0o750); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	argv := s.Argv
	if s.Netns != "" {
		for _, b := range s.Binds {
			if err := os.MkdirAll(b[0], 0o755); err != nil {
				return nil, err
			}
			os.MkdirAll(b[1], 0o755)
		}
		argv = r.Netns.wrap(s.Host, filepath.Join(r.StateDir, s.Host, "resolv.conf"), s.Binds, argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, _ = os.Getwd()
	var out io.Writer = logf
	if r.Echo != nil {
		out = io.MultiWriter(logf, &linePrefixer{w: r.Echo, mu: &r.echoMu, prefix: s.Host + " " + s.Name + ": "})
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group: Down can stop a daemon together with its children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Env = os.Environ()
	p := &proc{spec: s, cmd: cmd, done: make(chan struct{})}
	if s.Notify {
		sock := filepath.Join(s.Dir, "notify.sock")
		os.Remove(sock)
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
		if err != nil {
			logf.Close()
			return nil, fmt.Errorf("notify socket for %s: %w", s.Name, err)
		}
		p.notify = c
		cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+sock)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		if p.notify != nil {
			p.notify.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", s.Name, err)
	}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	return p, nil
}

func (p *proc) waitReady(ctx context.Context) error {
	if p.notify != nil {
		return p.waitNotify(ctx)
	}
	for {
		var err error
		if p.spec.Netns != "" {
			err = InNetns(p.spec.Netns, func() error { return p.spec.Ready(ctx) })
		} else {
			err = p.spec.Ready(ctx)
		}
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("%v (last probe: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *proc) waitNotify(ctx context.Context) error {
	buf := make([]byte, 4096)
	for {
		if dl, ok := ctx.Deadline(); ok {
			p.notify.SetReadDeadline(dl)
		}
		n, err := p.notify.Read(buf)
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		default:
		}
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(buf[:n]), "\n") {
			if l == "READY=1" {
				return nil
			}
		}
	}
}

func (p *proc) stop(grace time.Duration) {
	if p.notify != nil {
		defer p.notify.Close()
	}
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// writePids records the running process groups so a later run can clean
// up after a runner that was killed before it could stop them.
func (r *Runner) writePids() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, p := range r.procs {
		fmt.Fprintf(&b, "%d %s\n", p.cmd.Process.Pid, p.spec.Argv[0])
	}
	return os.WriteFile(filepath.Join(r.StateDir, "runner.pids"), []byte(b.String()), 0o644)
}

// Stop stops one program on one host (a scenario's failure), leaving the
// rest of the cluster running.
func (r *Runner) Stop(host, program string, kill bool) error {
	r.mu.Lock()
	var p *proc
	for i, x := range r.procs {
		if x.spec.Host == host && x.spec.Name == program {
			p = x
			r.procs = append(r.procs[:i:i], r.procs[i+1:]...)
			break
		}
	}
	r.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s is not running on %s", program, host)
	}
	if kill {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	p.stop(5 * time.Second)
	return r.writePids()
}

// Running reports whether program runs on host: started by Up or Start,
// not stopped since, and not exited on its own.
func (r *Runner) Running(host, program string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.procs {
		if p.spec.Host == host && p.spec.Name == program && !p.exited() {
			return true
		}
	}
	return false
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start starts one program on one host again, as Up did, and waits until
// it is ready. A program that still runs there is an error (a second one
// would only fail to bind); one that exited on its own is replaced.
func (r *Runner) Start(ctx context.Context, host, program string) error {
	specs, _, err := r.Plan()
	if err != nil {
		return err
	}
	r.mu.Lock()
	kept := r.procs[:0:0]
	for _, p := range r.procs {
		if p.spec.Host == host && p.spec.Name == program {
			if !p.exited() {
				r.mu.Unlock()
				return fmt.Errorf("%s already runs on %s (pid %d)", program, host, p.cmd.Process.Pid)
			}
			// Its exit is already recorded; only its notify socket is left.
			if p.notify != nil {
				p.notify.Close()
			}
			continue
		}
		kept = append(kept, p)
	}
	r.procs = kept
	r.mu.Unlock()
	for _, s := range specs {
		if s.Host != host || s.Name != program {
			continue
		}
		p, err := r.start(s)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, r.ReadyTimeout)
		defer cancel()
		if err := p.waitReady(rctx); err != nil {
			return fmt.Errorf("%s on %s did not become ready: %w (log: %s)", program, host, err, s.LogFile)
		}
		return r.writePids()
	}
	return fmt.Errorf("the plan has no %s on %s", program, host)
}

// Clean stops whatever an earlier run left behind in the state directory
// (its recorded processes) and, in netns mode, its namespaces and links:
// `correoctl cluster down`.
func (r *Runner) Clean() error {
	abs, err := filepath.Abs(r.StateDir)
	if err != nil {
		return err
	}
	r.StateDir = abs
	r.killLeftovers()
	if r.Netns != nil {
		r.Netns.teardown(r.Profile)
	}
	return nil
}

// killLeftovers stops the process groups an earlier run recorded, but only
// when the pid still runs the same program: pids are reused.
func (r *Runner) killLeftovers() {
	data, err := os.ReadFile(filepath.Join(r.StateDir, "runner.pids"))
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil || pid <= 1 {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || filepath.Base(exe) != filepath.Base(f[1]) {
			continue
		}
		r.Log.Warn("stopping a leftover of an earlier run", "pid", pid, "program", f[1])
		syscall.Kill(-pid, syscall.SIGTERM)
		for i := 0; i < 50 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	os.Remove(filepath.Join(r.StateDir, "runner.pids"))
}

// Summary describes where everything runs and logs, for the operator.
func (r *Runner) Summary(w io.Writer) {
	r.mu.Lock()
	procs := append([]*proc(nil), r.procs...)
	r.mu.Unlock()
	sort.SliceStable(procs, func(i, j int) bool { return procs[i].spec.Host < procs[j].spec.Host })
	fmt.Fprintf(w, "cluster %s is up (%s)\n", r.Profile.Cluster.Name, r.Profile.Source)
	for _, p := range procs {
		fmt.Fprintf(w, "  %-8s %-11s pid %-7d log %s\n", p.spec.Host, p.spec.Name, p.cmd.Process.Pid, p.spec.LogFile)
	}
	for _, s := range cluster.Services() {
		for _, e := range r.Profile.Endpoints(s) {
			fmt.Fprintf(w, "  %-8s %-12s %s\n", e.Host, s, e.Addr)
		}
	}
	if d := r.LoghostDir(); d != "" {
		fmt.Fprintf(w, "  central log: %s (per host: %s)\n", filepath.Join(d, "all.log"), filepath.Join(d, "hosts"))
	}
}

func writeFiles(dir string, files map[string]string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
			return err
		}
	}
	return nil
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (Debian package %s); `make dev` installs it", name, map[string]string{"nsd": "nsd", "rsyslogd": "rsyslog"}[name])
}

func probeTCP(ctx context.Context, a netip.AddrPort) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", a.String())
	if err != nil {
		return err
	}
	return c.Close()
}

// linePrefixer writes whole lines with a prefix; writers of several
// processes share mu so their lines do not interleave.
type linePrefixer struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string
	buf    []byte
}

func (l *linePrefixer) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.mu.Lock()
		io.WriteString(l.w, l.prefix)
		l.w.Write(l.buf[:i+1])
		l.mu.Unlock()
		l.buf = l.buf[i+1:]
	}
	// A process that never ends its line must not grow the buffer forever.
	if len(l.buf) > 64<<10 {
		l.buf = l.buf[:0]
	}
	return len(p), nil
}
