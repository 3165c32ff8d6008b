package queue

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestOneFilePerMessage: a committed message is one file in q/ holding
// the message and the envelope it was accepted with; nothing else is
// written until an attempt leaves work to do.
func TestOneFilePerMessage(t *testing.T) {
	dir := t.TempDir()
	f := newFake()
	f.set("a@correo.test", delivery.Temporary)
	q, err := Open(Config{Dir: dir, Local: f, Retry: []time.Duration{time.Hour}, Tick: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close(context.Background())
	// The committed file never changes, so reading it races with nothing.
	body := "Subject: one\r\n\r\nbody\r\n"
	id := enqueue(t, q, "s@correo.test", body, "a@correo.test")
	fh, err := os.Open(filepath.Join(dir, "q", id+".msg"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	e, err := readTrailer(fh, true)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != id || e.Size != int64(len(body)) || e.From != "s@correo.test" || len(e.Rcpts) != 1 || e.Rcpts[0].State != Pending {
		t.Fatalf("committed envelope %+v", e)
	}
	head := make([]byte, len(body))
	fh.ReadAt(head, 0)
	if string(head) != body {
		t.Fatalf("message bytes %q, want %q", head, body)
	}
	// The deferral records its state beside the message file.
	waitFor(t, "deferred state", func() bool {
		e, err := store{dir: dir}.readEnv(id, false)
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

// TestFilesAreRecycled: a delivered message's file goes to free/ and the
// next message is written over that same inode, cut to its own length: a
// busy queue allocates no inode per message, and a shorter message never
// carries the tail of a longer one.
func TestFilesAreRecycled(t *testing.T) {
	dir := t.TempDir()
	f := newFake()
	q := open(t, dir, f, time.Hour)
	long := "Subject: 1\r\n\r\n" + strings.Repeat("secret one, ", 2000) + "\r\n"
	enqueue(t, q, "s@correo.test", long, "a@correo.test")
	// The file reaches free/ with the delivery and the pool once the
	// reaper has made its removal from q/ durable.
	pooled := func() int {
		q.st.pool.mu.Lock()
		defer q.st.pool.mu.Unlock()
		return len(q.st.pool.names)
	}
	waitFor(t, "first delivery", func() bool { return q.Len() == 0 && pooled() == 1 })
	p := filepath.Join(dir, "free", names(t, filepath.Join(dir, "free"))[0])
	ino := inode(t, p)
	short := "Subject: 2\r\n\r\nb\r\n"
	w, err := q.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(short))
	if err := w.Commit(&Envelope{From: "s@correo.test", Trace: "tracetracetrace2", Rcpts: []Recipient{{Addr: "b@correo.test", Route: RouteLocal}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second delivery", func() bool { return f.count("b@correo.test") == 1 })
	if got := f.msgs("b@correo.test")[0]; got != short {
		t.Fatalf("second message delivered as %d bytes %.60q...: the recycled file's old bytes leak", len(got), got)
	}
	waitFor(t, "recycled again", func() bool { return pooled() == 1 })
	p2 := filepath.Join(dir, "free", names(t, filepath.Join(dir, "free"))[0])
	if got := inode(t, p2); got != ino {
		t.Errorf("second message used inode %d, not the recycled %d", got, ino)
	}
	if fi, _ := os.Stat(p2); fi.Size() >= int64(len(long)) {
		t.Errorf("recycled file is %d bytes after a %d-byte message: not cut to length", fi.Size(), len(short))
	}
	// An aborted message gives its recycled file back.
	w, _ = q.NewMessage()
	w.Write([]byte("half a message"))
	w.Abort()
	if n := len(names(t, filepath.Join(dir, "free"))); n != 1 {
		t.Errorf("free/ holds %d files after an abort, want the 1 back", n)
	}
	if n := len(names(t, filepath.Join(dir, "tmp"))); n != 0 {
		t.Errorf("tmp/ holds %d files after an abort", n)
	}
	// A message above the recycling bound is removed, not kept in free/.
	enqueue(t, q, "s@correo.test", strings.Repeat("x", maxRecycledBytes+1), "c@correo.test")
	waitFor(t, "big delivery", func() bool { return f.count("c@correo.test") == 1 && q.Len() == 0 })
	for _, n := range names(t, filepath.Join(dir, "free")) {
		if fi, _ := os.Stat(filepath.Join(dir, "free", n)); fi.Size() > maxRecycledBytes+maxEnvelopeBytes {
			t.Errorf("free/%s keeps %d bytes", n, fi.Size())
		}
	}
}

// TestCrashStates: what each crash point leaves is handled at Open.
func TestCrashStates(t *testing.T) {
	dir := t.TempDir()
	st := store{dir: dir}
	if err := st.prepare(); err != nil {
		t.Fatal(err)
	}
	// A removal cut short after the message left q/: its state file stays.
	staleID := NewID()
	os.WriteFile(st.envPath(staleID), []byte("{}"), 0o640)
	// A queue file of an older layout, or damaged: no trailer, no state.
	damaged := NewID()
	os.WriteFile(st.msgPath(damaged), []byte("Subject: x\r\n\r\nno envelope\r\n"), 0o640)
	// A message renamed into q/ whose data never reached the disk: its
	// bytes do not match the trailer's checksum.
	torn := NewID()
	tornEnv, err := (&Envelope{Version: 1, ID: torn, From: "s@correo.test", Trace: "torntrace", Size: 4,
		Rcpts: []Recipient{{Addr: "torn@correo.test", Route: RouteLocal, State: Pending}}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(st.msgPath(torn), append(append([]byte("\x00\x00\x00\x00"), tornEnv...),
		trailer(len(tornEnv), crc32.Checksum(append([]byte("real"), tornEnv...), castagnoli))...), 0o640)
	// A message being received (never acknowledged).
	os.WriteFile(filepath.Join(dir, "tmp", NewID()+".msg"), []byte("partial"), 0o640)
	// A message queued by an older correo: envelope only in q/ID.env.
	oldID, oldBody := NewID(), "Subject: old layout\r\n\r\nb\r\n"
	os.WriteFile(st.msgPath(oldID), []byte(oldBody), 0o640)
	oldEnv, err := (&Envelope{Version: 1, ID: oldID, From: "s@correo.test", Trace: "oldtrace", Size: int64(len(oldBody)),
		Rcpts: []Recipient{{Addr: "old@correo.test", Route: RouteLocal, State: Pending}}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(st.envPath(oldID), oldEnv, 0o640)
	// Recycled files, one of them a directory someone made by hand.
	os.WriteFile(filepath.Join(dir, "free", NewID()), nil, 0o640)
	os.Mkdir(filepath.Join(dir, "free", "odd"), 0o750)

	f := newFake()
	q := open(t, dir, f, time.Hour)
	waitFor(t, "the older layout's message delivered", func() bool { return f.count("old@correo.test") == 1 })
	if got := f.msgs("old@correo.test")[0]; got != oldBody {
		t.Errorf("older layout's message delivered as %q", got)
	}
	waitFor(t, "queue empty", func() bool { return q.Len() == 0 })
	if _, err := os.Stat(st.envPath(staleID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale state file kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "trash", damaged+".msg")); err != nil {
		t.Errorf("damaged queue file not moved to trash: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "trash", torn+".msg")); err != nil {
		t.Errorf("torn queue file not moved to trash: %v", err)
	}
	if f.count("torn@correo.test") != 0 {
		t.Error("a torn message was delivered")
	}
	if n := names(t, filepath.Join(dir, "tmp")); len(n) != 0 {
		t.Errorf("tmp/ after recovery: %v", n)
	}
	for _, n := range names(t, filepath.Join(dir, "free")) {
		if n == "odd" {
			t.Errorf("free/ kept a directory as a reusable file")
		}
	}
	id := enqueue(t, q, "s@correo.test", "Subject: y\r\n\r\nb\r\n", "a@correo.test")
	waitFor(t, "delivery", func() bool { return f.count("a@correo.test") == 1 })
	if id == "" {
		t.Fatal("no id")
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
