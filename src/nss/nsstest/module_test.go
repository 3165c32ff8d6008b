package nsstest

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/nssd"
	"correo/src/nssd/nssdtest"
	"correo/src/nssproto"
)

func TestMain(m *testing.M) {
	code := clustertest.Run(m)
	Cleanup()
	os.Exit(code)
}

var (
	juan = nssd.Passwd{Name: "juan", UID: 5001, GID: 5000, Gecos: "Juan Pérez", Home: "/var/mail/j/u/a/juan", Shell: "/usr/sbin/nologin"}
	ana  = nssd.Passwd{Name: "ana", UID: 5002, GID: 5000, Home: "/var/mail/a/n/a/ana", Shell: "/bin/sh"}
)

// hangLimit is a hang detector, not a performance assertion: a call that
// should return at once must return well within it even on a loaded CI
// machine.
const hangLimit = 3 * time.Second

func module(t testing.TB) *Module {
	t.Helper()
	testutil.NeedCommand(t, "gcc")
	m, err := Open(NeedLib(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// agent starts an in-process nssd with a fake Source and points the
// module at it through CORREO_NSS_SOCKET (this test process is not
// setuid, so secure_getenv honours it).
func agent(t *testing.T, users ...nssd.Passwd) *nssdtest.Agent {
	t.Helper()
	a := nssdtest.Start(t, nssdtest.NewSource(users...))
	t.Setenv("CORREO_NSS_SOCKET", a.Socket)
	return a
}

func TestExportsOnlyEntryPoints(t *testing.T) {
	m := module(t)
	f, err := elf.Open(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	var exported []string
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF && elf.ST_BIND(s.Info) != elf.STB_LOCAL {
			exported = append(exported, s.Name)
		}
	}
	want := append([]string(nil), Entries...)
	sort.Strings(exported)
	sort.Strings(want)
	if strings.Join(exported, " ") != strings.Join(want, " ") {
		t.Errorf("exported symbols:\n%v\nwant exactly:\n%v", exported, want)
	}
	libs, _ := f.ImportedLibraries()
	if len(libs) != 1 || libs[0] != "libc.so.6" {
		t.Errorf("links against %v; want only libc.so.6", libs)
	}
	if m.Symbol("correo_nss_check_response") {
		t.Error("an internal helper is visible through dlsym")
	}
}

func TestLookups(t *testing.T) {
	m := module(t)
	a := agent(t, juan, ana)

	pw, st, _ := m.Getpwnam("juan", 1024)
	want := Passwd{Name: "juan", Passwd: "x", UID: 5001, GID: 5000, Gecos: juan.Gecos, Dir: juan.Home, Sh: juan.Shell}
	if st != Success || pw != want {
		t.Fatalf("getpwnam juan = %+v %v", pw, st)
	}
	if pw, st, _ := m.Getpwuid(5002, 1024); st != Success || pw.Name != "ana" || pw.Passwd != "x" {
		t.Fatalf("getpwuid 5002 = %+v %v", pw, st)
	}
	if _, st, e := m.Getpwnam("nadie", 1024); st != NotFound || e != ENOENT {
		t.Errorf("getpwnam nadie = %v errno %d; want NOTFOUND/ENOENT", st, e)
	}
	if _, st, e := m.Getpwuid(4242, 1024); st != NotFound || e != ENOENT {
		t.Errorf("getpwuid 4242 = %v errno %d", st, e)
	}
	// Names the protocol cannot carry never reach nssd.
	before := a.Source.Lookups.Load()
	for _, n := range []string{"", "a:b", "a\nb", strings.Repeat("n", 256)} {
		if _, st, _ := m.Getpwnam(n, 1024); st != NotFound {
			t.Errorf("getpwnam %q = %v", n, st)
		}
	}
	if _, st, _ := m.Getpwuid(0, 1024); st != NotFound {
		t.Errorf("getpwuid 0 = %v: the module must never answer for root", st)
	}
	if a.Source.Lookups.Load() != before {
		t.Error("invalid names or uid 0 reached nssd")
	}

	// ERANGE: too small a buffer, TRYAGAIN so glibc grows it; then the
	// same call with a big one succeeds. Every size up to the exact need.
	need := len("juan") + 1 + 2 + len(juan.Gecos) + 1 + len(juan.Home) + 1 + len(juan.Shell) + 1
	for n := 0; n < need; n++ {
		if _, st, e := m.Getpwnam("juan", n); st != TryAgain || e != ERANGE {
			t.Fatalf("buffer %d < %d: %v errno %d; want TRYAGAIN/ERANGE", n, need, st, e)
		}
	}
	if pw, st, _ := m.Getpwnam("juan", need); st != Success || pw != want {
		t.Fatalf("exact buffer %d: %+v %v", need, pw, st)
	}
}

func TestEnumeration(t *testing.T) {
	m := module(t)
	users := nssdtest.Generated(1500) // more than five pages of 256
	agent(t, users...)
	m.Setpwent()
	var got []string
	for i := 0; ; i++ {
		// Every 100th entry first with a tiny buffer: ERANGE must not
		// skip it.
		if i%100 == 0 && i < len(users) {
			if _, st, e := m.Getpwent(8); st != TryAgain || e != ERANGE {
				t.Fatalf("entry %d with 8 bytes: %v %d", i, st, e)
			}
		}
		pw, st, e := m.Getpwent(1024)
		if st == NotFound {
			if e != ENOENT {
				t.Errorf("end of enumeration: errno %d", e)
			}
			break
		}
		if st != Success {
			t.Fatalf("getpwent #%d: %v errno %d", i, st, e)
		}
		got = append(got, pw.Name)
	}
	if len(got) != len(users) || got[0] != users[0].Name || got[len(got)-1] != users[len(users)-1].Name {
		t.Fatalf("enumerated %d users (%v...); want %d", len(got), got[:min(3, len(got))], len(users))
	}
	// At the end it stays at the end; setpwent starts over.
	if _, st, _ := m.Getpwent(1024); st != NotFound {
		t.Errorf("after the end: %v", st)
	}
	m.Setpwent()
	if pw, st, _ := m.Getpwent(1024); st != Success || pw.Name != users[0].Name {
		t.Errorf("after setpwent: %+v %v", pw, st)
	}
	m.Endpwent()
}

func TestGroups(t *testing.T) {
	m := module(t)
	agent(t)
	g, st, _ := m.Getgrnam("correo", 1024)
	if st != Success || g.GID != 5000 || g.Passwd != "x" || len(g.Members) != 0 {
		t.Fatalf("getgrnam correo = %+v %v", g, st)
	}
	g, st, _ = m.Getgrgid(5001, 1024)
	if st != Success || g.Name != "correo-staff" || strings.Join(g.Members, ",") != "juan,ana" {
		t.Fatalf("getgrgid 5001 = %+v %v", g, st)
	}
	// Too small for the member pointers plus strings; an odd size checks
	// the pointer alignment too.
	for _, n := range []int{0, 7, 31, 40} {
		if _, st, e := m.Getgrgid(5001, n); st != TryAgain || e != ERANGE {
			t.Errorf("getgrgid with %d bytes: %v %d", n, st, e)
		}
	}
	if _, st, _ := m.Getgrnam("wheel", 1024); st != NotFound {
		t.Errorf("getgrnam wheel = %v", st)
	}
	if _, st, _ := m.Getgrgid(0, 1024); st != NotFound {
		t.Errorf("getgrgid 0 = %v", st)
	}
	m.Setgrent()
	var names []string
	for {
		g, st, _ := m.Getgrent(1024)
		if st != Success {
			break
		}
		names = append(names, g.Name)
	}
	m.Endgrent()
	if strings.Join(names, ",") != "correo,correo-staff" {
		t.Errorf("getgrent: %v", names)
	}
}

// timed runs f and fails the test if it takes longer than limit (a hang
// detector).
func timed(t *testing.T, what string, limit time.Duration, f func()) time.Duration {
	t.Helper()
	start := time.Now()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s: still waiting after %v", what, limit)
	}
	return time.Since(start)
}

func TestUnavailable(t *testing.T) {
	m := module(t)
	dir := t.TempDir()

	// No socket at all: UNAVAIL/ENOENT at once.
	t.Setenv("CORREO_NSS_SOCKET", filepath.Join(dir, "missing.sock"))
	timed(t, "no socket", hangLimit, func() {
		if _, st, e := m.Getpwnam("juan", 1024); st != Unavail || e != ENOENT {
			t.Errorf("no socket: %v errno %d; want UNAVAIL/ENOENT", st, e)
		}
		if _, st, _ := m.Getgrnam("correo", 1024); st != Unavail {
			t.Errorf("no socket, group: %v", st)
		}
		m.Setpwent()
		if _, st, _ := m.Getpwent(1024); st != Unavail {
			t.Errorf("no socket, getpwent: %v", st)
		}
	})

	// nssd stopped: its socket file is left behind, nobody listens.
	a := nssdtest.Start(t, nssdtest.NewSource(juan))
	t.Setenv("CORREO_NSS_SOCKET", a.Socket)
	if _, st, _ := m.Getpwnam("juan", 1024); st != Success {
		t.Fatalf("before stop: %v", st)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "stale.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	a.Stop()
	for _, sock := range []string{a.Socket, filepath.Join(dir, "stale.sock")} {
		t.Setenv("CORREO_NSS_SOCKET", sock)
		timed(t, "stopped nssd", hangLimit, func() {
			if _, st, e := m.Getpwuid(5001, 1024); st != Unavail || e != ENOENT {
				t.Errorf("stopped nssd (%s): %v errno %d", filepath.Base(sock), st, e)
			}
		})
	}

	// passwdd down behind a running nssd: nssd says unavail, uncached.
	b := agent(t, juan)
	b.Source.Down.Store(true)
	if _, st, e := m.Getpwnam("juan", 1024); st != Unavail || e != ENOENT {
		t.Errorf("source down: %v errno %d", st, e)
	}
	b.Source.Down.Store(false)
	if _, st, _ := m.Getpwnam("juan", 1024); st != Success {
		t.Errorf("source back: %v", st)
	}

	// A wedged nssd (accepts, never answers): the module's own deadline
	// (CORREO_NSS_TIMEOUT_MS, 5 s) ends the wait.
	wedged, err := net.Listen("unix", filepath.Join(dir, "wedged.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer wedged.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := wedged.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Setenv("CORREO_NSS_SOCKET", filepath.Join(dir, "wedged.sock"))
	d := timed(t, "wedged nssd", 5*time.Second+hangLimit, func() {
		if _, st, _ := m.Getpwnam("juan", 1024); st != Unavail {
			t.Errorf("wedged nssd: %v", st)
		}
	})
	t.Logf("wedged nssd: UNAVAIL after %v", d.Round(time.Millisecond))
	mu.Lock()
	for _, c := range held {
		c.Close()
	}
	mu.Unlock()
}

// fakeNSSD answers every request with reply(request body), then closes.
func fakeNSSD(t *testing.T, reply func(req []byte) []byte) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "fake.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [4]byte
				if _, err := c.Read(hdr[:]); err != nil {
					return
				}
				body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
				c.Read(body)
				c.Write(reply(body))
			}()
		}
	}()
	return sock
}

func frame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func pwRecord(name string, uid, gid uint32, gecos, home, shell string) []byte {
	var b []byte
	str := func(s string) {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	str(name)
	b = binary.BigEndian.AppendUint32(b, uid)
	b = binary.BigEndian.AppendUint32(b, gid)
	str(gecos)
	str(home)
	str(shell)
	return b
}

// Malformed, lying or hostile answers: the module returns an error
// status and neither crashes nor copies out of bounds (the valgrind test
// runs the same module under memcheck).
func TestGarbageFromSocket(t *testing.T) {
	m := module(t)
	good := pwRecord("juan", 5001, 5000, "", "/h", "/bin/sh")
	cases := []struct {
		name  string
		reply []byte
		want  Status
	}{
		{"nothing", nil, Unavail},
		{"half a header", []byte{0, 0}, Unavail},
		{"zero length", frame(nil), Unavail},
		{"length over 64 KiB", []byte{0, 1, 0, 1, 0}, Unavail},
		{"length 4 GiB", []byte{0xff, 0xff, 0xff, 0xff, 0}, Unavail},
		{"truncated body", []byte{0, 0, 0, 100, 0, 0, 4}, Unavail},
		{"unknown status", frame([]byte{9}), Unavail},
		{"notfound with junk", frame([]byte{1, 0}), Unavail},
		{"found, no record", frame([]byte{0}), Unavail},
		{"string overruns", frame(append([]byte{0}, 0, 200, 'j')), Unavail},
		{"name with NUL", frame(append([]byte{0}, pwRecord("ju\x00an", 5001, 5000, "", "/h", "/s")...)), Unavail},
		{"name with colon", frame(append([]byte{0}, pwRecord("ju:an", 5001, 5000, "", "/h", "/s")...)), Unavail},
		{"gecos over 4096", frame(append([]byte{0}, pwRecord("juan", 5001, 5000, strings.Repeat("g", 4097), "/h", "/s")...)), Unavail},
		{"trailing bytes", frame(append(append([]byte{0}, good...), 0)), Unavail},
		{"someone else", frame(append([]byte{0}, pwRecord("pedro", 5001, 5000, "", "/h", "/s")...)), NotFound},
		{"root", frame(append([]byte{0}, pwRecord("juan", 0, 0, "", "/root", "/bin/sh")...)), NotFound},
		{"tryagain", frame([]byte{3}), TryAgain},
		{"the good answer", frame(append([]byte{0}, good...)), Success},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("CORREO_NSS_SOCKET", fakeNSSD(t, func([]byte) []byte { return c.reply }))
			timed(t, c.name, hangLimit+5*time.Second, func() {
				if _, st, _ := m.Getpwnam("juan", 4096); st != c.want {
					t.Errorf("%v, want %v", st, c.want)
				}
			})
		})
	}
	// Enumeration pages: a count beyond the records, and a server that
	// promises more forever with empty pages.
	for _, c := range []struct {
		name  string
		reply func(req []byte) []byte
		want  Status
	}{
		{"count overrun", func([]byte) []byte {
			return frame(append([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, good...))
		}, Unavail},
		{"endless empty pages", func(req []byte) []byte {
			cur := binary.BigEndian.Uint64(req[2:])
			return frame(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint64([]byte{0}, cur+1), 0))
		}, NotFound},
		{"members count overrun", func([]byte) []byte {
			return frame([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 'g', 0, 0, 0x13, 0x88, 0, 5})
		}, Unavail},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("CORREO_NSS_SOCKET", fakeNSSD(t, c.reply))
			timed(t, c.name, hangLimit+5*time.Second, func() {
				m.Setpwent()
				m.Setgrent()
				var st Status
				if strings.HasPrefix(c.name, "members") {
					_, st, _ = m.Getgrent(4096)
				} else {
					_, st, _ = m.Getpwent(4096)
				}
				if st != c.want {
					t.Errorf("%v, want %v", st, c.want)
				}
			})
		})
	}
}

// Many threads at once: lookups share nothing, enumeration is locked.
func TestConcurrentCalls(t *testing.T) {
	m := module(t)
	agent(t, nssdtest.Generated(300)...)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				name := fmt.Sprintf("u%07d", 1+(g*37+i)%300)
				if pw, st, _ := m.Getpwnam(name, 1024); st != Success || pw.Name != name {
					errs <- fmt.Errorf("getpwnam %s: %v %+v", name, st, pw)
					return
				}
				if g%4 == 0 {
					m.Getpwent(1024) // interleaved with lookups; must not crash
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The C decoder (correo_nss_check_response, compiled from the module's
// own source) and nssproto.DecodeResponse must accept and refuse exactly
// the same bodies: the committed fuzz corpus, hand-made edge cases, and
// mutations of valid answers.
func TestDecoderCrossCheck(t *testing.T) {
	testutil.NeedCommand(t, "gcc")
	bin, err := CompileC(t.TempDir(), "decodecheck", "-I"+SrcDir())
	if err != nil {
		t.Fatal(err)
	}
	cases := crossCheckCases(t)
	var in []byte
	for _, c := range cases {
		in = append(in, c.op)
		in = binary.BigEndian.AppendUint32(in, uint32(len(c.body)))
		in = append(in, c.body...)
	}
	out, err := runWithInput(bin, in)
	if err != nil {
		t.Fatalf("decodecheck: %v", err)
	}
	if len(out) != len(cases) {
		t.Fatalf("decodecheck answered %d cases of %d", len(out), len(cases))
	}
	accepted := 0
	for i, c := range cases {
		_, goErr := nssproto.DecodeResponse(nssproto.Op(c.op), c.body)
		cOK := out[i] == '1'
		if cOK != (goErr == nil) {
			t.Errorf("op %d body % x: C accepts=%v, Go err=%v", c.op, c.body[:min(len(c.body), 64)], cOK, goErr)
		}
		if cOK {
			accepted++
		}
	}
	t.Logf("%d cases, %d accepted by both", len(cases), accepted)
	if accepted < 20 {
		t.Errorf("only %d accepted cases: the cross-check is not exercising the decoders", accepted)
	}
}
