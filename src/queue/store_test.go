package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"correo/internal/testutil"
	"correo/src/delivery"
)

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// state is the current envelope of message id, as correoctl reads it.
func state(dir, id string) (*Envelope, error) {
	st := store{dir: dir}
	m, err := st.find(id)
	if err != nil {
		return nil, err
	}
	return st.readEnv(&m, false)
}

// slotNames lists slots/.
func slotNames(t *testing.T, dir string) []string {
	return testutil.DirNames(t, filepath.Join(dir, "slots"))
}

// TestOneSlotPerMessage: a committed message is one slot holding the
// header, the message and the envelope it was accepted with; nothing else
// is written until an attempt leaves work to do.
func TestOneSlotPerMessage(t *testing.T) {
	dir := t.TempDir()
	f := newFake()
	f.set("a@correo.test", delivery.Temporary)
	// The first attempt starts at once: hold it, so that what is on disk
	// before any attempt has left work can be seen.
	f.gate = make(chan struct{})
	q, err := Open(Config{Dir: dir, Local: f, Retry: []time.Duration{time.Hour}, Tick: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	release := sync.OnceFunc(func() { close(f.gate) })
	defer release()
	body := "Subject: one\r\n\r\nbody\r\n"
	id := enqueue(t, q, "s@correo.test", body, "a@correo.test")
	slots := slotNames(t, dir)
	if len(slots) != 1 {
		t.Fatalf("slots/ holds %v, want one file", slots)
	}
	fh, err := os.Open(filepath.Join(dir, "slots", slots[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	h, e, err := readSlot(fh, true)
	if err != nil {
		t.Fatal(err)
	}
	if h.id != id || e.ID != id || e.Size != int64(len(body)) || e.From != "s@correo.test" || len(e.Rcpts) != 1 || e.Rcpts[0].State != Pending {
		t.Fatalf("committed header %+v envelope %+v", h, e)
	}
	got := make([]byte, len(body))
	fh.ReadAt(got, slotHeaderLen)
	if string(got) != body {
		t.Fatalf("message bytes %q, want %q", got, body)
	}
	if n := testutil.DirNames(t, filepath.Join(dir, "q")); len(n) != 0 {
		t.Fatalf("q/ holds %v before any attempt", n)
	}
	release()
	// The deferral records its state beside the slot.
	waitFor(t, "deferred state", func() bool {
		e, err := state(dir, id)
		return err == nil && e.Attempts == 1
	})
	if _, err := os.Stat(filepath.Join(dir, "q", id+".env")); err != nil {
		t.Fatalf("no state file after a deferral: %v", err)
	}
	envs, errs, err := List(dir)
	if err != nil || len(errs) != 0 || len(envs) != 1 || envs[0].Attempts != 1 {
		t.Fatalf("List: %v %v %+v", err, errs, envs)
	}
}

// TestSlotsAreReused: a delivered message's slot is marked free and the
// next message is written over that same inode: a busy queue allocates no
// inode per message, and a shorter message never carries the tail of a
// longer one.
func TestSlotsAreReused(t *testing.T) {
	dir := t.TempDir()
	f := newFake()
	q := open(t, dir, f, time.Hour)
	long := "Subject: 1\r\n\r\n" + strings.Repeat("secret one, ", 2000) + "\r\n"
	enqueue(t, q, "s@correo.test", long, "a@correo.test")
	waitFor(t, "first delivery", func() bool { return q.Len() == 0 && q.st.pool.len() == 1 })
	slots := slotNames(t, dir)
	if len(slots) != 1 {
		t.Fatalf("slots/ holds %v, want one file", slots)
	}
	p := filepath.Join(dir, "slots", slots[0])
	ino := inode(t, p)
	if _, _, err := readSlot(mustOpen(t, p), false); !errors.Is(err, errNotInUse) {
		t.Fatalf("a delivered message's slot reads as %v, want free", err)
	}
	short := "Subject: 2\r\n\r\nb\r\n"
	enqueue(t, q, "s@correo.test", short, "b@correo.test")
	waitFor(t, "second delivery", func() bool { return f.count("b@correo.test") == 1 })
	if got := f.msgs("b@correo.test")[0]; got != short {
		t.Fatalf("second message delivered as %d bytes %.60q...: the reused slot's old bytes leak", len(got), got)
	}
	waitFor(t, "free again", func() bool { return q.Len() == 0 && q.st.pool.len() == 1 })
	if got := slotNames(t, dir); len(got) != 1 || got[0] != slots[0] || inode(t, p) != ino {
		t.Errorf("second message did not reuse slot %s (inode %d): slots/ holds %v", slots[0], ino, got)
	}
	// An aborted message gives its slot back.
	w, _ := q.NewMessage()
	w.Write([]byte("half a message"))
	w.Abort()
	if n := q.st.pool.len(); n != 1 {
		t.Errorf("pool holds %d slots after an abort, want the 1 back", n)
	}
	// A message above the recycling bound leaves with its slot.
	enqueue(t, q, "s@correo.test", strings.Repeat("x", maxRecycledBytes+1), "c@correo.test")
	waitFor(t, "big delivery", func() bool { return f.count("c@correo.test") == 1 && q.Len() == 0 })
	for _, n := range slotNames(t, dir) {
		if fi, _ := os.Stat(filepath.Join(dir, "slots", n)); fi.Size() > maxRecycledBytes {
			t.Errorf("slots/%s keeps %d bytes", n, fi.Size())
		}
	}
}

func mustOpen(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// writeSlot writes a slot file as commitFiles would, with the checksum
// computed over sumOver (the real content) so a test can fake a torn one.
func writeSlot(t *testing.T, p string, e *Envelope, body, sumOver string) {
	t.Helper()
	env, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	h := slotHeader{state: slotCommitted, id: e.ID, msgLen: int64(len(body)), envLen: int64(len(env))}
	h.sum = crc32.Update(crc32.Checksum(append([]byte(sumOver), env...), castagnoli), castagnoli, h.fields())
	if err := os.WriteFile(p, append(append(h.encode(), body...), env...), 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestCrashStates: what each crash point leaves is handled at Open.
func TestCrashStates(t *testing.T) {
	dir := t.TempDir()
	st := store{dir: dir}
	if err := st.prepare(); err != nil {
		t.Fatal(err)
	}
	// A finish cut short after the slot was marked free: its state file
	// stays.
	staleID := NewID()
	os.WriteFile(st.envPath(staleID), []byte("{}"), 0o640)
	// A legacy queue file, damaged: no trailer, no state.
	damaged := NewID()
	os.WriteFile(st.msgPath(damaged), []byte("Subject: x\r\n\r\nno envelope\r\n"), 0o640)
	// A slot whose header reached the disk but whose bytes did not: they
	// do not match the checksum.
	torn := NewID()
	writeSlot(t, st.slotPath("00000007"), &Envelope{Version: 1, ID: torn, From: "s@correo.test", Trace: "torntrace", Size: 4,
		Rcpts: []Recipient{{Addr: "torn@correo.test", Route: RouteLocal, State: Pending}}}, "\x00\x00\x00\x00", "real")
	// A slot committed and never attempted (kill -9 right after the 250).
	acked, ackedBody := NewID(), "Subject: acked\r\n\r\nb\r\n"
	writeSlot(t, st.slotPath("00000003"), &Envelope{Version: 1, ID: acked, From: "s@correo.test", Trace: "ackedtrace", Size: int64(len(ackedBody)),
		Rcpts: []Recipient{{Addr: "acked@correo.test", Route: RouteLocal, State: Pending}}}, ackedBody, ackedBody)
	// A slot being written when the crash came: header still zero.
	os.WriteFile(st.slotPath("00000004"), make([]byte, 300), 0o640)
	// A state file being written.
	os.WriteFile(filepath.Join(dir, "tmp", NewID()+".env.1"), []byte("partial"), 0o640)
	// Messages queued by earlier correo versions: envelope at the end of
	// q/ID.msg, or only in q/ID.env.
	oldID, oldBody := NewID(), "Subject: old layout\r\n\r\nb\r\n"
	os.WriteFile(st.msgPath(oldID), []byte(oldBody), 0o640)
	oldEnv, err := (&Envelope{Version: 1, ID: oldID, From: "s@correo.test", Trace: "oldtrace", Size: int64(len(oldBody)),
		Rcpts: []Recipient{{Addr: "old@correo.test", Route: RouteLocal, State: Pending}}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(st.envPath(oldID), oldEnv, 0o640)
	trID, trBody := NewID(), "Subject: trailer layout\r\n\r\nb\r\n"
	trEnv, _ := (&Envelope{Version: 1, ID: trID, From: "s@correo.test", Trace: "trtrace", Size: int64(len(trBody)),
		Rcpts: []Recipient{{Addr: "trailer@correo.test", Route: RouteLocal, State: Pending}}}).Encode()
	os.WriteFile(st.msgPath(trID), append([]byte(trBody+string(trEnv)), trailer(len(trEnv), crc32.Checksum([]byte(trBody+string(trEnv)), castagnoli))...), 0o640)
	// An earlier correo's recycled files, and a stray file in slots/.
	os.MkdirAll(filepath.Join(dir, "free"), 0o750)
	os.WriteFile(filepath.Join(dir, "free", NewID()), nil, 0o640)
	os.WriteFile(st.slotPath("README"), []byte("left by hand"), 0o640)

	f := newFake()
	q := open(t, dir, f, time.Hour)
	for rcpt, body := range map[string]string{"old@correo.test": oldBody, "trailer@correo.test": trBody, "acked@correo.test": ackedBody} {
		waitFor(t, rcpt, func() bool { return f.count(rcpt) == 1 })
		if got := f.msgs(rcpt)[0]; got != body {
			t.Errorf("%s: delivered %q, want %q", rcpt, got, body)
		}
	}
	waitFor(t, "queue empty", func() bool { return q.Len() == 0 })
	if _, err := os.Stat(st.envPath(staleID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale state file kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "trash", damaged+".msg")); err != nil {
		t.Errorf("damaged queue file not moved to trash: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "trash", torn+".msg")); err != nil {
		t.Errorf("torn slot not copied to trash: %v", err)
	}
	if f.count("torn@correo.test") != 0 {
		t.Error("a torn message was delivered")
	}
	for _, d := range []string{"tmp", "free", "q"} {
		if n, _ := os.ReadDir(filepath.Join(dir, d)); len(n) != 0 {
			t.Errorf("%s/ after recovery: %v", d, n)
		}
	}
	if _, err := os.Stat(st.slotPath("README")); err != nil {
		t.Errorf("a file in slots/ that is not a slot was touched: %v", err)
	}
	// Every slot is free now; the next message takes one of them.
	if n := q.st.pool.len(); n != 3 {
		t.Errorf("pool holds %d slots, want the 3 found (torn, acked, zeroed)", n)
	}
	enqueue(t, q, "s@correo.test", "Subject: y\r\n\r\nb\r\n", "a@correo.test")
	waitFor(t, "delivery", func() bool { return f.count("a@correo.test") == 1 })
	if n := len(slotNames(t, dir)); n != 4 {
		t.Errorf("slots/ holds %d files, want the same 3 and README", n)
	}
	// Reopened, nothing comes back.
	q.Close(context.Background())
	q2 := open(t, dir, f, time.Hour)
	if q2.Len() != 0 {
		t.Errorf("reopened queue holds %d messages", q2.Len())
	}
}

// TestSlotRejectsDamage: a slot whose header or envelope disagrees with
// its bytes is refused with an error naming the file; free and zeroed
// slots read as not in use.
func TestSlotRejectsDamage(t *testing.T) {
	dir := t.TempDir()
	id := "0006167651abb170b474"
	body := "Subject: x\r\n\r\nb\r\n"
	e := &Envelope{Version: 1, ID: id, From: "s@example.org", Trace: "t1", Size: int64(len(body)),
		Rcpts: []Recipient{{Addr: "a@correo.test", Route: RouteLocal, State: Pending}}}
	good := filepath.Join(dir, "good")
	writeSlot(t, good, e, body, body)
	valid, _ := os.ReadFile(good)
	mod := func(f func(b []byte) []byte) string {
		return string(f(append([]byte(nil), valid...)))
	}
	cases := []struct {
		name, content, want string
	}{
		{"valid", string(valid), ""},
		{"empty", "", "no queued message"},
		{"zeroed", string(make([]byte, 200)), "no queued message"},
		{"free", mod(func(b []byte) []byte { b[slotStateByte] = slotFree; return b }), "no queued message"},
		{"bad magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), "no queued message"},
		{"bad id", mod(func(b []byte) []byte { b[10] = 'Z'; return b }), "queue id"},
		{"cut short", string(valid[:len(valid)-3]), "needs"},
		{"torn body", mod(func(b []byte) []byte { b[slotHeaderLen] = 'X'; return b }), "torn by a crash"},
		{"length zero envelope", mod(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[36:], 0); return b }), "envelope bytes"},
		{"huge message", mod(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[28:], 1<<62); return b }), "message and"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
			os.WriteFile(p, []byte(c.content), 0o600)
			fh := mustOpen(t, p)
			h, env, err := readSlot(fh, true)
			if c.want == "" {
				if err != nil || env.Size != int64(len(body)) || h.id != id {
					t.Fatalf("valid slot: %v %+v", err, env)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			if !errors.Is(err, errNotInUse) && !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v does not name %s", err, p)
			}
		})
	}
}

// TestTrailerRejectsDamage: a file whose end is not a well-formed
// envelope trailer, or whose envelope disagrees with the file, is refused
// with an error naming the file.
func TestTrailerRejectsDamage(t *testing.T) {
	dir := t.TempDir()
	good := func(size int64) []byte {
		e := &Envelope{Version: 1, ID: "0006167651abb170b474", From: "s@example.org", Trace: "t1", Size: size,
			Rcpts: []Recipient{{Addr: "a@correo.test", Route: RouteLocal, State: Pending}}}
		b, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	body := "Subject: x\r\n\r\nb\r\n"
	env := good(int64(len(body)))
	sum := func(s string) uint32 { return crc32.Checksum([]byte(s), castagnoli) }
	cases := []struct {
		name, content, want string
	}{
		{"valid", body + string(env) + string(trailer(len(env), sum(body+string(env)))), ""},
		{"empty", "", "no envelope"},
		{"message only", body, "no envelope"},
		{"length past start", body + string(env) + string(trailer(1<<20, 0)), "does not fit"},
		{"length zero", body + string(trailer(0, 0)), "does not fit"},
		{"bad hex", body + string(env) + "\ncorreo-envelope 0000zz12 00000000\n", "trailer"},
		{"older trailer", body + string(env) + fmt.Sprintf("\ncorreo-envelope %08x\n", len(env)), "no envelope"},
		{"torn", "Subject: y" + body[10:] + string(env) + string(trailer(len(env), sum(body+string(env)))), "torn by a crash"},
		{"size disagrees", "extra" + body + string(env) + string(trailer(len(env), sum("extra"+body+string(env)))), "message bytes"},
		{"not json", body + "{{{{" + string(trailer(4, sum(body+"{{{{"))), "envelope"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
			os.WriteFile(p, []byte(c.content), 0o600)
			fh, _ := os.Open(p)
			defer fh.Close()
			e, err := readTrailer(fh, true)
			if c.want == "" {
				if err != nil || e.Size != int64(len(body)) {
					t.Fatalf("valid file: %v %+v", err, e)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %v, want one naming %s and saying %q", err, p, c.want)
			}
		})
	}
}

func TestValidSlotName(t *testing.T) {
	for name, want := range map[string]bool{
		"00000000": true, "00000123": true, "123456789": true, "1234567890123456789": true,
		"": false, "0000001": false, "12345678901234567890": false, "0000000a": false, "README": false, "00000001.tmp": false,
	} {
		if got := validSlotName(name); got != want {
			t.Errorf("validSlotName(%q) = %v, want %v", name, got, want)
		}
	}
}

// len is how many free slots the pool holds.
func (p *pool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}
