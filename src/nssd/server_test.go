package nssd_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/src/nssd"
	"correo/src/nssd/nssdtest"
	"correo/src/nssproto"
)

var juan = nssd.Passwd{Name: "juan", UID: 5001, GID: 5000, Gecos: "Juan Pérez", Home: "/var/mail/j/u/a/juan", Shell: "/usr/sbin/nologin"}

func ask(t *testing.T, socket string, req nssproto.Request) nssproto.Response {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := nssproto.AppendRequest(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	r, err := nssproto.ReadResponse(c, req.Op)
	if err != nil {
		t.Fatalf("%s: %v", req.Op, err)
	}
	return r
}

func TestLookupsAndCache(t *testing.T) {
	src := nssdtest.NewSource(juan)
	a := nssdtest.Start(t, src)

	r := ask(t, a.Socket, nssproto.Request{Op: nssproto.OpGetpwnam, Name: "juan"})
	if r.Status != nssproto.StatusFound || r.Passwd[0] != nssproto.Passwd(juan) {
		t.Fatalf("getpwnam juan = %+v", r)
	}
	// By uid after by name: a hit, the Source is not asked again.
	r = ask(t, a.Socket, nssproto.Request{Op: nssproto.OpGetpwuid, ID: 5001})
	if r.Status != nssproto.StatusFound || r.Passwd[0].Name != "juan" {
		t.Fatalf("getpwuid 5001 = %+v", r)
	}
	if n := src.Lookups.Load(); n != 1 {
		t.Errorf("source asked %d times, want 1 (uid served from the cache)", n)
	}
	// A miss is cached negatively.
	for i := 0; i < 3; i++ {
		if r := ask(t, a.Socket, nssproto.Request{Op: nssproto.OpGetpwnam, Name: "nadie"}); r.Status != nssproto.StatusNotFound {
			t.Fatalf("nadie: %v", r.Status)
		}
	}
	if n := src.Lookups.Load(); n != 2 {
		t.Errorf("source asked %d times, want 2 (negative answer cached)", n)
	}
	// Unavailability is never cached.
	src.Down.Store(true)
	for i := 0; i < 2; i++ {
		if r := ask(t, a.Socket, nssproto.Request{Op: nssproto.OpGetpwnam, Name: "pedro"}); r.Status != nssproto.StatusUnavail {
			t.Fatalf("pedro while down: %v", r.Status)
		}
	}
	src.Down.Store(false)
	src.Add(nssd.Passwd{Name: "pedro", UID: 5003, GID: 5000})
	if r := ask(t, a.Socket, nssproto.Request{Op: nssproto.OpGetpwnam, Name: "pedro"}); r.Status != nssproto.StatusFound {
		t.Fatalf("pedro after recovery: %v", r.Status)
	}
	// Cached users keep answering while the source is down.
	src.Down.Store(true)
	if r := ask(t, a.Socket, nssproto.Request{Op: nssproto.OpGetpwnam, Name: "juan"}); r.Status != nssproto.StatusFound {
		t.Fatalf("cached juan while down: %v", r.Status)
	}
}

func TestCacheTTLAndBound(t *testing.T) {
	c := nssd.NewCache(time.Minute, time.Second, 4)
	now := time.Unix(1000, 0)
	nssd.SetCacheClock(c, func() time.Time { return now })
	src := nssdtest.NewSource(nssdtest.Generated(10)...)
	srv := nssd.New(nssd.Config{Source: src, Cache: c})
	defer srv.Close()
	get := func(name string) nssproto.Status {
		return srv.Answer(nssproto.Request{Op: nssproto.OpGetpwnam, Name: name}).Status
	}
	get("u0000001") // two entries: by name and by uid
	get("nadie")    // one negative entry
	if n := src.Lookups.Load(); n != 2 || c.Len() != 3 {
		t.Fatalf("lookups %d, entries %d", n, c.Len())
	}
	now = now.Add(2 * time.Second) // negative expired, positive not
	get("nadie")
	get("u0000001")
	if n := src.Lookups.Load(); n != 3 {
		t.Errorf("after 2s: lookups %d, want 3 (only the negative entry expired)", n)
	}
	now = now.Add(time.Minute)
	get("u0000001")
	if n := src.Lookups.Load(); n != 4 {
		t.Errorf("after the positive TTL: lookups %d, want 4", n)
	}
	for i := 1; i <= 10; i++ {
		get(nssdtest.Generated(i)[i-1].Name)
	}
	if c.Len() > 4 {
		t.Errorf("cache holds %d entries, bound is 4", c.Len())
	}
}

func TestSingleFlight(t *testing.T) {
	src := nssdtest.NewSource(juan)
	src.Delay.Store(int64(100 * time.Millisecond))
	srv := nssd.New(nssd.Config{Source: src, Cache: nssd.NewCache(time.Minute, time.Minute, 100)})
	defer srv.Close()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := srv.Answer(nssproto.Request{Op: nssproto.OpGetpwnam, Name: "juan"}); r.Status != nssproto.StatusFound {
				t.Errorf("status %v", r.Status)
			}
		}()
	}
	wg.Wait()
	if n := src.Lookups.Load(); n != 1 {
		t.Errorf("20 concurrent lookups asked the source %d times, want 1", n)
	}
}

// badSource answers with records nssd must not pass on.
type badSource struct{ *nssdtest.Source }

func (*badSource) LookupName(_ context.Context, name string) (nssd.Passwd, error) {
	switch name {
	case "root2":
		return nssd.Passwd{Name: "root2", UID: 0, GID: 0}, nil
	case "alias":
		return juan, nil // another name than asked
	case "colon":
		return nssd.Passwd{Name: "colon", UID: 7000, GID: 5000, Gecos: "a:b"}, nil
	case "busy":
		return nssd.Passwd{}, nssd.ErrTryAgain
	case "broken":
		return nssd.Passwd{}, errors.New("some transport error")
	}
	return nssd.Passwd{}, nssd.ErrNotFound
}

func TestRefusedRecords(t *testing.T) {
	var logs bytes.Buffer
	srv := nssd.New(nssd.Config{Source: &badSource{nssdtest.NewSource()}, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	defer srv.Close()
	for name, want := range map[string]nssproto.Status{
		"root2": nssproto.StatusNotFound, "alias": nssproto.StatusNotFound, "colon": nssproto.StatusNotFound,
		"busy": nssproto.StatusTryAgain, "broken": nssproto.StatusUnavail,
	} {
		if r := srv.Answer(nssproto.Request{Op: nssproto.OpGetpwnam, Name: name}); r.Status != want {
			t.Errorf("%s: %v, want %v", name, r.Status, want)
		}
	}
	if !strings.Contains(logs.String(), "refusing a record") {
		t.Errorf("no log line for a refused record:\n%s", logs.String())
	}
}

func TestEnumerationPages(t *testing.T) {
	users := nssdtest.Generated(1000)
	// A few fat records force pages to end on the byte budget.
	for i := 0; i < len(users); i += 50 {
		users[i].Gecos = strings.Repeat("g", nssproto.MaxField)
	}
	users = append(users, nssd.Passwd{Name: "zzroot", UID: 0, GID: 0}) // refused, skipped
	src := nssdtest.NewSource(users...)
	src.BatchMax = 7 // like pwclient's small datagrams
	srv := nssd.New(nssd.Config{Source: src})
	defer srv.Close()
	seen := map[string]bool{}
	pages := 0
	for cursor := uint64(0); ; {
		r := srv.Answer(nssproto.Request{Op: nssproto.OpGetpwent, Cursor: cursor})
		if r.Status != nssproto.StatusFound {
			t.Fatalf("page at %d: %v", cursor, r.Status)
		}
		if _, err := nssproto.AppendResponse(nil, nssproto.OpGetpwent, r); err != nil {
			t.Fatalf("page at %d does not fit: %v", cursor, err)
		}
		pages++
		for _, p := range r.Passwd {
			if seen[p.Name] {
				t.Fatalf("%s twice", p.Name)
			}
			seen[p.Name] = true
		}
		if r.Next == 0 {
			break
		}
		cursor = r.Next
	}
	if len(seen) != 1000 || seen["zzroot"] {
		t.Errorf("enumerated %d users (zzroot: %v), want 1000 without zzroot", len(seen), seen["zzroot"])
	}
	if pages < 4 {
		t.Errorf("%d pages: want several", pages)
	}
	src.Down.Store(true)
	if r := srv.Answer(nssproto.Request{Op: nssproto.OpGetpwent}); r.Status != nssproto.StatusUnavail {
		t.Errorf("enumeration while down: %v", r.Status)
	}
}

func TestGroups(t *testing.T) {
	a := nssdtest.Start(t, nssdtest.NewSource())
	r := ask(t, a.Socket, nssproto.Request{Op: nssproto.OpGetgrnam, Name: "correo"})
	if r.Status != nssproto.StatusFound || r.Groups[0].GID != 5000 {
		t.Fatalf("getgrnam correo: %+v", r)
	}
	r = ask(t, a.Socket, nssproto.Request{Op: nssproto.OpGetgrgid, ID: 5001})
	if r.Status != nssproto.StatusFound || r.Groups[0].Name != "correo-staff" || len(r.Groups[0].Members) != 2 {
		t.Fatalf("getgrgid 5001: %+v", r)
	}
	if r := ask(t, a.Socket, nssproto.Request{Op: nssproto.OpGetgrgid, ID: 4}); r.Status != nssproto.StatusNotFound {
		t.Fatalf("getgrgid 4: %v", r.Status)
	}
	r = ask(t, a.Socket, nssproto.Request{Op: nssproto.OpGetgrent})
	if r.Status != nssproto.StatusFound || len(r.Groups) != 2 || r.Next != 0 {
		t.Fatalf("getgrent: %+v", r)
	}
}

// Garbage, over-long frames and silent clients get the connection closed;
// the server keeps serving everyone else.
func TestBadClients(t *testing.T) {
	var logs syncBuffer
	src := nssdtest.NewSource(juan)
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := nssd.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := nssd.New(nssd.Config{Source: src, IOTimeout: 200 * time.Millisecond, MaxConns: 4,
		Log: slog.New(slog.NewTextHandler(&logs, nil))})
	go srv.Serve(ln)
	defer srv.Close()

	for name, junk := range map[string][]byte{
		"over-long": {0, 1, 0, 0, 1, 1},
		"garbage":   []byte("GET / HTTP/1.0\r\n\r\n"),
		"version 9": {0, 0, 0, 2, 9, 1},
	} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(junk)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 10))
		if n != 0 || err == nil {
			t.Errorf("%s: read %d bytes, %v; want the connection closed", name, n, err)
		}
		c.Close()
	}
	// More silent clients than MaxConns: each is dropped after IOTimeout,
	// and a real client is then served.
	var silent []net.Conn
	for i := 0; i < 6; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	if r := ask(t, sock, nssproto.Request{Op: nssproto.OpGetpwnam, Name: "juan"}); r.Status != nssproto.StatusFound {
		t.Errorf("after bad clients: %v", r.Status)
	}
	for _, c := range silent {
		c.Close()
	}
	// Three bad requests within the rate limit window: one log line.
	if n := strings.Count(logs.String(), "bad request"); n != 1 {
		t.Errorf("%d log lines for bad requests, want 1 (rate-limited):\n%s", n, logs.String())
	}
}

// Several requests may share a connection.
func TestPipelinedRequests(t *testing.T) {
	a := nssdtest.Start(t, nssdtest.NewSource(juan))
	c, err := net.Dial("unix", a.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b []byte
	b, _ = nssproto.AppendRequest(b, nssproto.Request{Op: nssproto.OpGetpwnam, Name: "juan"})
	b, _ = nssproto.AppendRequest(b, nssproto.Request{Op: nssproto.OpGetpwuid, ID: 1})
	c.Write(b)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if r, err := nssproto.ReadResponse(c, nssproto.OpGetpwnam); err != nil || r.Status != nssproto.StatusFound {
		t.Fatalf("first: %+v %v", r, err)
	}
	if r, err := nssproto.ReadResponse(c, nssproto.OpGetpwuid); err != nil || r.Status != nssproto.StatusNotFound {
		t.Fatalf("second: %+v %v", r, err)
	}
}

func TestListen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "correo")
	sock := filepath.Join(dir, "nssd.sock")
	ln, err := nssd.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o755 | os.ModeDir, sock: 0o666 | os.ModeSocket} {
		st, err := os.Stat(path)
		if err != nil || st.Mode() != want {
			t.Errorf("%s: mode %v, want %v (%v)", path, st.Mode(), want, err)
		}
	}
	// A second nssd on the same path is refused while the first answers.
	if _, err := nssd.Listen(sock); err == nil || !strings.Contains(err.Error(), "another nssd") {
		t.Errorf("second Listen: %v", err)
	}
	// A stale socket (its owner died without removing it) is replaced.
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	ln2, err := nssd.Listen(sock)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	ln2.Close()
	// A regular file is never removed.
	os.WriteFile(sock, []byte("x"), 0o644)
	if _, err := nssd.Listen(sock); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("over a regular file: %v", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func roundTrip(c net.Conn, req nssproto.Request) (nssproto.Response, error) {
	b, err := nssproto.AppendRequest(nil, req)
	if err != nil {
		return nssproto.Response{}, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		return nssproto.Response{}, err
	}
	return nssproto.ReadResponse(c, req.Op)
}

// closedSoon reports whether nssd closes c within d.
func closedSoon(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 1))
	return n == 0 && err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// A connection stays open between requests (the module keeps one per
// process) until IdleTimeout; when MaxConns are open, the longest idle
// one makes room for a newcomer, but a connection that has not had its
// first answer yet is never taken.
func TestKeptConnections(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := nssd.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := nssd.New(nssd.Config{Source: nssdtest.NewSource(juan), MaxConns: 2, IOTimeout: 5 * time.Second,
		IdleTimeout: 500 * time.Millisecond})
	go srv.Serve(ln)
	defer srv.Close()
	q := nssproto.Request{Op: nssproto.OpGetpwnam, Name: "juan"}
	dial := func() net.Conn {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	// Many requests, one connection, pauses shorter than IdleTimeout.
	a := dial()
	for i := 0; i < 5; i++ {
		if r, err := roundTrip(a, q); err != nil || r.Status != nssproto.StatusFound {
			t.Fatalf("request %d on a kept connection: %+v %v", i, r, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Then idle past IdleTimeout: closed.
	if !closedSoon(a, 2*time.Second) {
		t.Error("an idle connection outlived IdleTimeout")
	}

	// Two kept connections fill MaxConns; a newcomer evicts the older.
	old, young := dial(), dial()
	for _, c := range []net.Conn{old, young} {
		if _, err := roundTrip(c, q); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := ask(t, sock, q); r.Status != nssproto.StatusFound {
		t.Fatalf("newcomer: %v", r.Status)
	}
	if !closedSoon(old, time.Second) {
		t.Error("the longest idle connection was not evicted")
	}
	if r, err := roundTrip(young, q); err != nil || r.Status != nssproto.StatusFound {
		t.Errorf("the younger idle connection: %+v %v", r, err)
	}

	// A fresh connection that has not asked yet is not idle, even when
	// it is older than every kept one: a newcomer takes the kept one's
	// slot.
	young.Close()
	time.Sleep(100 * time.Millisecond) // nssd notices and frees the slot
	fresh := dial()
	time.Sleep(50 * time.Millisecond)
	kept := dial()
	if _, err := roundTrip(kept, q); err != nil {
		t.Fatal(err)
	}
	if r := ask(t, sock, q); r.Status != nssproto.StatusFound {
		t.Fatalf("second newcomer: %v", r.Status)
	}
	if r, err := roundTrip(fresh, q); err != nil || r.Status != nssproto.StatusFound {
		t.Errorf("the fresh connection was evicted: %+v %v", r, err)
	}
	if !closedSoon(kept, time.Second) {
		t.Error("the idle kept connection was not evicted")
	}
}
