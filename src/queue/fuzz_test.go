package queue

import (
	"bytes"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzDecode: an envelope file from disk never panics the decoder, and
// whatever it accepts encodes and decodes to the same envelope.
func FuzzDecode(f *testing.F) {
	e := &Envelope{Version: 1, ID: "0006167651abb170b474", From: "s@example.org", Trace: "5tjkt5wyjzqgubxv",
		Created: time.Unix(1700000000, 0).UTC(), Client: "127.0.0.1", Helo: "client", Size: 10,
		Rcpts: []Recipient{{Addr: "a@correo.test", Route: RouteLocal, State: Pending},
			{Addr: "b@example.com", Route: RouteRemote, State: Failed, Code: 550, Enhanced: "5.1.1", Text: "no", Bounced: true}}}
	b, err := e.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"v":1,"id":"0006167651abb170b474","from":"","created":"2024-01-01T00:00:00Z","trace":"t","size":0,"attempts":0,"rcpts":[{"addr":"a@b.c","route":"local","state":"pending"}]}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"id":"../../etc/passwd0000"}`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data)
		if err != nil {
			return
		}
		if !ValidID(e.ID) || len(e.Rcpts) == 0 {
			t.Fatalf("Decode accepted %+v", e)
		}
		b, err := e.Encode()
		if err != nil {
			t.Fatalf("accepted envelope does not encode: %v", err)
		}
		e2, err := Decode(b)
		if err != nil {
			t.Fatalf("re-decode: %v\n%s", err, b)
		}
		b2, _ := e2.Encode()
		if !bytes.Equal(b, b2) {
			t.Fatalf("not stable:\n%s\n%s", b, b2)
		}
	})
}

// FuzzQueueFile: the end of a queue file read back from disk never panics
// the reader, and an envelope it accepts describes exactly the bytes
// before it.
func FuzzQueueFile(f *testing.F) {
	body := []byte("Subject: x\r\n\r\nb\r\n")
	e := &Envelope{Version: 1, ID: "0006167651abb170b474", From: "s@example.org", Trace: "5tjkt5wyjzqgubxv",
		Size: int64(len(body)), Rcpts: []Recipient{{Addr: "a@correo.test", Route: RouteLocal, State: Pending}}}
	env, err := e.Encode()
	if err != nil {
		f.Fatal(err)
	}
	content := append(append([]byte(nil), body...), env...)
	valid := append(append([]byte(nil), content...), trailer(len(env), crc32.Checksum(content, castagnoli))...)
	f.Add(valid)
	f.Add(append(append([]byte(nil), content...), trailer(len(env), 0)...))
	f.Add(body)
	f.Add(trailer(0, 0))
	f.Add(append(append([]byte(nil), body...), trailer(1<<30, 0)...))
	f.Add([]byte("\ncorreo-envelope -0000001 00000000\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		fh := fileWith(t, filepath.Join(dir, "q"), data)
		e, err := readTrailer(fh, true)
		if err != nil {
			return
		}
		n, sum, _ := parseTrailer(data[len(data)-int(trailerLen):])
		if e.Size+n+trailerLen != int64(len(data)) {
			t.Fatalf("accepted envelope of size %d with %d envelope bytes in a %d-byte file", e.Size, n, len(data))
		}
		if got := crc32.Checksum(data[:len(data)-int(trailerLen)], castagnoli); got != sum {
			t.Fatalf("accepted a file whose checksum %08x is not the trailer's %08x", got, sum)
		}
	})
}

// FuzzSlot: a slot read back from disk never panics the reader, and a
// message it accepts lies within the file and matches its checksum.
func FuzzSlot(f *testing.F) {
	body := "Subject: x\r\n\r\nb\r\n"
	e := &Envelope{Version: 1, ID: "0006167651abb170b474", From: "s@example.org", Trace: "5tjkt5wyjzqgubxv",
		Size: int64(len(body)), Rcpts: []Recipient{{Addr: "a@correo.test", Route: RouteLocal, State: Pending}}}
	env, err := e.Encode()
	if err != nil {
		f.Fatal(err)
	}
	h := slotHeader{state: slotCommitted, id: e.ID, msgLen: int64(len(body)), envLen: int64(len(env))}
	h.sum = crc32.Update(crc32.Checksum(append([]byte(body), env...), castagnoli), castagnoli, h.fields())
	valid := append(append(h.encode(), body...), env...)
	f.Add(valid)
	f.Add(valid[:slotHeaderLen])
	f.Add(make([]byte, slotHeaderLen))
	free := append([]byte(nil), valid...)
	free[slotStateByte] = slotFree
	f.Add(free)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		fh := fileWith(t, filepath.Join(dir, "slot"), data)
		h, e, err := readSlot(fh, true)
		if err != nil {
			return
		}
		end := slotHeaderLen + h.msgLen + h.envLen
		if end > int64(len(data)) || e.Size != h.msgLen || e.ID != h.id {
			t.Fatalf("accepted header %+v, envelope size %d, in a %d-byte file", h, e.Size, len(data))
		}
		sum := crc32.Update(crc32.Checksum(data[slotHeaderLen:end], castagnoli), castagnoli, h.fields())
		if sum != h.sum || data[slotStateByte] != slotCommitted {
			t.Fatalf("accepted a slot whose checksum %08x is not its header's %08x", sum, h.sum)
		}
	})
}

// fileWith writes data to p and opens it for reading, as a queue file read
// back from disk; it is closed when the test ends.
func fileWith(t *testing.T, p string, data []byte) *os.File {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	return fh
}
