// Package clustertest runs the real peers correo's process-level tests talk
// to: a small cluster profile with real passwdd processes, correo daemons
// built from this tree, a private Postfix instance (its own configuration
// and queue directories, loopback ports) and a private Dovecot LMTP. It is
// a test helper: only tests import it.
//
// Every peer is stopped by t.Cleanup, and on failure its log is printed.
// Programs that are not installed skip the test, or fail it under
// CORREO_STRICT (testutil.NeedCommand). correo's own programs come from
// Build and BuildAll, compiled once per test process into a directory
// that Main, called from the package's TestMain, removes at exit; Spec
// and NewCluster write the profile a test's cluster runs on.
package clustertest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for a process's output and a test
// reading it at the same time.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Proc is a process started by a test.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  *SyncBuffer
	done chan struct{}
	err  error
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) { p.Cmd.Process.Signal(sig) }

// signalGroup sends sig to the process's group: the daemon and whatever
// children it started (Postfix's and Dovecot's services).
func (p *Proc) signalGroup(sig syscall.Signal) { syscall.Kill(-p.Cmd.Process.Pid, sig) }

// Stop sends sig and waits up to 10 s for the process to exit, then kills
// it.
func (p *Proc) Stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.signalGroup(syscall.SIGKILL)
		<-p.done
	}
	// Children that outlived their parent.
	p.signalGroup(syscall.SIGKILL)
}

// Start runs argv with its output in a buffer, stopped at the end of the
// test (and its log printed if the test failed).
func Start(t testing.TB, name string, argv []string, env []string) *Proc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	log := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, so a shell wrapper and its child go together.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Children may keep the output pipe open after the process exits;
	// Wait must not wait for them.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("--- %s output:\n%s", name, log.String())
		}
	})
	return p
}

// StartNotify runs a correo daemon and waits for its READY=1 on a notify
// socket, as systemd or the cluster runner would.
func StartNotify(t testing.TB, name string, argv []string, env []string) *Proc {
	t.Helper()
	dir, err := os.MkdirTemp("", "notify-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "n.sock")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A daemon that drops root (cluster.run_as) notifies after dropping.
	os.Chmod(dir, 0o755)
	os.Chmod(sock, 0o666)
	p := Start(t, name, argv, append(env, "NOTIFY_SOCKET="+sock))
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 512)
		nc.SetReadDeadline(time.Now().Add(60 * time.Second))
		for {
			n, err := nc.Read(buf)
			if err != nil {
				got <- err
				return
			}
			if strings.Contains(string(buf[:n]), "READY=1") {
				got <- nil
				return
			}
		}
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("%s never became ready: %v\n%s", name, err, p.Log.String())
		}
	case <-p.done:
		t.Fatalf("%s exited before becoming ready: %v\n%s", name, p.err, p.Log.String())
	}
	return p
}

// handedOut holds every port FreePort returned in this process.
var handedOut sync.Map

func claimPort(port int) bool {
	_, taken := handedOut.LoadOrStore(port, true)
	return !taken
}

// Six blocks of 2 000 ports: go test runs two test binaries at a time
// here (-p is the number of CPUs), and one binary may build dozens of
// clusters of 18 ports each (11 services and a run of 7 metrics ports).
const (
	portBlockBase = 20000
	portBlockSize = 2000
	portBlocks    = 6
)

var (
	blockOnce sync.Once
	block     int
)

// portBlock is this process's block of ports: the first, from its pid's
// on, whose lock file it can flock. The lock is held until the process
// exits, so test binaries running at the same time never share a block:
// a port one of them checked free, closed and binds again (a server
// restarted in a test) cannot meanwhile become the other's. Without a
// free block (a dozen test binaries at once) it shares its pid's.
func portBlock() int {
	blockOnce.Do(func() {
		block = os.Getpid() % portBlocks
		dir := filepath.Join(os.TempDir(), "correo-test-ports")
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return
		}
		for i := 0; i < portBlocks; i++ {
			b := (os.Getpid() + i) % portBlocks
			f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("block-%d.lock", b)), os.O_RDWR|os.O_CREATE, 0o666)
			if err != nil {
				return
			}
			if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
				block = b
				heldBlock = f // kept open: closing it would release the lock
				return
			}
			f.Close()
		}
	})
	return block
}

var heldBlock *os.File

// FreePort returns a TCP and UDP port free on every given address.
func FreePort(t testing.TB, addrs ...string) int {
	t.Helper()
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1"}
	}
	for i := 0; i < 400; i++ {
		// Not the kernel's ephemeral range (32768-60999): there the port
		// checked free here may become some process's outgoing
		// connection before the daemon binds it, and test binaries of
		// other packages run at the same time. Each process draws from
		// its own block of 20000-31999 (by pid), away from the dev
		// profile's fixed 10xxx ports.
		port := portBlockBase + portBlock()*portBlockSize + rand.IntN(portBlockSize)
		// The same port must not be handed out twice in one process.
		if !claimPort(port) {
			continue
		}
		ok := true
		for _, a := range addrs {
			hp := net.JoinHostPort(a, fmt.Sprint(port))
			if l, err := net.Listen("tcp", hp); err == nil {
				l.Close()
			} else {
				ok = false
			}
			if c, err := net.ListenPacket("udp", hp); err == nil {
				c.Close()
			} else {
				ok = false
			}
		}
		if ok {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// FreePorts returns the first of n consecutive TCP ports free on every
// given address (the daemons' metrics ports: [cluster.ports] metrics and
// the six after it).
func FreePorts(t testing.TB, n int, addrs ...string) int {
	t.Helper()
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1"}
	}
	// Every start in the block, from a random one: a block fragmented by
	// earlier clusters still has its runs found.
	first := portBlockBase + portBlock()*portBlockSize
	start := rand.IntN(portBlockSize - n)
	for i := 0; i < portBlockSize-n; i++ {
		base := first + (start+i)%(portBlockSize-n)
		ok := true
		var claimed []int
		for p := base; p < base+n && ok; p++ {
			if !claimPort(p) {
				ok = false
				break
			}
			claimed = append(claimed, p)
			for _, a := range addrs {
				l, err := net.Listen("tcp", net.JoinHostPort(a, fmt.Sprint(p)))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return base
		}
		for _, p := range claimed {
			handedOut.Delete(p)
		}
	}
	t.Fatal("no free run of ports")
	return 0
}

// WaitTCP waits until addr accepts connections.
func WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not accept connections after %v: %v", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchDir is where a benchmark keeps its queues and Maildirs: a new
// directory below CORREO_BENCH_DIR (the disk to measure) or, unset, the
// temporary directory; removed when the benchmark ends. It is
// world-traversable (0755): Postfix and Dovecot deliver as unprivileged
// users below it.
func BenchDir(b testing.TB, prefix string) string {
	b.Helper()
	base := os.Getenv("CORREO_BENCH_DIR")
	if base == "" {
		d := ShortTempDir(b, prefix)
		os.Chmod(d, 0o755)
		return d
	}
	d, err := os.MkdirTemp(base, prefix)
	if err != nil {
		b.Fatalf("CORREO_BENCH_DIR=%s: %v", base, err)
	}
	os.Chmod(d, 0o755)
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// ShortTempDir is a temporary directory with a short path (Unix socket
// paths are limited to 108 bytes), removed when the test ends.
func ShortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
