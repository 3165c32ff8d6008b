package pwproto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"correo/src/keyfile"
)

// Codec seals and opens datagrams with a key ring. It is safe for
// concurrent use and allocation-free on the hot path: the AES-GCM instance
// of every key is built once, and sealing appends into the caller's buffer.
// A changed key file needs a new Codec.
type Codec struct {
	aeads   [256]cipher.AEAD // indexed by key id; nil = not in the ring
	current uint8

	// Nonces are prefix ‖ counter rather than 12 fresh random bytes: with
	// random nonces, AES-GCM's collision risk reaches NIST's 2⁻³² bound
	// after 2³² datagrams per key, about 12 hours at 100 k requests/s.
	// A random per-Codec prefix plus a randomly seeded 64-bit counter
	// cannot repeat within one process, and two processes collide only if
	// both their 32-bit prefixes and their counter ranges overlap. It also
	// saves a getrandom call per datagram. Receivers treat the nonce as
	// opaque bytes.
	prefix  [4]byte
	counter atomic.Uint64
}

// NewCodec builds a codec for every key of ring; ring.Current() seals.
func NewCodec(ring *keyfile.Ring) (*Codec, error) {
	if ring == nil || len(ring.Keys) == 0 {
		return nil, fmt.Errorf("pwproto: empty key ring: load the cluster key file first")
	}
	c := &Codec{current: ring.Current().ID}
	for _, k := range ring.Keys {
		if k.ID == 0 {
			return nil, fmt.Errorf("pwproto: key id 0 is reserved")
		}
		block, err := aes.NewCipher(k.Secret[:])
		if err != nil {
			return nil, fmt.Errorf("pwproto: key %d: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("pwproto: key %d: %w", k.ID, err)
		}
		c.aeads[k.ID] = aead
	}
	var seed [12]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("pwproto: drawing the nonce prefix: %w", err)
	}
	copy(c.prefix[:], seed[:4])
	c.counter.Store(binary.BigEndian.Uint64(seed[4:]))
	return c, nil
}

// CurrentKey is the id of the key new requests are sealed with.
func (c *Codec) CurrentKey() uint8 { return c.current }

// seal appends one datagram to dst: header, then the plaintext header and
// body written by the caller-supplied encoder, sealed in place.
func (c *Codec) seal(dst []byte, keyID uint8, kind byte, op Op, id uint64, now time.Time,
	req *Request, resp *Response) ([]byte, error) {
	if c.aeads[keyID] == nil {
		keyID = c.current
	}
	start := len(dst)
	// One growth up front: the whole datagram, tag included, so that the
	// in-place Seal below never reallocates.
	dst = slices.Grow(dst, MaxDatagram)
	dst = append(dst, magic0, magic1, Version, keyID)
	dst = binary.BigEndian.AppendUint32(dst, binary.BigEndian.Uint32(c.prefix[:]))
	dst = binary.BigEndian.AppendUint64(dst, c.counter.Add(1))
	pt := len(dst)
	dst = append(dst, kind, byte(op))
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = binary.BigEndian.AppendUint64(dst, uint64(now.UnixMilli()))
	var err error
	if req != nil {
		dst, err = appendRequestBody(dst, req)
	} else {
		dst, err = appendResponseBody(dst, resp)
	}
	if err != nil {
		return dst[:start], err
	}
	if len(dst)-start+tagSize > MaxDatagram {
		return dst[:start], fmt.Errorf("%w: %s %s is %d bytes sealed, the limit is %d",
			ErrTooBig, op, kindName(kind), len(dst)-start+tagSize, MaxDatagram)
	}
	hdr := dst[start:pt]
	out := c.aeads[keyID].Seal(dst[pt:pt], hdr[4:HeaderSize], dst[pt:], hdr)
	return dst[:pt+len(out)], nil
}

func kindName(k byte) string {
	if k == kindRequest {
		return "request"
	}
	return "response"
}

// SealRequest appends req, sealed with the ring's current key, to dst and
// returns the extended slice. Pass a reused buffer (dst[:0]) to avoid
// allocating. req.KeyID, Nonce and Time are ignored: the nonce is fresh
// and the timestamp is now, so a retransmission (same ID) is a new
// datagram that the server's ReplayFilter admits.
func (c *Codec) SealRequest(dst []byte, req *Request, now time.Time) ([]byte, error) {
	return c.seal(dst, c.current, kindRequest, req.Op, req.ID, now, req, nil)
}

// SealResponse appends resp, sealed with resp.KeyID (the current key when
// 0 or unknown), to dst and returns the extended slice.
func (c *Codec) SealResponse(dst []byte, resp *Response, now time.Time) ([]byte, error) {
	return c.seal(dst, resp.KeyID, kindResponse, resp.Op, resp.ID, now, nil, resp)
}

// open checks and decrypts b in place and returns the plaintext, or one of
// the sentinel errors.
func (c *Codec) open(b []byte, kind byte) ([]byte, error) {
	if len(b) < Overhead {
		return nil, ErrShort
	}
	if len(b) > MaxDatagram {
		return nil, ErrOversize
	}
	if b[0] != magic0 || b[1] != magic1 {
		return nil, ErrMagic
	}
	if b[2] != Version {
		return nil, ErrVersion
	}
	aead := c.aeads[b[3]]
	if aead == nil {
		return nil, ErrUnknownKey
	}
	hdr := b[:HeaderSize]
	pt, err := aead.Open(b[HeaderSize:HeaderSize], hdr[4:], b[HeaderSize:], hdr)
	if err != nil {
		return nil, ErrAuth
	}
	if pt[0] != kind {
		return nil, ErrDirection
	}
	return pt, nil
}

// OpenRequest is OpenRequestTo into a new Request.
func (c *Codec) OpenRequest(b []byte, now time.Time) (*Request, error) {
	req := new(Request)
	if err := c.OpenRequestTo(req, b, now); err != nil {
		return nil, err
	}
	return req, nil
}

// OpenRequestTo authenticates, decrypts and decodes the request datagram b
// into req (overwritten entirely), checking its timestamp against now.
//
// b is decrypted in place: its contents are garbage afterwards, whatever the
// outcome. Errors are the sentinels ErrShort, ErrOversize, ErrMagic,
// ErrVersion, ErrUnknownKey, ErrAuth, ErrDirection, ErrStale,
// ErrUnknownOp and ErrMalformed; the server drops the datagram without an
// answer and counts it by that reason — except ErrUnknownOp and
// ErrMalformed: the request did authenticate and is fresh, req.Op, ID,
// KeyID, Nonce and Time are valid, and the server should answer
// StatusBadRequest (after ReplayFilter.Admit), so that a client newer than
// the server gets an error instead of failing over.
func (c *Codec) OpenRequestTo(req *Request, b []byte, now time.Time) error {
	*req = Request{}
	pt, err := c.open(b, kindRequest)
	if err != nil {
		return err
	}
	ms := int64(binary.BigEndian.Uint64(pt[10:18]))
	if d := now.UnixMilli() - ms; d > Window.Milliseconds() || d < -Window.Milliseconds() {
		return ErrStale
	}
	req.Op = Op(pt[1])
	req.ID = binary.BigEndian.Uint64(pt[2:10])
	req.Time = time.UnixMilli(ms)
	req.KeyID = b[3]
	copy(req.Nonce[:], b[4:HeaderSize])
	return decodeRequestBody(req, pt[plainHeaderSize:])
}

// OpenResponse authenticates, decrypts and decodes a response datagram.
// Like OpenRequestTo it decrypts b in place. There is no timestamp check:
// the client accepts a response only for a request id it has pending, and
// ids are never reused, so an old response matches nothing. Errors are the
// same sentinels as OpenRequestTo's.
func (c *Codec) OpenResponse(b []byte) (*Response, error) {
	pt, err := c.open(b, kindResponse)
	if err != nil {
		return nil, err
	}
	resp := &Response{
		Op:    Op(pt[1]),
		ID:    binary.BigEndian.Uint64(pt[2:10]),
		KeyID: b[3],
	}
	if err := decodeResponseBody(resp, pt[plainHeaderSize:]); err != nil {
		return nil, err
	}
	return resp, nil
}
