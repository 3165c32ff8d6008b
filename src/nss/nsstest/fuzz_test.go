package nsstest

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"correo/src/nssproto"
)

// FuzzModuleFrame feeds the module's frame reader (transact in
// nss_correo.c: the greedy first read, the length checks, the rest of
// the body) whatever bytes a broken nssd might send in answer to
// getpwnam("juan"), then hangs up. The module must return at once, and
// SUCCESS exactly when the bytes are one well-formed frame holding juan's
// record: not a byte more (the module never has two requests in
// flight, so anything after the frame is as broken as a short one).
func FuzzModuleFrame(f *testing.F) {
	m := module(f)
	good := frame(append([]byte{0}, pwRecord("juan", 5001, 5000, "Juan", "/h", "/bin/sh")...))
	big := frame(append([]byte{0}, pwRecord("juan", 5001, 5000, string(bytes.Repeat([]byte("g"), 3000)), "/h", "/bin/sh")...))
	for _, seed := range [][]byte{
		good, big, // big needs more than the first read
		append(append([]byte(nil), good...), good...), // two frames at once
		append(append([]byte(nil), good...), 0),
		good[:len(good)-1], good[:3], nil,
		{0, 0, 0, 0}, {0, 1, 0, 1, 0}, {0xff, 0xff, 0xff, 0xff},
		frame([]byte{1}), frame([]byte{3}), frame([]byte{9}),
	} {
		f.Add(seed)
	}

	sock := filepath.Join(f.TempDir(), "fuzz.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var reply []byte
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [4]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				if _, err := io.ReadFull(c, make([]byte, binary.BigEndian.Uint32(hdr[:]))); err != nil {
					return
				}
				mu.Lock()
				r := reply
				mu.Unlock()
				c.Write(r)
			}()
		}
	}()
	f.Setenv("CORREO_NSS_SOCKET", sock)

	f.Fuzz(func(t *testing.T, data []byte) {
		mu.Lock()
		reply = data
		mu.Unlock()
		start := time.Now()
		pw, st, _ := m.Getpwnam("juan", 16384)
		if d := time.Since(start); d > hangLimit {
			t.Fatalf("took %v on % x", d, data[:min(len(data), 32)])
		}
		want := false
		if len(data) >= 4 && int(binary.BigEndian.Uint32(data)) == len(data)-4 {
			r, err := nssproto.DecodeResponse(nssproto.OpGetpwnam, data[4:])
			want = err == nil && r.Status == nssproto.StatusFound && r.Passwd[0].Name == "juan" &&
				r.Passwd[0].UID != 0 && r.Passwd[0].GID != 0
		}
		if (st == Success) != want {
			t.Fatalf("status %v (%+v) for % x; want success %v", st, pw, data[:min(len(data), 64)], want)
		}
	})
}
