package nsstest

import (
	"encoding/binary"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"correo/internal/testutil"
	"correo/src/nssd/nssdtest"
	"correo/src/nssproto"
)

// Lookups of every kind, one after another, share one connection.
func TestConnectionKept(t *testing.T) {
	m := module(t)
	a := agent(t, juan, ana)
	for i := 0; i < 50; i++ {
		if pw, st, _ := m.Getpwnam("juan", 1024); st != Success || pw.UID != 5001 {
			t.Fatalf("getpwnam juan #%d: %v", i, st)
		}
		if _, st, _ := m.Getpwuid(5002, 1024); st != Success {
			t.Fatalf("getpwuid 5002 #%d: %v", i, st)
		}
		if _, st, _ := m.Getpwnam("nadie", 1024); st != NotFound {
			t.Fatalf("getpwnam nadie #%d: %v", i, st)
		}
		if _, st, _ := m.Getgrnam("correo", 1024); st != Success {
			t.Fatalf("getgrnam correo #%d: %v", i, st)
		}
	}
	m.Setpwent()
	for {
		if _, st, _ := m.Getpwent(1024); st != Success {
			break
		}
	}
	m.Endpwent()
	if n := a.Accepts.Load(); n != 1 {
		t.Errorf("nssd accepted %d connections for 201 calls, want 1", n)
	}
}

// nssd stops and starts again on the same socket between two calls: the
// call in between is UNAVAIL at once, the one after it reconnects.
func TestNSSDRestart(t *testing.T) {
	m := module(t)
	sock := filepath.Join(t.TempDir(), "nssd.sock")
	t.Setenv("CORREO_NSS_SOCKET", sock)
	start := func() *nssdtest.Agent {
		a, err := nssdtest.StartAt(sock, nssdtest.NewSource(juan), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Stop)
		return a
	}
	a := start()
	for i := 0; i < 3; i++ {
		if _, st, _ := m.Getpwnam("juan", 1024); st != Success {
			t.Fatalf("first nssd: %v", st)
		}
	}
	a.Stop()
	timed(t, "stopped nssd", hangLimit, func() {
		if _, st, e := m.Getpwnam("juan", 1024); st != Unavail || e != ENOENT {
			t.Errorf("nssd stopped: %v errno %d, want UNAVAIL/ENOENT", st, e)
		}
	})
	b := start()
	timed(t, "restarted nssd", hangLimit, func() {
		for i := 0; i < 3; i++ {
			if _, st, _ := m.Getpwnam("juan", 1024); st != Success {
				t.Errorf("restarted nssd: %v", st)
			}
		}
	})
	if n := b.Accepts.Load(); n != 1 {
		t.Errorf("restarted nssd accepted %d connections, want 1", n)
	}
}

// scriptedNSSD answers requests on each connection with reply(conn,
// request number on that connection, request body); a nil reply closes
// the connection, a reply of stall holds it open without answering.
// It returns the socket and the number of connections accepted.
func scriptedNSSD(t *testing.T, reply func(conn, req int, body []byte) []byte) (string, *atomic.Int64) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "scripted.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(conns.Add(1))
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			go func() {
				for req := 1; ; req++ {
					var hdr [4]byte
					if _, err := io.ReadFull(c, hdr[:]); err != nil {
						c.Close()
						return
					}
					body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
					if _, err := io.ReadFull(c, body); err != nil {
						c.Close()
						return
					}
					r := reply(n, req, body)
					if r == nil {
						c.Close()
						return
					}
					if &r[0] == &stall[0] {
						continue // read on; the client gives up on its own
					}
					c.Write(r)
				}
			}()
		}
	}()
	return sock, &conns
}

var stall = []byte{0}

func juanAnswer() []byte {
	b, _ := nssproto.AppendResponse(nil, nssproto.OpGetpwnam, nssproto.Response{Status: nssproto.StatusFound,
		Passwd: []nssproto.Passwd{{Name: "juan", UID: 5001, GID: 5000, Home: "/h", Shell: "/bin/sh"}}})
	return b
}

// nssd drops a kept connection just as the module sends on it (an idle
// timeout or an eviction racing the request): the module asks again on a
// fresh connection, once, and the caller never sees the difference.
func TestKeptConnectionDroppedMidRequest(t *testing.T) {
	m := module(t)
	sock, conns := scriptedNSSD(t, func(_, req int, _ []byte) []byte {
		if req == 1 {
			return juanAnswer()
		}
		return nil // read the request, hang up without a word
	})
	t.Setenv("CORREO_NSS_SOCKET", sock)
	timed(t, "dropped connections", hangLimit, func() {
		for i := 0; i < 10; i++ {
			if _, st, _ := m.Getpwnam("juan", 1024); st != Success {
				t.Fatalf("call %d: %v", i, st)
			}
		}
	})
	if n := conns.Load(); n != 10 {
		t.Errorf("%d connections for 10 calls, want 10 (one retry per dropped connection)", n)
	}
}

// An nssd that stops answering on a kept connection: the module waits out
// its deadline, returns UNAVAIL without a second try, and drops the
// connection, so a late answer cannot be taken for the next call's.
func TestKeptConnectionStalls(t *testing.T) {
	m := module(t)
	sock, conns := scriptedNSSD(t, func(_, req int, _ []byte) []byte {
		if req == 1 {
			return juanAnswer()
		}
		return stall
	})
	t.Setenv("CORREO_NSS_SOCKET", sock)
	if _, st, _ := m.Getpwnam("juan", 1024); st != Success {
		t.Fatalf("first call: %v", st)
	}
	d := timed(t, "stalled nssd", 5*time.Second+hangLimit, func() {
		if _, st, e := m.Getpwnam("juan", 1024); st != Unavail || e != ENOENT {
			t.Errorf("stalled: %v errno %d, want UNAVAIL/ENOENT", st, e)
		}
	})
	t.Logf("stalled nssd: UNAVAIL after %v", d.Round(time.Millisecond))
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections after the stall, want 1 (a timeout is not retried)", n)
	}
	if _, st, _ := m.Getpwnam("juan", 1024); st != Success {
		t.Errorf("after the stall: %v", st)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections after the stall and one more call, want 2 (the stalled one dropped)", n)
	}
}

func runKeepconn(t *testing.T, mode string) {
	t.Helper()
	testutil.NeedCommand(t, "gcc")
	bin, err := CompileC(t.TempDir(), "keepconn")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, NeedLib(t), mode).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("keepconn %s: %v\n%s", mode, err, out)
	}
}

// A forked child, with or without the atfork handler, connects afresh and
// leaves the parent's connection working (testdata/keepconn.c).
func TestForkChildReconnects(t *testing.T) {
	a := agent(t, juan, ana)
	a.NoShared() // it would answer the child without any connection
	runKeepconn(t, "fork")
	if n := a.Accepts.Load(); n != 3 {
		t.Errorf("nssd accepted %d connections, want 3: the parent's and one per child", n)
	}
}

// Threads of one process resolving at once get their own answers.
func TestThreadsShareKeptConnections(t *testing.T) {
	agent(t, juan, ana)
	runKeepconn(t, "threads")
}
