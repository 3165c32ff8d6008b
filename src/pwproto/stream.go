package pwproto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"

	"correo/src/keyfile"
)

// MaxFrame is the largest payload a Stream frame carries. Bigger payloads
// (a snapshot of a million users) must be split by the caller.
const MaxFrame = 16 << 20

// ErrHandshake wraps every stream handshake failure; the message says which
// side and what to check.
var ErrHandshake = errors.New("pwproto: stream handshake failed")

// Stream is a sealed, ordered channel of frames over a TCP connection,
// authenticated with the cluster key and bound to this one connection (see
// PROTOCOL.md): a frame cannot be replayed, reordered, dropped without
// detection, reflected back to its sender, or moved to another connection.
//
// Send and Recv may run concurrently with each other; concurrent Sends are
// serialised, as are concurrent Recvs. Timeouts are the caller's: set
// deadlines on the conn (SetDeadline before ClientStream/ServerStream,
// SetReadDeadline before Recv) — a Stream never sets any. After any error
// the stream is unusable (a failed frame desynchronises the counters);
// Close it.
type Stream struct {
	conn net.Conn
	aead cipher.AEAD
	ad   [streamADSize]byte // fixed part of every frame's associated data

	sendMu  sync.Mutex
	sendDir byte
	sendCtr uint64
	sendErr error

	recvMu  sync.Mutex
	recvDir byte
	recvCtr uint64
	recvErr error
}

const (
	streamMagic0, streamMagic1 = 'C', 'S'
	streamNonceSize            = 16
	helloSize                  = 4 + streamNonceSize
	dirClient                  = 'c' // frames the client sends
	dirServer                  = 's' // frames the server sends
	// associated data: magic, version, key id, client nonce, server nonce,
	// then per frame: direction (1), counter (8), length (4).
	streamADSize   = 4 + 2*streamNonceSize
	frameADSize    = streamADSize + 1 + 8 + 4
	maxFrameSealed = 1 + MaxFrame + tagSize
	kindConfirm    = 0 // handshake confirmation, counter 0 only
)

// ClientStream runs the client side of the handshake on conn with the
// ring's current key. On failure it closes conn and returns an error
// wrapping ErrHandshake that says what to check.
func ClientStream(conn net.Conn, ring *keyfile.Ring) (*Stream, error) {
	s, err := clientStream(conn, ring)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

func clientStream(conn net.Conn, ring *keyfile.Ring) (*Stream, error) {
	if ring == nil || len(ring.Keys) == 0 {
		return nil, fmt.Errorf("%w: empty key ring", ErrHandshake)
	}
	key := ring.Current()
	var hello [helloSize]byte
	hello[0], hello[1], hello[2], hello[3] = streamMagic0, streamMagic1, Version, key.ID
	if _, err := rand.Read(hello[4:]); err != nil {
		return nil, fmt.Errorf("%w: drawing a nonce: %v", ErrHandshake, err)
	}
	if _, err := conn.Write(hello[:]); err != nil {
		return nil, fmt.Errorf("%w: sending hello to %s: %v", ErrHandshake, conn.RemoteAddr(), err)
	}
	var reply [helloSize]byte
	if _, err := io.ReadFull(conn, reply[:]); err != nil {
		return nil, fmt.Errorf("%w: reading the reply of %s: %v (is it a correo passwdd admin port?)", ErrHandshake, conn.RemoteAddr(), err)
	}
	if reply[0] != streamMagic0 || reply[1] != streamMagic1 || reply[2] != Version {
		return nil, fmt.Errorf("%w: %s is not a correo passwd stream of version %d", ErrHandshake, conn.RemoteAddr(), Version)
	}
	if reply[3] != key.ID {
		return nil, fmt.Errorf("%w: %s does not have cluster key id %d (install the new key on every passwd server before making it current)", ErrHandshake, conn.RemoteAddr(), key.ID)
	}
	s, err := newStream(conn, key, hello[4:], reply[4:], dirClient, dirServer)
	if err != nil {
		return nil, err
	}
	kind, payload, err := s.Recv()
	if errors.Is(err, ErrAuth) {
		return nil, fmt.Errorf("%w: the confirmation from %s does not authenticate with key id %d: the two hosts have different cluster keys under that id (compare the key files)", ErrHandshake, conn.RemoteAddr(), key.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading the confirmation of %s: %v", ErrHandshake, conn.RemoteAddr(), err)
	}
	if kind != kindConfirm || len(payload) != 0 {
		return nil, fmt.Errorf("%w: %s sent a frame of kind %d instead of the confirmation", ErrHandshake, conn.RemoteAddr(), kind)
	}
	if err := s.Send(kindConfirm, nil); err != nil {
		return nil, fmt.Errorf("%w: sending confirmation to %s: %v", ErrHandshake, conn.RemoteAddr(), err)
	}
	return s, nil
}

// ServerStream runs the server side of the handshake on conn: it accepts
// any key of the ring the client names. On failure it closes conn and
// returns an error wrapping ErrHandshake.
func ServerStream(conn net.Conn, ring *keyfile.Ring) (*Stream, error) {
	s, err := serverStream(conn, ring)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

func serverStream(conn net.Conn, ring *keyfile.Ring) (*Stream, error) {
	if ring == nil || len(ring.Keys) == 0 {
		return nil, fmt.Errorf("%w: empty key ring", ErrHandshake)
	}
	var hello [helloSize]byte
	if _, err := io.ReadFull(conn, hello[:]); err != nil {
		return nil, fmt.Errorf("%w: reading hello from %s: %v", ErrHandshake, conn.RemoteAddr(), err)
	}
	if hello[0] != streamMagic0 || hello[1] != streamMagic1 || hello[2] != Version {
		return nil, fmt.Errorf("%w: %s did not send a correo passwd stream hello of version %d", ErrHandshake, conn.RemoteAddr(), Version)
	}
	var reply [helloSize]byte
	reply[0], reply[1], reply[2] = streamMagic0, streamMagic1, Version
	key, ok := ring.Lookup(hello[3])
	if !ok || hello[3] == 0 {
		// Key id 0 tells the client at once that its key is unknown here.
		conn.Write(reply[:])
		return nil, fmt.Errorf("%w: %s uses cluster key id %d, which is not in this server's key ring", ErrHandshake, conn.RemoteAddr(), hello[3])
	}
	reply[3] = key.ID
	if _, err := rand.Read(reply[4:]); err != nil {
		return nil, fmt.Errorf("%w: drawing a nonce: %v", ErrHandshake, err)
	}
	s, err := newStream(conn, key, hello[4:], reply[4:], dirServer, dirClient)
	if err != nil {
		return nil, err
	}
	// Reply and confirmation in one write: the client learns in one round
	// trip whether both sides hold the same key.
	frame, err := s.sealFrame(nil, kindConfirm, nil)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(reply[:], frame...)); err != nil {
		return nil, fmt.Errorf("%w: sending reply to %s: %v", ErrHandshake, conn.RemoteAddr(), err)
	}
	kind, payload, err := s.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: %s closed the connection during the handshake (it probably has a different cluster key under id %d)", ErrHandshake, conn.RemoteAddr(), key.ID)
		}
		return nil, fmt.Errorf("%w: confirmation from %s: %v (different cluster keys under id %d?)", ErrHandshake, conn.RemoteAddr(), err, key.ID)
	}
	if kind != kindConfirm || len(payload) != 0 {
		return nil, fmt.Errorf("%w: %s sent a frame of kind %d instead of the confirmation", ErrHandshake, conn.RemoteAddr(), kind)
	}
	return s, nil
}

// newStream derives the connection's own AES-256-GCM key from the cluster
// key and both nonces, so frame nonces can be plain counters and nothing
// sealed on one connection opens on another.
func newStream(conn net.Conn, key keyfile.Key, cnonce, snonce []byte, sendDir, recvDir byte) (*Stream, error) {
	salt := make([]byte, 0, 2*streamNonceSize)
	salt = append(append(salt, cnonce...), snonce...)
	sk, err := hkdf.Key(sha256.New, key.Secret[:], salt, "correo pwproto stream v1", 32)
	if err != nil {
		return nil, fmt.Errorf("%w: deriving the session key: %v", ErrHandshake, err)
	}
	block, err := aes.NewCipher(sk)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &Stream{conn: conn, aead: aead, sendDir: sendDir, recvDir: recvDir}
	s.ad[0], s.ad[1], s.ad[2], s.ad[3] = streamMagic0, streamMagic1, Version, key.ID
	copy(s.ad[4:], cnonce)
	copy(s.ad[4+streamNonceSize:], snonce)
	return s, nil
}

// frameAD and frameNonce bind a frame to its direction, its position and
// its length.
func (s *Stream) frameAD(dir byte, ctr uint64, n uint32) [frameADSize]byte {
	var ad [frameADSize]byte
	copy(ad[:], s.ad[:])
	ad[streamADSize] = dir
	binary.BigEndian.PutUint64(ad[streamADSize+1:], ctr)
	binary.BigEndian.PutUint32(ad[streamADSize+9:], n)
	return ad
}

func frameNonce(dir byte, ctr uint64) [NonceSize]byte {
	var n [NonceSize]byte
	n[0] = dir
	binary.BigEndian.PutUint64(n[4:], ctr)
	return n
}

// sealFrame appends the next send frame to dst. Callers hold sendMu (or
// own the stream exclusively, as in the handshake).
func (s *Stream) sealFrame(dst []byte, kind uint8, payload []byte) ([]byte, error) {
	if len(payload) > MaxFrame {
		return dst, fmt.Errorf("%w: frame payload of %d bytes exceeds the %d-byte limit (split it)", ErrTooBig, len(payload), MaxFrame)
	}
	sealed := uint32(1 + len(payload) + tagSize)
	start := len(dst)
	dst = slices.Grow(dst, 4+int(sealed)) // Seal in place must not reallocate
	dst = binary.BigEndian.AppendUint32(dst, sealed)
	pt := len(dst)
	dst = append(dst, kind)
	dst = append(dst, payload...)
	ad := s.frameAD(s.sendDir, s.sendCtr, sealed)
	nonce := frameNonce(s.sendDir, s.sendCtr)
	out := s.aead.Seal(dst[pt:pt], nonce[:], dst[pt:], ad[:])
	s.sendCtr++
	return dst[:start+4+len(out)], nil
}

// Send seals and writes one frame. A payload over MaxFrame is refused
// without touching the stream; a write error breaks it.
func (s *Stream) Send(kind uint8, payload []byte) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.sendErr != nil {
		return s.sendErr
	}
	if len(payload) > MaxFrame {
		return fmt.Errorf("%w: frame payload of %d bytes exceeds the %d-byte limit (split it)", ErrTooBig, len(payload), MaxFrame)
	}
	buf := make([]byte, 0, 4+1+len(payload)+tagSize)
	buf, err := s.sealFrame(buf, kind, payload)
	if err != nil {
		return err
	}
	if _, err := s.conn.Write(buf); err != nil {
		s.sendErr = fmt.Errorf("pwproto: stream to %s: %w", s.conn.RemoteAddr(), err)
		return s.sendErr
	}
	return nil
}

// Recv reads and opens the next frame. The payload is a fresh slice the
// caller may keep. At a clean end of stream between frames it returns
// io.EOF; a stream cut inside a frame is io.ErrUnexpectedEOF (wrapped); a
// frame that fails authentication — forged, replayed, reordered, from
// another connection, or reflected — wraps ErrAuth.
func (s *Stream) Recv() (kind uint8, payload []byte, err error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	if s.recvErr != nil {
		return 0, nil, s.recvErr
	}
	kind, payload, err = s.recv()
	if err != nil && err != io.EOF {
		s.recvErr = err
	}
	return kind, payload, err
}

func (s *Stream) recv() (uint8, []byte, error) {
	var lb [4]byte
	if n, err := io.ReadFull(s.conn, lb[:]); err != nil {
		if n == 0 && err == io.EOF {
			return 0, nil, io.EOF
		}
		return 0, nil, fmt.Errorf("pwproto: stream from %s: reading frame %d: %w", s.conn.RemoteAddr(), s.recvCtr, noEOF(err))
	}
	sealed := binary.BigEndian.Uint32(lb[:])
	if sealed < 1+tagSize {
		return 0, nil, fmt.Errorf("pwproto: stream from %s: frame %d: %w (length %d)", s.conn.RemoteAddr(), s.recvCtr, ErrMalformed, sealed)
	}
	if sealed > maxFrameSealed {
		return 0, nil, fmt.Errorf("pwproto: stream from %s: frame %d: %w: %d bytes, the limit is %d", s.conn.RemoteAddr(), s.recvCtr, ErrOversize, sealed, maxFrameSealed)
	}
	buf, err := readN(s.conn, int(sealed))
	if err != nil {
		return 0, nil, fmt.Errorf("pwproto: stream from %s: reading frame %d: %w", s.conn.RemoteAddr(), s.recvCtr, noEOF(err))
	}
	ad := s.frameAD(s.recvDir, s.recvCtr, sealed)
	nonce := frameNonce(s.recvDir, s.recvCtr)
	pt, err := s.aead.Open(buf[:0], nonce[:], buf, ad[:])
	if err != nil {
		return 0, nil, fmt.Errorf("pwproto: stream from %s: frame %d: %w", s.conn.RemoteAddr(), s.recvCtr, ErrAuth)
	}
	s.recvCtr++
	return pt[0], pt[1:], nil
}

// readN reads exactly n bytes, growing the buffer as data arrives rather
// than trusting the length prefix with one big allocation up front: a peer
// that announces 16 MiB and sends nothing costs at most 1 MiB.
func readN(r io.Reader, n int) ([]byte, error) {
	const step = 1 << 20
	buf := make([]byte, 0, min(n, step))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), cap(buf)))
		}
		m := min(n, cap(buf))
		k, err := io.ReadFull(r, buf[len(buf):m])
		buf = buf[:len(buf)+k]
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// noEOF turns an EOF inside a frame into ErrUnexpectedEOF: the peer went
// away mid-frame, which is never a clean end.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Close closes the connection.
func (s *Stream) Close() error { return s.conn.Close() }

// RemoteAddr is the peer's address, for log lines.
func (s *Stream) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }
