// Package pwproto is the wire format between passwdd and its clients: one
// sealed UDP request datagram, one sealed response datagram, plus a sealed
// TCP frame stream (Stream) for admin and replication.
//
// PROTOCOL.md beside this file documents the byte layouts and the security
// reasoning (replay, reflection, key rotation). In short: every datagram
// carries a clear header (magic, version, key id, nonce) that is
// authenticated as AES-256-GCM associated data, and an encrypted plaintext
// that starts with the direction, the operation, the request id and a
// timestamp. Password hashes have no field in this format at all: they never
// leave passwdd.
package pwproto

import (
	"errors"
	"time"
)

// Limits of the format. A datagram never exceeds MaxDatagram, which stays
// under the IPv6 minimum MTU (1280) minus headers, so a datagram is never
// fragmented on any network the cluster can run on.
const (
	MaxDatagram = 1200
	// Window is how far a request's timestamp may be from the server's
	// clock before the request is stale and dropped. It bounds how long a
	// captured request can be replayed and thus how long ReplayFilter has
	// to remember nonces; 30 s tolerates the clock skew of a cluster that
	// runs NTP with room to spare.
	Window = 30 * time.Second

	MaxName     = 64  // login names and aliases (an RFC 5321 local part is ≤ 64)
	MaxPassword = 256 // authentication passwords
	MaxAddress  = 320 // full mail addresses, local@domain (64 + 1 + 255)
	MaxClient   = 64  // the end user's IP address as text (IPv6 with zone fits)
	MaxGecos    = 512
	MaxShell    = 128
	MaxHome     = 256
	MaxStorage  = 253 // a DNS host name

	// Version is the protocol version in every header. A server answers
	// only its own version; a datagram of another version is ErrVersion.
	Version = 1

	// NonceSize is the AES-GCM nonce carried in every datagram header.
	NonceSize = 12
	// HeaderSize is the clear header: magic (2), version, key id, nonce.
	HeaderSize = 4 + NonceSize
	// Overhead is every byte of a datagram that is not the operation's
	// body: clear header, plaintext header (direction, op, request id,
	// timestamp) and the GCM tag.
	Overhead = HeaderSize + plainHeaderSize + tagSize

	plainHeaderSize = 1 + 1 + 8 + 8
	tagSize         = 16
	magic0, magic1  = 'C', 'P'
	kindRequest     = 'Q'
	kindResponse    = 'R'
)

// Op is an operation. Unknown values are rejected with ErrUnknownOp.
type Op uint8

const (
	OpLookupName Op = 1 + iota // Request.Name → User
	OpLookupUID                // Request.UID → User
	OpLookupAddr               // Request.Address (local@domain) → User; aliases and domains resolved by the server
	OpAuth                     // Request.Name, Password, Client → Status (OK/Denied/LockedOut), User on OK
	OpEnumerate                // Request.Cursor, Max → Users, Next (0 = end)
	OpPing                     // → PingInfo
	opEnd
)

var opNames = [...]string{"invalid", "lookup-name", "lookup-uid", "lookup-addr", "auth", "enumerate", "ping"}

func (o Op) String() string {
	if o < opEnd {
		return opNames[o]
	}
	return "unknown-op"
}

// Status is the outcome of a request. Zero is not a valid status, so a
// response built without setting it fails to seal instead of meaning "OK".
type Status uint8

const (
	StatusOK         Status = 1 + iota
	StatusNotFound          // no such user, uid or address
	StatusDenied            // wrong password, or the user is disabled
	StatusLockedOut         // too many failures for this user or source: try later
	StatusTempFail          // the server cannot answer now (e.g. a secondary still syncing)
	StatusBadRequest        // the request authenticated but did not parse (e.g. an op this server does not know)
	statusEnd
)

var statusNames = [...]string{"invalid", "ok", "not-found", "denied", "locked-out", "temp-fail", "bad-request"}

func (s Status) String() string {
	if s < statusEnd {
		return statusNames[s]
	}
	return "unknown-status"
}

// State is a user's account state.
type State uint8

const (
	StateActive   State = iota
	StateDisabled       // may not log in or receive mail
	StateMoving         // mailbox being moved between storage hosts: deliveries should defer (4xx)
	stateEnd
)

func (s State) String() string {
	switch s {
	case StateActive:
		return "active"
	case StateDisabled:
		return "disabled"
	case StateMoving:
		return "moving"
	}
	return "unknown-state"
}

// Role is what a server answering Ping is.
type Role uint8

const (
	RolePrimary Role = 1 + iota
	RoleSecondary
	roleEnd
)

func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleSecondary:
		return "secondary"
	}
	return "unknown-role"
}

// User is a user record as clients see it. There is deliberately no
// password hash: hashes never leave passwdd.
type User struct {
	Name    string
	UID     uint32
	GID     uint32
	Gecos   string
	Shell   string
	Home    string // computed by the server from the mailbox layout
	Storage string // the storage host holding the mailbox
	Quota   int64  // bytes; 0 = none
	State   State
	Aliases []string // other local parts delivering to this user
}

// PingInfo is the answer to OpPing.
type PingInfo struct {
	Role  Role
	Epoch uint64 // changes when the primary's data set is replaced (restart, full import)
	Seq   uint64 // generation within the epoch: journal position
	Users uint64 // users in the index
}

// Request is a decoded or to-be-sealed request. Only the fields of its Op
// are encoded.
type Request struct {
	Op Op
	// ID is chosen by the client and echoed by the response; a
	// retransmission reuses it.
	ID uint64

	Name     string // OpLookupName, OpAuth
	UID      uint32 // OpLookupUID
	Address  string // OpLookupAddr
	Password string // OpAuth
	Client   string // OpAuth: the end user's IP as the asking daemon sees it
	Cursor   uint64 // OpEnumerate: 0 = from the start
	Max      uint16 // OpEnumerate: most users wanted in this page

	// Filled by OpenRequest, ignored by SealRequest: ReplayFilter and the
	// reply (Reply) use them.
	KeyID uint8
	Nonce [NonceSize]byte
	Time  time.Time
}

// Reply starts the response to r: same op and id, sealed with the key the
// request used (the client certainly has that one, even mid-rotation).
func (r *Request) Reply(st Status) Response {
	return Response{Op: r.Op, ID: r.ID, KeyID: r.KeyID, Status: st}
}

// Response is a decoded or to-be-sealed response.
type Response struct {
	Op     Op
	ID     uint64
	Status Status
	// KeyID selects the sealing key; 0 (or a key not in the ring) means the
	// ring's current key. Set from the request by Request.Reply. Filled by
	// OpenResponse.
	KeyID uint8

	User  User     // lookups and OpAuth, when Status is OK
	Users []User   // OpEnumerate: must fit one datagram, see FitEnumerate
	Next  uint64   // OpEnumerate: cursor of the next page, 0 = no more
	Ping  PingInfo // OpPing
}

// Errors of OpenRequest and OpenResponse: the server counts drops per
// reason, so they are plain sentinels (compare with == or errors.Is) and
// cost no allocation.
var (
	ErrShort      = errors.New("pwproto: datagram too short")
	ErrOversize   = errors.New("pwproto: datagram larger than MaxDatagram")
	ErrMagic      = errors.New("pwproto: not a correo passwd datagram (bad magic)")
	ErrVersion    = errors.New("pwproto: unsupported protocol version")
	ErrUnknownKey = errors.New("pwproto: sealed with a key id not in the key ring")
	ErrAuth       = errors.New("pwproto: authentication failed (forged, corrupted, or a different cluster key)")
	ErrDirection  = errors.New("pwproto: wrong direction (a response presented as a request or vice versa)")
	ErrStale      = errors.New("pwproto: timestamp outside the window (stale or replayed, or clocks out of sync)")
	ErrUnknownOp  = errors.New("pwproto: unknown operation")
	ErrMalformed  = errors.New("pwproto: malformed body")
	// ErrTooBig is returned by the sealers when a message does not fit in
	// MaxDatagram or a field exceeds its limit.
	ErrTooBig = errors.New("pwproto: message does not fit")
)
