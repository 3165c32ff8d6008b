package queue

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/src/delivery"
)

// fakeDeliverer answers each recipient from a table (default delivered)
// and keeps what it received. It stands for the storage hosts in these
// unit tests; the process tests in src/cmd/smtpd use real pdeliveryd.
type fakeDeliverer struct {
	mu     sync.Mutex
	status map[string]delivery.Status
	got    map[string][]string // rcpt → messages
	hosts  [][]string          // env.Hosts of every call
	// gate, when set, holds every attempt until it is closed, so a test
	// can look at the queue while an attempt is in flight.
	gate chan struct{}
}

func newFake() *fakeDeliverer {
	return &fakeDeliverer{status: map[string]delivery.Status{}, got: map[string][]string{}}
}

func (f *fakeDeliverer) set(rcpt string, s delivery.Status) {
	f.mu.Lock()
	f.status[rcpt] = s
	f.mu.Unlock()
}

func (f *fakeDeliverer) count(rcpt string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got[rcpt])
}

func (f *fakeDeliverer) msgs(rcpt string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got[rcpt]...)
}

func (f *fakeDeliverer) Deliver(ctx context.Context, env delivery.Envelope, msg delivery.Message) []delivery.Result {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
		}
	}
	b, _ := io.ReadAll(io.NewSectionReader(msg, 0, msg.Size()))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hosts = append(f.hosts, env.Hosts)
	var out []delivery.Result
	for _, r := range env.To {
		s := f.status[r]
		if s == 0 {
			s = delivery.Delivered
		}
		res := delivery.Result{Rcpt: r, Status: s, Code: 250, Enhanced: "2.0.0", Text: "ok", Host: "st1"}
		switch s {
		case delivery.Temporary:
			res.Code, res.Enhanced, res.Text = 451, "4.3.0", "try later"
		case delivery.Permanent:
			res.Code, res.Enhanced, res.Text = 550, "5.1.1", "no such user"
		case delivery.Delivered:
			f.got[r] = append(f.got[r], string(b))
		}
		out = append(out, res)
	}
	return out
}

func open(t *testing.T, dir string, d Deliverer, lifetime time.Duration) *Queue {
	t.Helper()
	q, err := Open(Config{Dir: dir, Local: d, Retry: []time.Duration{50 * time.Millisecond}, Lifetime: lifetime,
		Tick: 20 * time.Millisecond, Hostname: "mx1.correo.test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close(context.Background()) })
	return q
}

func enqueue(t *testing.T, q *Queue, from string, body string, to ...string) string {
	t.Helper()
	w, err := q.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	e := &Envelope{From: from, Trace: "tracetracetrace1"}
	for _, r := range to {
		e.Rcpts = append(e.Rcpts, Recipient{Addr: r, Route: RouteLocal})
	}
	if err := w.Commit(e); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDeliverRetryBounce(t *testing.T) {
	dir := t.TempDir()
	f := newFake()
	f.set("b@correo.test", delivery.Temporary)
	f.set("c@correo.test", delivery.Permanent)
	q := open(t, dir, f, time.Hour)
	msg := "Subject: hi\r\nMessage-ID: <m1@x>\r\n\r\nbody\r\n"
	enqueue(t, q, "s@correo.test", msg, "a@correo.test", "b@correo.test", "c@correo.test")
	waitFor(t, "a delivered and c bounced", func() bool { return f.count("a@correo.test") == 1 && f.count("s@correo.test") == 1 })
	dsn := f.msgs("s@correo.test")[0]
	for _, want := range []string{"report-type=delivery-status", "Final-Recipient: rfc822; c@correo.test", "Status: 5.1.1",
		"Action: failed", "Diagnostic-Code: smtp; 550 5.1.1 no such user", "Message-ID: <m1@x>", "text/rfc822-headers"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	if strings.Contains(dsn, "body\r\n") {
		t.Errorf("DSN returns the body")
	}
	f.set("b@correo.test", delivery.Delivered)
	waitFor(t, "b delivered after retry", func() bool { return f.count("b@correo.test") == 1 })
	waitFor(t, "queue empty", func() bool { return q.Len() == 0 })
	// Close waits for attempts in progress: after it nothing is delivered.
	q.Close(context.Background())
	if f.count("a@correo.test") != 1 || f.count("b@correo.test") != 1 || f.count("s@correo.test") != 1 {
		t.Errorf("not exactly once: a=%d b=%d dsn=%d", f.count("a@correo.test"), f.count("b@correo.test"), f.count("s@correo.test"))
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "q")); len(ents) != 0 {
		t.Errorf("q/ not empty: %v", ents)
	}
	if envs, errs, err := List(dir); len(envs)+len(errs) != 0 || err != nil {
		t.Errorf("List after the queue emptied: %v %v %v", envs, errs, err)
	}
}

func TestNullSenderNeverBounced(t *testing.T) {
	f := newFake()
	f.set("c@correo.test", delivery.Permanent)
	q := open(t, t.TempDir(), f, time.Hour)
	enqueue(t, q, "", "Subject: x\r\n\r\nb\r\n", "c@correo.test")
	waitFor(t, "queue empty", func() bool { return q.Len() == 0 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) != 0 {
		t.Errorf("something was sent for a null-sender failure: %v", f.got)
	}
}

func TestLifetimeExpires(t *testing.T) {
	f := newFake()
	f.set("b@correo.test", delivery.Temporary)
	q := open(t, t.TempDir(), f, 300*time.Millisecond)
	enqueue(t, q, "s@correo.test", "Subject: x\r\n\r\nb\r\n", "b@correo.test")
	waitFor(t, "expiry bounce", func() bool { return f.count("s@correo.test") == 1 })
	if dsn := f.msgs("s@correo.test")[0]; !strings.Contains(dsn, "Status: 4.4.7") {
		t.Errorf("expiry DSN:\n%s", dsn)
	}
	waitFor(t, "queue empty", func() bool { return q.Len() == 0 })
}

// TestRestartAndCrashLeftovers: a queue reopened after its process died
// delivers what was committed, drops what was not, and refuses a second
// opener while the first holds the lock.
func TestRestartAndCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	f := newFake()
	f.set("a@correo.test", delivery.Temporary)
	q, err := Open(Config{Dir: dir, Local: f, Retry: []time.Duration{time.Hour}, Tick: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	id := enqueue(t, q, "s@correo.test", "Subject: x\r\n\r\nb\r\n", "a@correo.test")
	waitFor(t, "first attempt", func() bool {
		e, err := state(dir, id)
		return err == nil && e.Attempts == 1
	})
	if _, err := Open(Config{Dir: dir, Local: f}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open: %v", err)
	}
	q.Close(context.Background())
	// What a crash leaves: a slot being written, a damaged legacy file,
	// a tmp file.
	os.WriteFile(filepath.Join(dir, "slots", "00000090"), []byte("x"), 0o640)
	os.WriteFile(filepath.Join(dir, "q", NewID()+".msg"), []byte("x"), 0o640)
	os.WriteFile(filepath.Join(dir, "tmp", "junk"), []byte("x"), 0o640)
	f.set("a@correo.test", delivery.Delivered)
	q2 := open(t, dir, f, time.Hour)
	if q2.Len() != 1 {
		t.Fatalf("reopened queue holds %d, want 1", q2.Len())
	}
	// Flush through the control directory, as correoctl does.
	if err := RequestFlush(dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after restart", func() bool { return f.count("a@correo.test") == 1 })
	waitFor(t, "queue empty", func() bool { return q2.Len() == 0 })
	ents, _ := os.ReadDir(filepath.Join(dir, "q"))
	tmps, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	if len(ents)+len(tmps) != 0 {
		t.Errorf("leftovers: q=%v tmp=%v", ents, tmps)
	}
}

func TestDeleteWhileRunning(t *testing.T) {
	dir := t.TempDir()
	f := newFake()
	f.set("a@correo.test", delivery.Temporary)
	q, err := Open(Config{Dir: dir, Local: f, Retry: []time.Duration{time.Hour}, Tick: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	id := enqueue(t, q, "s@correo.test", "Subject: x\r\n\r\nb\r\n", "a@correo.test")
	var hdr bytes.Buffer
	if _, err := Show(dir, id, &hdr); err != nil || !strings.Contains(hdr.String(), "Subject: x") {
		t.Fatalf("Show: %v %q", err, hdr.String())
	}
	if err := RequestDelete(dir, id); err != nil {
		t.Fatal(err)
	}
	if q.Len() != 0 {
		t.Fatal("still queued")
	}
	if _, err := os.Stat(filepath.Join(dir, "trash", id+".msg")); err != nil {
		t.Fatal(err)
	}
	envs, _, _ := List(dir)
	if len(envs) != 0 {
		t.Fatalf("List: %d", len(envs))
	}
}

func TestIDs(t *testing.T) {
	prev := ""
	for i := 0; i < 1000; i++ {
		id := NewID()
		if !ValidID(id) || id <= prev {
			t.Fatalf("id %q after %q: not valid or not increasing", id, prev)
		}
		prev = id
	}
	if d := time.Since(IDTime(prev)); d < 0 || d > time.Minute {
		t.Errorf("IDTime off by %v", d)
	}
}

// TestStorageHintFirstAttemptOnly: the storage host smtpd found goes to
// the first attempt; a retry asks the directory again.
func TestStorageHintFirstAttemptOnly(t *testing.T) {
	dir := t.TempDir()
	f := newFake()
	f.set("a@correo.test", delivery.Temporary)
	q := open(t, dir, f, time.Hour)
	w, err := q.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: x\r\n\r\nb\r\n")
	if err := w.Commit(&Envelope{From: "s@correo.test", Trace: "tracetracetrace1",
		Rcpts: []Recipient{{Addr: "a@correo.test", Route: RouteLocal, Storage: "st2"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two attempts", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.hosts) >= 2
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if h := f.hosts[0]; len(h) != 1 || h[0] != "st2" {
		t.Errorf("first attempt hints %q, want [st2]", h)
	}
	if h := f.hosts[1]; h != nil {
		t.Errorf("retry hints %q, want none", h)
	}
}
