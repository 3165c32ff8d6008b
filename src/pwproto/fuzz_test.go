package pwproto

import (
	"bytes"
	"io"
	"net"
	"reflect"
	"testing"
	"time"
)

// The valid datagrams are deterministic (fixed key, nonce counter and
// clock), so the committed seeds under testdata/fuzz stay valid and the
// oracle "only these exact bytes may open" holds for every run.

func validRequestDatagrams(t testing.TB) [][]byte {
	c := detCodec(t, 1)
	var out [][]byte
	for _, r := range sampleRequests() {
		b, err := c.SealRequest(nil, &r, t0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func validResponseDatagrams(t testing.TB) [][]byte {
	c := detCodec(t, 1)
	var out [][]byte
	for _, r := range sampleResponses() {
		b, err := c.SealResponse(nil, &r, t0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func isOneOf(b []byte, set [][]byte) bool {
	for _, v := range set {
		if bytes.Equal(b, v) {
			return true
		}
	}
	return false
}

func FuzzOpenRequest(f *testing.F) {
	valid := validRequestDatagrams(f)
	for _, v := range valid {
		f.Add(v)
	}
	f.Add([]byte("CP"))
	f.Add(make([]byte, Overhead))
	c := mustCodec(f, 1)
	f.Fuzz(func(t *testing.T, data []byte) {
		in := append([]byte(nil), data...)
		var req Request
		err := c.OpenRequestTo(&req, in, t0)
		if err == nil && !isOneOf(data, valid) {
			t.Fatalf("accepted a datagram that was never sealed: %x", data)
		}
		if err == nil {
			// What opened must seal again to an equivalent request.
			b, err := c.SealRequest(nil, &req, t0)
			if err != nil {
				t.Fatalf("re-seal: %v", err)
			}
			var again Request
			if err := c.OpenRequestTo(&again, b, t0); err != nil {
				t.Fatal(err)
			}
			again.Nonce, req.Nonce = [NonceSize]byte{}, [NonceSize]byte{}
			if !reflect.DeepEqual(again, req) {
				t.Fatalf("re-seal changed the request: %+v vs %+v", again, req)
			}
		}
	})
}

func FuzzOpenResponse(f *testing.F) {
	valid := validResponseDatagrams(f)
	for _, v := range valid {
		f.Add(v)
	}
	f.Add(validRequestDatagrams(f)[0])
	c := mustCodec(f, 1)
	f.Fuzz(func(t *testing.T, data []byte) {
		in := append([]byte(nil), data...)
		resp, err := c.OpenResponse(in)
		if err == nil && !isOneOf(data, valid) {
			t.Fatalf("accepted a datagram that was never sealed: %x", data)
		}
		if err == nil {
			if _, err := c.SealResponse(nil, resp, t0); err != nil {
				t.Fatalf("an opened response does not seal again: %v", err)
			}
		}
	})
}

// FuzzDecodeBody calls the plaintext decoders directly: behind the AEAD
// the fuzzer could never reach them.
func FuzzDecodeBody(f *testing.F) {
	for _, r := range sampleRequests() {
		b, _ := appendRequestBody(nil, &r)
		f.Add(false, byte(r.Op), b)
	}
	for _, r := range sampleResponses() {
		b, _ := appendResponseBody(nil, &r)
		f.Add(true, byte(r.Op), b)
	}
	f.Fuzz(func(t *testing.T, response bool, op byte, body []byte) {
		if !response {
			q := Request{Op: Op(op)}
			if decodeRequestBody(&q, body) != nil {
				return
			}
			// Decoded requests are within limits: they encode again and
			// decode to the same thing.
			b, err := appendRequestBody(nil, &q)
			if err != nil {
				t.Fatalf("decoded request does not encode: %v", err)
			}
			q2 := Request{Op: Op(op)}
			if err := decodeRequestBody(&q2, b); err != nil || !reflect.DeepEqual(q, q2) {
				t.Fatalf("request re-decode: %v\n%+v\n%+v", err, q, q2)
			}
			return
		}
		p := Response{Op: Op(op)}
		if decodeResponseBody(&p, body) != nil {
			return
		}
		b, err := appendResponseBody(nil, &p)
		if err != nil {
			// Only a decoded enumerate page larger than a datagram can
			// fail to encode: the decoder does not know the datagram.
			if p.Op == OpEnumerate && len(body) > maxBody {
				return
			}
			t.Fatalf("decoded response does not encode: %v", err)
		}
		p2 := Response{Op: Op(op)}
		if err := decodeResponseBody(&p2, b); err != nil || !reflect.DeepEqual(p, p2) {
			t.Fatalf("response re-decode: %v\n%+v\n%+v", err, p, p2)
		}
	})
}

// fakeConn feeds fixed bytes to a Stream.
type fakeConn struct {
	net.Conn
	r io.Reader
}

func (c *fakeConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *fakeConn) RemoteAddr() net.Addr        { return &net.TCPAddr{} }
func (c *fakeConn) Close() error                { return nil }

var (
	fuzzCNonce = bytes.Repeat([]byte{0xc1}, streamNonceSize)
	fuzzSNonce = bytes.Repeat([]byte{0x5e}, streamNonceSize)
)

// validStreamFrames is what a client sends after the handshake.
func validStreamFrames(t testing.TB) ([]byte, []int) {
	s, err := newStream(&fakeConn{}, testKey(1), fuzzCNonce, fuzzSNonce, dirClient, dirServer)
	if err != nil {
		t.Fatal(err)
	}
	s.sendCtr = 1
	var out []byte
	var ends []int
	for i, p := range []string{`{"op":"stats"}`, "", "second"} {
		out, _ = s.sealFrame(out, uint8(i+1), []byte(p))
		ends = append(ends, len(out))
	}
	return out, ends
}

func FuzzStreamRecv(f *testing.F) {
	valid, ends := validStreamFrames(f)
	f.Add(valid)
	f.Add(valid[:ends[0]])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 17})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := newStream(&fakeConn{r: bytes.NewReader(data)}, testKey(1), fuzzCNonce, fuzzSNonce, dirServer, dirClient)
		if err != nil {
			t.Fatal(err)
		}
		s.recvCtr = 1
		for k := 0; ; k++ {
			_, _, err := s.Recv()
			if err != nil {
				return
			}
			// Frame k opened: the bytes so far must be exactly the
			// valid stream's first k+1 frames.
			if k >= len(ends) || len(data) < ends[k] || !bytes.Equal(data[:ends[k]], valid[:ends[k]]) {
				t.Fatalf("frame %d accepted from bytes that were never sealed", k)
			}
		}
	})
}

func BenchmarkRequestSealOpen(b *testing.B) {
	c := mustCodec(b, 1)
	req := Request{Op: OpAuth, ID: 1, Name: "juan", Password: "secret", Client: "192.0.2.1"}
	buf := make([]byte, 0, MaxDatagram)
	var got Request
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		d, err := c.SealRequest(buf[:0], &req, now)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.OpenRequestTo(&got, d, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerPath is what passwdd does per datagram: open, replay
// check, seal the answer.
func BenchmarkServerPath(b *testing.B) {
	client := mustCodec(b, 1)
	server := mustCodec(b, 1)
	f := NewReplayFilter()
	req := Request{Op: OpLookupName, ID: 1, Name: "juan"}
	user := sampleUser()
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		in := make([]byte, 0, MaxDatagram)
		out := make([]byte, 0, MaxDatagram)
		var got Request
		for pb.Next() {
			d, _ := client.SealRequest(in[:0], &req, now) // stands in for the read
			if err := server.OpenRequestTo(&got, d, now); err != nil {
				b.Fatal(err)
			}
			if !f.Admit(&got, now) {
				b.Fatal("replay")
			}
			resp := got.Reply(StatusOK)
			resp.User = user
			if _, err := server.SealResponse(out[:0], &resp, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRoundTrip(b *testing.B) {
	c := mustCodec(b, 1)
	req := Request{Op: OpLookupName, ID: 1, Name: "juan"}
	user := sampleUser()
	buf := make([]byte, 0, MaxDatagram)
	var got Request
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		d, _ := c.SealRequest(buf[:0], &req, now)
		if err := c.OpenRequestTo(&got, d, now); err != nil {
			b.Fatal(err)
		}
		resp := got.Reply(StatusOK)
		resp.User = user
		d, _ = c.SealResponse(buf[:0], &resp, now)
		if _, err := c.OpenResponse(d); err != nil {
			b.Fatal(err)
		}
	}
}
