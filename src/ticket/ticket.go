// Package ticket lets mailproxy tell pop3d "I checked this user's password"
// in a way nobody else can forge: a short-lived login ticket sealed with a
// key derived from the cluster key, carried in the PROXY v2 header. pop3d
// then looks the user up instead of verifying the password a second time
// (a bcrypt or SHA-crypt check costs milliseconds per login). A forged
// PROXY header, or a machine that took over a proxy's address without the
// cluster key, still gets the full password check.
package ticket

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"correo/src/keyfile"
)

// Lifetime is how long a ticket is good for: the proxy hands it to pop3d
// within milliseconds of checking the password.
const Lifetime = 30 * time.Second

// MaxSize bounds a sealed ticket (user names are at most 64 bytes).
const MaxSize = 1 + nonceSize + 2 + 64 + 18 + 8 + 16

const nonceSize = 12

// Ticket says: this user logged in with the right password from this
// client, and the ticket is good until Expires.
type Ticket struct {
	User    string
	Client  netip.AddrPort
	Expires time.Time
}

// Errors of Open.
var (
	ErrForged  = errors.New("ticket: does not open with the cluster key (forged, damaged or another cluster)")
	ErrExpired = errors.New("ticket: expired")
	ErrReplay  = errors.New("ticket: already used")
)

// Sealer seals and opens tickets. It remembers the tickets it opened until
// they expire, so each is good for one login.
type Sealer struct {
	current uint8
	aeads   map[uint8]cipher.AEAD

	mu   sync.Mutex
	used map[[nonceSize]byte]time.Time
}

// New derives the ticket keys from every key of the ring: a ticket sealed
// with the ring's current key opens on hosts that also hold it, which
// keeps working through a key rotation.
func New(ring *keyfile.Ring) (*Sealer, error) {
	s := &Sealer{current: ring.Current().ID, aeads: map[uint8]cipher.AEAD{}, used: map[[nonceSize]byte]time.Time{}}
	for _, k := range ring.Keys {
		// A key of its own for tickets, so nothing sealed for one purpose
		// can be taken for another.
		mac := hmac.New(sha256.New, k.Secret[:])
		mac.Write([]byte("correo login ticket v1"))
		block, err := aes.NewCipher(mac.Sum(nil))
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		s.aeads[k.ID] = aead
	}
	return s, nil
}

// Seal makes a ticket for user logging in from client, good for Lifetime.
func (s *Sealer) Seal(user string, client netip.AddrPort, now time.Time) ([]byte, error) {
	if len(user) == 0 || len(user) > 64 {
		return nil, fmt.Errorf("ticket: user name of %d bytes", len(user))
	}
	addr, err := client.MarshalBinary()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+nonceSize, MaxSize)
	out[0] = s.current
	if _, err := rand.Read(out[1 : 1+nonceSize]); err != nil {
		return nil, err
	}
	var pt []byte
	pt = binary.BigEndian.AppendUint16(pt, uint16(len(user)))
	pt = append(pt, user...)
	pt = append(pt, byte(len(addr)))
	pt = append(pt, addr...)
	pt = binary.BigEndian.AppendUint64(pt, uint64(now.Add(Lifetime).UnixMilli()))
	return s.aeads[s.current].Seal(out, out[1:1+nonceSize], pt, out[:1]), nil
}

// Open checks a ticket: sealed by a holder of the cluster key, not
// expired, not used before.
func (s *Sealer) Open(b []byte, now time.Time) (Ticket, error) {
	if len(b) < 1+nonceSize+16 || len(b) > MaxSize {
		return Ticket{}, ErrForged
	}
	aead := s.aeads[b[0]]
	if aead == nil {
		return Ticket{}, ErrForged
	}
	pt, err := aead.Open(nil, b[1:1+nonceSize], b[1+nonceSize:], b[:1])
	if err != nil {
		return Ticket{}, ErrForged
	}
	var t Ticket
	if len(pt) < 2 {
		return Ticket{}, ErrForged
	}
	n := int(binary.BigEndian.Uint16(pt))
	pt = pt[2:]
	if len(pt) < n+1 {
		return Ticket{}, ErrForged
	}
	t.User, pt = string(pt[:n]), pt[n:]
	n = int(pt[0])
	pt = pt[1:]
	if len(pt) != n+8 {
		return Ticket{}, ErrForged
	}
	if err := t.Client.UnmarshalBinary(pt[:n]); err != nil {
		return Ticket{}, ErrForged
	}
	t.Expires = time.UnixMilli(int64(binary.BigEndian.Uint64(pt[n:])))
	if !now.Before(t.Expires) || t.Expires.Sub(now) > Lifetime+time.Minute {
		return Ticket{}, ErrExpired
	}
	var nonce [nonceSize]byte
	copy(nonce[:], b[1:1+nonceSize])
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.used[nonce]; dup {
		return Ticket{}, ErrReplay
	}
	if len(s.used) > 1000 {
		for k, exp := range s.used {
			if now.After(exp) {
				delete(s.used, k)
			}
		}
	}
	s.used[nonce] = t.Expires
	return t, nil
}
