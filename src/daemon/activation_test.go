package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"correo/internal/clustertest"
)

// fileOf returns a duplicate descriptor of a socket, as systemd would
// pass it.
func fileOf(t *testing.T, c interface{ File() (*os.File, error) }) *os.File {
	t.Helper()
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func tcpListener(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func udpConn(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSocket: a stream socket systemd passed under a name is used instead
// of listening; without one the daemon listens; a socket of the wrong
// kind, or two under one name, is an error naming the unit setting.
func TestSocket(t *testing.T) {
	env, _ := startEnv(t, clustertest.Spec{})
	fallback := errors.New("listened instead")
	listen := func() (net.Listener, error) { return nil, fallback }
	tests := []struct {
		name     string
		passed   func() (map[string][]*os.File, string) // files, and the address expected
		wantAddr bool
		err      string
	}{
		{"passed stream socket", func() (map[string][]*os.File, string) {
			ln := tcpListener(t)
			return map[string][]*os.File{"smtp": {fileOf(t, ln)}}, ln.Addr().String()
		}, true, ""},
		{"nothing passed: listen", func() (map[string][]*os.File, string) { return nil, "" }, false, "listened instead"},
		{"another name passed: listen", func() (map[string][]*os.File, string) {
			return map[string][]*os.File{"lmtp": {fileOf(t, tcpListener(t))}}, ""
		}, false, "listened instead"},
		{"datagram socket under a stream name", func() (map[string][]*os.File, string) {
			return map[string][]*os.File{"smtp": {fileOf(t, udpConn(t))}}, ""
		}, false, "ListenStream="},
		{"two sockets under one name", func() (map[string][]*os.File, string) {
			return map[string][]*os.File{"smtp": {fileOf(t, tcpListener(t)), fileOf(t, tcpListener(t))}}, ""
		}, false, `passed 2 sockets named "smtp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, addr := tt.passed()
			env.passed = files
			ln, err := env.Socket("smtp", listen)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if ln.Addr().String() != addr {
				t.Fatalf("listener on %s, want the passed socket %s", ln.Addr(), addr)
			}
			if _, ok := env.passed["smtp"]; ok {
				t.Error("a claimed socket is still among those Run closes")
			}
			// It accepts.
			go func() {
				if c, err := ln.Accept(); err == nil {
					c.Write([]byte("hi\n"))
					c.Close()
				}
			}()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if line, _ := bufio.NewReader(c).ReadString('\n'); line != "hi\n" {
				t.Fatalf("read %q from the passed socket", line)
			}
		})
	}
}

// TestUDP: passwdd's query sockets come from systemd, several under one
// name, or are opened.
func TestUDP(t *testing.T) {
	env, _ := startEnv(t, clustertest.Spec{})
	a, b := udpConn(t), udpConn(t)
	env.passed = map[string][]*os.File{"passwd": {fileOf(t, a), fileOf(t, b)}}
	conns, err := env.UDP("passwd", func() ([]*net.UDPConn, error) { return nil, errors.New("listened instead") })
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 2 || conns[0].LocalAddr().String() != a.LocalAddr().String() || conns[1].LocalAddr().String() != b.LocalAddr().String() {
		t.Fatalf("passed %s %s, got %v", a.LocalAddr(), b.LocalAddr(), conns)
	}
	for _, c := range conns {
		c.Close()
	}
	env.passed = map[string][]*os.File{"passwd": {fileOf(t, tcpListener(t))}}
	if _, err := env.UDP("passwd", nil); err == nil || !strings.Contains(err.Error(), "ListenDatagram=") {
		t.Fatalf("a stream socket as passwd: %v", err)
	}
	if _, err := env.UDP("passwd", func() ([]*net.UDPConn, error) { return nil, errors.New("listened instead") }); err == nil ||
		!strings.Contains(err.Error(), "passwd: listened instead") {
		t.Fatalf("nothing passed: %v", err)
	}
}

// activationChild, when set to a profile path, makes the test binary a
// daemon started by "systemd": it takes the socket named smtp, answers
// one connection with what it saw, and exits.
const activationChild = "CORREO_TEST_ACTIVATION_PROFILE"

func activationMain(profile string) {
	env, err := NewFlags("smtpd").Start([]string{"-profile", profile, "-state", os.Getenv("CORREO_TEST_ACTIVATION_STATE")})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	ln, err := env.Socket("smtp", func() (net.Listener, error) { return nil, errors.New("no socket passed") })
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	c, err := ln.Accept()
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Fprintf(c, "pid=%d LISTEN_FDS=%q\n", os.Getpid(), os.Getenv("LISTEN_FDS"))
	c.Close()
	os.Exit(0)
}

// TestActivationChild passes a listening socket to a child process the
// way systemd does (descriptor 3, LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES),
// as go-systemd's own tests do: the child serves on it, and clears the
// variables so its own children do not take the socket too.
func TestActivationChild(t *testing.T) {
	_, profile := startEnv(t, clustertest.Spec{})
	ln := tcpListener(t)
	f := fileOf(t, ln)
	defer f.Close()
	// LISTEN_PID must be the child's own pid: a shell sets it and execs.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" -test.run=XXX`, os.Args[0])
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=smtp", activationChild+"="+profile,
		"CORREO_TEST_ACTIVATION_STATE="+t.TempDir())
	cmd.ExtraFiles = []*os.File{f}
	out := &clustertest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The parent never accepts: only the child can answer.
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "pid=") || !strings.Contains(line, `LISTEN_FDS=""`) {
		t.Errorf("child answered %q (output %q)", line, out.String())
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("child did not exit\n%s", out.String())
	}
}
