package pwserver

import (
	"path/filepath"
	"testing"
	"time"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/pwproto"
)

// BenchmarkServeLookup is one lookup as a reader goroutine serves it:
// open the sealed request, answer from a 100 k-user index, seal the
// response. Allocations here turn into GC assists under load, which is
// what stalls queries while a reload allocates, so allocs/op matters as
// much as ns/op.
func BenchmarkServeLookup(b *testing.B) {
	dir := b.TempDir()
	p, err := cluster.LoadDefault(cluster.Options{SkipFiles: true})
	if err != nil {
		b.Fatal(err)
	}
	ring := testRing(b, dir)
	store, err := directory.Open(filepath.Join(dir, "pw"))
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	users := bigSet(100_000, "Usuario de prueba")
	for i := range users {
		users[i].Storage = "dev"
	}
	if _, err := store.Replace(users); err != nil {
		b.Fatal(err)
	}
	h, _ := p.Host("dev")
	srv, err := New(Config{Profile: p, Host: h, Store: store, StateDir: dir, Ring: ring, Log: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.initUDP(); err != nil {
		b.Fatal(err)
	}
	codec, _ := pwproto.NewCodec(ring)
	now := time.Now()
	reqs := make([][]byte, 1024)
	for i := range reqs {
		reqs[i], _ = codec.SealRequest(nil, &pwproto.Request{Op: pwproto.OpLookupName, ID: uint64(i + 1), Name: users[i*97].Name}, now)
	}
	in := make([]byte, pwproto.MaxDatagram+1)
	out := make([]byte, 0, pwproto.MaxDatagram)
	var req pwproto.Request
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := copy(in, reqs[i%len(reqs)])
		if err := srv.udp.codec.OpenRequestTo(&req, in[:n], now); err != nil {
			b.Fatal(err)
		}
		resp := srv.answer(&req)
		if resp.Status != pwproto.StatusOK {
			b.Fatalf("status %v", resp.Status)
		}
		out, _ = srv.udp.codec.SealResponse(out[:0], &resp, now)
	}
}

func testRing(tb testing.TB, dir string) *keyfile.Ring {
	r, err := keyfile.Create(filepath.Join(dir, "cluster.key"))
	if err != nil {
		tb.Fatal(err)
	}
	return r
}
