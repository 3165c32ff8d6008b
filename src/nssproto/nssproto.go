// Package nssproto is the protocol between libnss_correo.so.2 (the C NSS
// module in src/nss) and nssd, the per-host agent, over a local Unix
// stream socket. PROTOCOL.md beside this file is the specification; the C
// decoder in src/nss/nss_correo.c implements the same format and the cgo
// tests in src/nss/nsstest cross-check the two.
//
// The format is small on purpose: the C side has to decode it without a
// library, inside every process that resolves a user, so every field has
// a fixed width or a 16-bit length, every length is bounded, and nothing
// is optional.
package nssproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Version is the only protocol version. A server that meets another one
// closes the connection; the module then answers UNAVAIL and the next
// NSS source (files) still works.
const Version = 1

// Hard limits, counted in bytes after the 4-byte length prefix. Both
// sides refuse larger frames before reading them.
const (
	MaxRequest  = 1024
	MaxResponse = 65536
	// MaxName bounds a user or group name (glibc's own limit for login
	// names is 256 with the NUL).
	MaxName = 255
	// MaxField bounds gecos, home and shell. Real values are far shorter;
	// the bound keeps one record well below MaxResponse so an enumeration
	// page always holds at least one.
	MaxField = 4096
	// MaxMembers bounds the member list of one group.
	MaxMembers = 1024
)

// Op is a request's operation.
type Op uint8

const (
	OpGetpwnam Op = 1 // payload: name
	OpGetpwuid Op = 2 // payload: u32 uid
	OpGetpwent Op = 3 // payload: u64 cursor (0 = from the start)
	OpGetgrnam Op = 4 // payload: name
	OpGetgrgid Op = 5 // payload: u32 gid
	OpGetgrent Op = 6 // payload: u64 cursor
)

func (o Op) String() string {
	switch o {
	case OpGetpwnam:
		return "getpwnam"
	case OpGetpwuid:
		return "getpwuid"
	case OpGetpwent:
		return "getpwent"
	case OpGetgrnam:
		return "getgrnam"
	case OpGetgrgid:
		return "getgrgid"
	case OpGetgrent:
		return "getgrent"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Enumerates reports whether the op returns a page (cursor, records).
func (o Op) Enumerates() bool { return o == OpGetpwent || o == OpGetgrent }

// IsGroup reports whether the op answers with group records.
func (o Op) IsGroup() bool { return o == OpGetgrnam || o == OpGetgrgid || o == OpGetgrent }

func (o Op) valid() bool { return o >= OpGetpwnam && o <= OpGetgrent }

// Status is the first byte of every response.
type Status uint8

const (
	// StatusFound: the records follow.
	StatusFound Status = 0
	// StatusNotFound: the name or id does not exist (an authoritative
	// answer; nssd may cache it).
	StatusNotFound Status = 1
	// StatusUnavail: nssd cannot reach the password servers. The module
	// returns NSS_STATUS_UNAVAIL so the next source still answers.
	StatusUnavail Status = 2
	// StatusTryAgain: a transient failure upstream; the module returns
	// NSS_STATUS_TRYAGAIN with errno EAGAIN.
	StatusTryAgain Status = 3
)

func (s Status) String() string {
	switch s {
	case StatusFound:
		return "found"
	case StatusNotFound:
		return "notfound"
	case StatusUnavail:
		return "unavail"
	case StatusTryAgain:
		return "tryagain"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Request is one question from the module.
type Request struct {
	Op     Op
	Name   string // getpwnam, getgrnam
	ID     uint32 // getpwuid, getgrgid
	Cursor uint64 // getpwent, getgrent
}

// Passwd is a passwd entry as it travels; the password field is not sent
// (the module always fills in "x": hashes never leave passwdd).
type Passwd struct {
	Name  string
	UID   uint32
	GID   uint32
	Gecos string
	Home  string
	Shell string
}

// Group is a group entry; the password field is likewise always "x".
type Group struct {
	Name    string
	GID     uint32
	Members []string
}

// Response is one answer. Which fields the wire carries depends on the
// request's op (the decoder is told it): lookups carry one record,
// enumerations a page and the cursor of the next one (0: no more).
type Response struct {
	Status Status
	Passwd []Passwd
	Groups []Group
	Next   uint64
}

// Errors returned by the decoders; every one means "close the connection".
var (
	ErrTooLong   = errors.New("nssproto: frame exceeds the protocol limit")
	ErrVersion   = errors.New("nssproto: unsupported protocol version")
	ErrMalformed = errors.New("nssproto: malformed frame")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// ValidName reports whether s can travel as a name: 1-MaxName bytes, no
// NUL (C strings), no ':' or newline (they would corrupt the passwd line
// getent prints and the parsers that read it).
func ValidName(s string) bool {
	return len(s) >= 1 && len(s) <= MaxName && !strings.ContainsAny(s, "\x00:\n")
}

// validField is the check for gecos, home, shell.
func validField(s string) bool {
	return len(s) <= MaxField && !strings.ContainsAny(s, "\x00:\n")
}

// Check reports why a passwd entry cannot travel, or nil.
func (p *Passwd) Check() error {
	switch {
	case !ValidName(p.Name):
		return fmt.Errorf("name %q: must be 1-%d bytes without NUL, ':' or newline", p.Name, MaxName)
	case !validField(p.Gecos):
		return fmt.Errorf("gecos of %q: over %d bytes or holds NUL, ':' or newline", p.Name, MaxField)
	case !validField(p.Home):
		return fmt.Errorf("home of %q: over %d bytes or holds NUL, ':' or newline", p.Name, MaxField)
	case !validField(p.Shell):
		return fmt.Errorf("shell of %q: over %d bytes or holds NUL, ':' or newline", p.Name, MaxField)
	}
	return nil
}

// Check reports why a group entry cannot travel, or nil.
func (g *Group) Check() error {
	if !ValidName(g.Name) {
		return fmt.Errorf("group name %q: must be 1-%d bytes without NUL, ':' or newline", g.Name, MaxName)
	}
	if len(g.Members) > MaxMembers {
		return fmt.Errorf("group %q: %d members, at most %d travel", g.Name, len(g.Members), MaxMembers)
	}
	for _, m := range g.Members {
		if !ValidName(m) || strings.Contains(m, ",") {
			return fmt.Errorf("group %q: member %q is not a valid name", g.Name, m)
		}
	}
	return nil
}

// Size is the encoded size of the entry in bytes.
func (p *Passwd) Size() int {
	return 2*4 + 4*2 + len(p.Name) + len(p.Gecos) + len(p.Home) + len(p.Shell)
}

// Size is the encoded size of the entry in bytes.
func (g *Group) Size() int {
	n := 2 + len(g.Name) + 4 + 2
	for _, m := range g.Members {
		n += 2 + len(m)
	}
	return n
}

// PageOverhead is what an enumeration response spends before its
// records: status, next cursor, count.
const PageOverhead = 1 + 8 + 2

// AppendRequest appends the framed request (length prefix included).
func AppendRequest(b []byte, r Request) ([]byte, error) {
	if !r.Op.valid() {
		return b, fmt.Errorf("nssproto: unknown op %d", r.Op)
	}
	start := len(b)
	b = append(b, 0, 0, 0, 0, Version, byte(r.Op))
	switch r.Op {
	case OpGetpwnam, OpGetgrnam:
		if !ValidName(r.Name) {
			return b[:start], fmt.Errorf("nssproto: invalid name %q", r.Name)
		}
		b = appendString(b, r.Name)
	case OpGetpwuid, OpGetgrgid:
		b = binary.BigEndian.AppendUint32(b, r.ID)
	case OpGetpwent, OpGetgrent:
		b = binary.BigEndian.AppendUint64(b, r.Cursor)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	return b, nil
}

// DecodeRequest decodes a request body (the bytes after the length
// prefix). Anything but exactly one well-formed request is an error.
func DecodeRequest(body []byte) (Request, error) {
	var r Request
	if len(body) > MaxRequest {
		return r, ErrTooLong
	}
	d := decoder{b: body}
	ver := d.u8()
	op := Op(d.u8())
	if d.err != nil {
		return r, d.err
	}
	if ver != Version {
		return r, fmt.Errorf("%w %d (this side speaks %d)", ErrVersion, ver, Version)
	}
	if !op.valid() {
		return r, malformed("unknown op %d", op)
	}
	r.Op = op
	switch op {
	case OpGetpwnam, OpGetgrnam:
		r.Name = d.str(MaxName)
		if d.err == nil && !ValidName(r.Name) {
			return Request{}, malformed("invalid name")
		}
	case OpGetpwuid, OpGetgrgid:
		r.ID = d.u32()
	case OpGetpwent, OpGetgrent:
		r.Cursor = d.u64()
	}
	if err := d.end(); err != nil {
		return Request{}, err
	}
	return r, nil
}

// ReadRequest reads one framed request. io.EOF means the client closed
// the connection cleanly between requests.
func ReadRequest(rd io.Reader) (Request, error) {
	body, err := readFrame(rd, MaxRequest)
	if err != nil {
		return Request{}, err
	}
	return DecodeRequest(body)
}

// AppendResponse appends the framed response to a request with op op.
// It fails when the records do not fit in MaxResponse or cannot travel;
// the caller then answers with fewer records (or StatusUnavail).
func AppendResponse(b []byte, op Op, r Response) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, byte(r.Status))
	if r.Status == StatusFound {
		var err error
		switch {
		case op.Enumerates():
			b = binary.BigEndian.AppendUint64(b, r.Next)
			n := len(r.Passwd)
			if op.IsGroup() {
				n = len(r.Groups)
			}
			if n > 0xffff {
				return b[:start], fmt.Errorf("nssproto: %d records in one page", n)
			}
			b = binary.BigEndian.AppendUint16(b, uint16(n))
			if op.IsGroup() {
				for i := range r.Groups {
					if b, err = appendGroup(b, &r.Groups[i]); err != nil {
						return b[:start], err
					}
				}
			} else {
				for i := range r.Passwd {
					if b, err = appendPasswd(b, &r.Passwd[i]); err != nil {
						return b[:start], err
					}
				}
			}
		case op.IsGroup():
			if len(r.Groups) != 1 {
				return b[:start], fmt.Errorf("nssproto: %s answer needs exactly one group, have %d", op, len(r.Groups))
			}
			if b, err = appendGroup(b, &r.Groups[0]); err != nil {
				return b[:start], err
			}
		case op.valid():
			if len(r.Passwd) != 1 {
				return b[:start], fmt.Errorf("nssproto: %s answer needs exactly one entry, have %d", op, len(r.Passwd))
			}
			if b, err = appendPasswd(b, &r.Passwd[0]); err != nil {
				return b[:start], err
			}
		default:
			return b[:start], fmt.Errorf("nssproto: unknown op %d", op)
		}
	}
	n := len(b) - start - 4
	if n > MaxResponse {
		return b[:start], ErrTooLong
	}
	binary.BigEndian.PutUint32(b[start:], uint32(n))
	return b, nil
}

// AppendPasswd appends p as one record of a response body (the encoding
// the module's parse_pw reads), after checking it as a response would.
func AppendPasswd(b []byte, p *Passwd) ([]byte, error) { return appendPasswd(b, p) }

func appendPasswd(b []byte, p *Passwd) ([]byte, error) {
	if err := p.Check(); err != nil {
		return b, err
	}
	b = appendString(b, p.Name)
	b = binary.BigEndian.AppendUint32(b, p.UID)
	b = binary.BigEndian.AppendUint32(b, p.GID)
	b = appendString(b, p.Gecos)
	b = appendString(b, p.Home)
	b = appendString(b, p.Shell)
	return b, nil
}

func appendGroup(b []byte, g *Group) ([]byte, error) {
	if err := g.Check(); err != nil {
		return b, err
	}
	b = appendString(b, g.Name)
	b = binary.BigEndian.AppendUint32(b, g.GID)
	b = binary.BigEndian.AppendUint16(b, uint16(len(g.Members)))
	for _, m := range g.Members {
		b = appendString(b, m)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// DecodePasswd decodes one record as AppendPasswd wrote it, checked as a
// response's would be.
func DecodePasswd(rec []byte) (Passwd, error) {
	r, err := DecodeResponse(OpGetpwnam, append([]byte{byte(StatusFound)}, rec...))
	if err != nil {
		return Passwd{}, err
	}
	return r.Passwd[0], nil
}

// DecodeResponse decodes a response body (after the length prefix) to a
// request with op op.
func DecodeResponse(op Op, body []byte) (Response, error) {
	var r Response
	if !op.valid() {
		return r, malformed("unknown op %d", op)
	}
	if len(body) > MaxResponse {
		return r, ErrTooLong
	}
	d := decoder{b: body}
	r.Status = Status(d.u8())
	if d.err != nil {
		return Response{}, d.err
	}
	switch r.Status {
	case StatusFound:
	case StatusNotFound, StatusUnavail, StatusTryAgain:
		return r, d.end()
	default:
		return Response{}, malformed("unknown status %d", r.Status)
	}
	n := 1
	if op.Enumerates() {
		r.Next = d.u64()
		n = int(d.u16())
	}
	for i := 0; i < n && d.err == nil; i++ {
		if op.IsGroup() {
			g := Group{Name: d.str(MaxName), GID: d.u32()}
			m := int(d.u16())
			if m > MaxMembers {
				return Response{}, malformed("%d members", m)
			}
			for j := 0; j < m && d.err == nil; j++ {
				g.Members = append(g.Members, d.str(MaxName))
			}
			if d.err == nil {
				if err := g.Check(); err != nil {
					return Response{}, malformed("%v", err)
				}
			}
			r.Groups = append(r.Groups, g)
		} else {
			p := Passwd{Name: d.str(MaxName), UID: d.u32(), GID: d.u32(),
				Gecos: d.str(MaxField), Home: d.str(MaxField), Shell: d.str(MaxField)}
			if d.err == nil {
				if err := p.Check(); err != nil {
					return Response{}, malformed("%v", err)
				}
			}
			r.Passwd = append(r.Passwd, p)
		}
	}
	if err := d.end(); err != nil {
		return Response{}, err
	}
	return r, nil
}

// ReadResponse reads one framed response to a request with op op.
func ReadResponse(rd io.Reader, op Op) (Response, error) {
	body, err := readFrame(rd, MaxResponse)
	if err != nil {
		return Response{}, err
	}
	return DecodeResponse(op, body)
}

// readFrame reads a length prefix and the body, refusing a length over
// max before allocating anything.
func readFrame(rd io.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(rd, hdr[:]); err != nil {
		return nil, err // io.EOF: closed between frames
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > uint32(max) {
		return nil, ErrTooLong
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rd, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return body, nil
}

// decoder reads big-endian fields, remembering the first error so the
// callers can read a whole record and check once.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = malformed("truncated")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) str(max int) string {
	n := int(d.u16())
	if d.err == nil && n > max {
		d.err = malformed("string of %d bytes exceeds %d", n, max)
		return ""
	}
	return string(d.take(n))
}

func (d *decoder) end() error {
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return malformed("%d trailing bytes", len(d.b))
	}
	return nil
}
