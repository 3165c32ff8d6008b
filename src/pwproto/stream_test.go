package pwproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"correo/src/keyfile"
)

// tapConn records what is written through it and can hold writes back
// (record without sending), so a test can replay, reorder or reflect
// frames at will.
type tapConn struct {
	net.Conn
	mu   sync.Mutex
	rec  bytes.Buffer
	hold bool
}

func (c *tapConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.rec.Write(p)
	hold := c.hold
	c.mu.Unlock()
	if hold {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *tapConn) take() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := append([]byte(nil), c.rec.Bytes()...)
	c.rec.Reset()
	return b
}

type streamPair struct {
	client, server       *Stream
	clientRaw, serverRaw net.Conn
	tap                  *tapConn
	clientErr, serverErr error
}

func newPair(t *testing.T, clientRing, serverRing *keyfile.Ring) *streamPair {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := &streamPair{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			p.serverErr = err
			return
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		p.serverRaw = c
		p.server, p.serverErr = ServerStream(c, serverRing)
		c.SetDeadline(time.Time{})
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	p.clientRaw = raw
	p.tap = &tapConn{Conn: raw}
	p.client, p.clientErr = ClientStream(p.tap, clientRing)
	raw.SetDeadline(time.Time{})
	<-done
	t.Cleanup(func() {
		raw.Close()
		if p.serverRaw != nil {
			p.serverRaw.Close()
		}
	})
	p.tap.take()
	return p
}

func recvWithin(t *testing.T, s *Stream, conn net.Conn) (uint8, []byte, error) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	return s.Recv()
}

func TestStreamHandshakeAndFrames(t *testing.T) {
	p := newPair(t, testRing(1), testRing(2, 1))
	if p.clientErr != nil || p.serverErr != nil {
		t.Fatalf("handshake: client %v, server %v", p.clientErr, p.serverErr)
	}
	big := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB
	msgs := [][]byte{[]byte(`{"op":"user.show","name":"juan"}`), nil, big}
	go func() {
		for i, m := range msgs {
			p.client.Send(uint8(i+1), m)
		}
	}()
	for i, m := range msgs {
		kind, got, err := recvWithin(t, p.server, p.serverRaw)
		if err != nil || kind != uint8(i+1) || !bytes.Equal(got, m) {
			t.Fatalf("frame %d: kind %d, %d bytes, %v", i, kind, len(got), err)
		}
	}
	// And the other way.
	if err := p.server.Send(7, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if kind, got, err := recvWithin(t, p.client, p.clientRaw); err != nil || kind != 7 || string(got) != "ok" {
		t.Fatalf("reply: %d %q %v", kind, got, err)
	}
	// Clean close between frames is io.EOF.
	p.client.Close()
	if _, _, err := recvWithin(t, p.server, p.serverRaw); err != io.EOF {
		t.Fatalf("after close: %v", err)
	}
}

func TestStreamWrongKey(t *testing.T) {
	other := &keyfile.Ring{Keys: []keyfile.Key{testKey(2)}}
	other.Keys[0].ID = 1 // same id, different secret
	p := newPair(t, other, testRing(1))
	if !errors.Is(p.clientErr, ErrHandshake) || !strings.Contains(p.clientErr.Error(), "different cluster keys") {
		t.Fatalf("client: %v", p.clientErr)
	}
	if !errors.Is(p.serverErr, ErrHandshake) {
		t.Fatalf("server: %v", p.serverErr)
	}
	t.Logf("client says: %v\nserver says: %v", p.clientErr, p.serverErr)

	p = newPair(t, testRing(3), testRing(1, 2))
	if !errors.Is(p.clientErr, ErrHandshake) || !strings.Contains(p.clientErr.Error(), "does not have cluster key id 3") {
		t.Fatalf("client with unknown key id: %v", p.clientErr)
	}
	if !errors.Is(p.serverErr, ErrHandshake) || !strings.Contains(p.serverErr.Error(), "key id 3") {
		t.Fatalf("server with unknown key id: %v", p.serverErr)
	}
}

func TestStreamNotACorreoPeer(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("SSH-2.0-OpenSSH_9.2p1 Debian\r\n"))
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	c, _ := net.Dial("tcp", ln.Addr().String())
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := ClientStream(c, testRing(1)); !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), "not a correo") {
		t.Fatalf("%v", err)
	}
}

func TestStreamReplayReorderReflect(t *testing.T) {
	t.Run("replayed", func(t *testing.T) {
		p := newPair(t, testRing(1), testRing(1))
		p.client.Send(1, []byte("add user"))
		frame := p.tap.take()
		if _, _, err := recvWithin(t, p.server, p.serverRaw); err != nil {
			t.Fatal(err)
		}
		p.clientRaw.Write(frame)
		if _, _, err := recvWithin(t, p.server, p.serverRaw); !errors.Is(err, ErrAuth) {
			t.Fatalf("replayed frame: %v", err)
		}
		// The stream stays broken.
		if _, _, err := p.server.Recv(); !errors.Is(err, ErrAuth) {
			t.Fatalf("after failure: %v", err)
		}
	})
	t.Run("reordered", func(t *testing.T) {
		p := newPair(t, testRing(1), testRing(1))
		p.tap.hold = true
		p.client.Send(1, []byte("first"))
		f1 := p.tap.take()
		p.client.Send(1, []byte("second"))
		f2 := p.tap.take()
		p.clientRaw.Write(append(f2, f1...))
		if _, _, err := recvWithin(t, p.server, p.serverRaw); !errors.Is(err, ErrAuth) {
			t.Fatalf("reordered frame: %v", err)
		}
	})
	t.Run("dropped", func(t *testing.T) {
		p := newPair(t, testRing(1), testRing(1))
		p.tap.hold = true
		p.client.Send(1, []byte("first"))
		p.tap.take()
		p.client.Send(1, []byte("second"))
		p.clientRaw.Write(p.tap.take())
		if _, _, err := recvWithin(t, p.server, p.serverRaw); !errors.Is(err, ErrAuth) {
			t.Fatalf("frame after a dropped one: %v", err)
		}
	})
	t.Run("reflected", func(t *testing.T) {
		p := newPair(t, testRing(1), testRing(1))
		p.tap.hold = true
		p.client.Send(1, []byte("to server"))
		// The server's raw side sends the client its own frame back.
		p.serverRaw.Write(p.tap.take())
		if _, _, err := recvWithin(t, p.client, p.clientRaw); !errors.Is(err, ErrAuth) {
			t.Fatalf("reflected frame: %v", err)
		}
	})
	t.Run("other connection", func(t *testing.T) {
		p1 := newPair(t, testRing(1), testRing(1))
		p2 := newPair(t, testRing(1), testRing(1))
		p1.tap.hold = true
		p1.client.Send(1, []byte("for p1"))
		p2.clientRaw.Write(p1.tap.take())
		if _, _, err := recvWithin(t, p2.server, p2.serverRaw); !errors.Is(err, ErrAuth) {
			t.Fatalf("frame from another connection: %v", err)
		}
	})
	t.Run("bit flip", func(t *testing.T) {
		p := newPair(t, testRing(1), testRing(1))
		p.tap.hold = true
		p.client.Send(1, []byte("payload"))
		f := p.tap.take()
		f[len(f)-3] ^= 1
		p.clientRaw.Write(f)
		if _, _, err := recvWithin(t, p.server, p.serverRaw); !errors.Is(err, ErrAuth) {
			t.Fatalf("flipped frame: %v", err)
		}
	})
}

func TestStreamOversizeAndTruncated(t *testing.T) {
	p := newPair(t, testRing(1), testRing(1))
	if err := p.client.Send(1, make([]byte, MaxFrame+1)); !errors.Is(err, ErrTooBig) {
		t.Fatalf("oversize send: %v", err)
	}
	// The refused Send did not disturb the stream.
	go p.client.Send(2, []byte("still fine"))
	if kind, _, err := recvWithin(t, p.server, p.serverRaw); err != nil || kind != 2 {
		t.Fatalf("after refused send: %d %v", kind, err)
	}
	// A length prefix over the limit is refused before reading the body.
	var lb [4]byte
	binary.BigEndian.PutUint32(lb[:], 0xffffffff)
	p.clientRaw.Write(lb[:])
	if _, _, err := recvWithin(t, p.server, p.serverRaw); !errors.Is(err, ErrOversize) {
		t.Fatalf("oversize frame: %v", err)
	}

	p = newPair(t, testRing(1), testRing(1))
	p.tap.hold = true
	p.client.Send(1, []byte("cut short"))
	f := p.tap.take()
	p.clientRaw.Write(f[:len(f)/2])
	p.clientRaw.Close()
	if _, _, err := recvWithin(t, p.server, p.serverRaw); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}

	p = newPair(t, testRing(1), testRing(1))
	p.clientRaw.Write([]byte{0, 0})
	p.clientRaw.Close()
	if _, _, err := recvWithin(t, p.server, p.serverRaw); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated length: %v", err)
	}

	p = newPair(t, testRing(1), testRing(1))
	p.clientRaw.Write([]byte{0, 0, 0, 3, 1, 2, 3})
	if _, _, err := recvWithin(t, p.server, p.serverRaw); !errors.Is(err, ErrMalformed) {
		t.Fatalf("tiny frame: %v", err)
	}
}

func TestStreamHandshakeTruncated(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = ServerStream(c, testRing(1))
		errc <- err
	}()
	c, _ := net.Dial("tcp", ln.Addr().String())
	c.Write([]byte{'C', 'S', Version, 1, 5, 5})
	c.Close()
	if err := <-errc; !errors.Is(err, ErrHandshake) {
		t.Fatalf("%v", err)
	}
}
