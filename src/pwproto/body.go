package pwproto

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bodies are binary: strings are a uvarint length then the bytes, integers
// are fixed-size big-endian. Every string has a limit, and none may hold a
// NUL byte (the NSS module hands these strings to C).

// maxBody is the room left for the body in one datagram.
const maxBody = MaxDatagram - Overhead

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// checkString reports why s cannot be encoded as field what, or nil. It
// runs only on the sealing side and only allocates when it fails.
func checkString(what, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrTooBig, what, len(s), limit)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("pwproto: %s contains a NUL byte", what)
	}
	return nil
}

func appendRequestBody(b []byte, r *Request) ([]byte, error) {
	switch r.Op {
	case OpLookupName:
		if err := checkString("name", r.Name, MaxName); err != nil {
			return b, err
		}
		b = appendString(b, r.Name)
	case OpLookupUID:
		b = binary.BigEndian.AppendUint32(b, r.UID)
	case OpLookupAddr:
		if err := checkString("address", r.Address, MaxAddress); err != nil {
			return b, err
		}
		b = appendString(b, r.Address)
	case OpAuth:
		if err := checkString("name", r.Name, MaxName); err != nil {
			return b, err
		}
		if err := checkString("password", r.Password, MaxPassword); err != nil {
			return b, err
		}
		if err := checkString("client address", r.Client, MaxClient); err != nil {
			return b, err
		}
		b = appendString(b, r.Name)
		b = appendString(b, r.Password)
		b = appendString(b, r.Client)
	case OpEnumerate:
		b = binary.BigEndian.AppendUint64(b, r.Cursor)
		b = binary.BigEndian.AppendUint16(b, r.Max)
	case OpPing:
	default:
		return b, fmt.Errorf("pwproto: cannot seal a request with op %d", r.Op)
	}
	return b, nil
}

func checkUser(u *User) error {
	if err := checkString("user name", u.Name, MaxName); err != nil {
		return err
	}
	if err := checkString("gecos", u.Gecos, MaxGecos); err != nil {
		return err
	}
	if err := checkString("shell", u.Shell, MaxShell); err != nil {
		return err
	}
	if err := checkString("home", u.Home, MaxHome); err != nil {
		return err
	}
	if err := checkString("storage host", u.Storage, MaxStorage); err != nil {
		return err
	}
	if u.State >= stateEnd {
		return fmt.Errorf("pwproto: user %q has invalid state %d", u.Name, u.State)
	}
	for _, a := range u.Aliases {
		if err := checkString("alias", a, MaxName); err != nil {
			return err
		}
	}
	return nil
}

func appendUser(b []byte, u *User) []byte {
	b = appendString(b, u.Name)
	b = binary.BigEndian.AppendUint32(b, u.UID)
	b = binary.BigEndian.AppendUint32(b, u.GID)
	b = appendString(b, u.Gecos)
	b = appendString(b, u.Shell)
	b = appendString(b, u.Home)
	b = appendString(b, u.Storage)
	b = binary.BigEndian.AppendUint64(b, uint64(u.Quota))
	b = append(b, byte(u.State))
	b = binary.AppendUvarint(b, uint64(len(u.Aliases)))
	for _, a := range u.Aliases {
		b = appendString(b, a)
	}
	return b
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func strLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

// userSize is the encoded size of u.
func userSize(u *User) int {
	n := strLen(u.Name) + 4 + 4 + strLen(u.Gecos) + strLen(u.Shell) + strLen(u.Home) +
		strLen(u.Storage) + 8 + 1 + uvarintLen(uint64(len(u.Aliases)))
	for _, a := range u.Aliases {
		n += strLen(a)
	}
	return n
}

// Room for the fixed part of an enumerate response: status, next cursor,
// and the user count (a uvarint; 2 bytes covers any count that fits).
const enumFixed = 1 + 8 + 2

// FitEnumerate returns how many leading users of us fit into one
// OpEnumerate response. The server pages with it: send us[:n] and set Next
// to the cursor after us[n-1]. SealResponse refuses (ErrTooBig) a page that
// does not fit rather than silently dropping users, because only the server
// knows what cursor follows the last user sent. A user that cannot fit
// alone (see FitUser) yields 0.
func FitEnumerate(us []User) int {
	room := maxBody - enumFixed
	for i := range us {
		room -= userSize(&us[i])
		if room < 0 {
			return i
		}
	}
	return len(us)
}

// maxUserSize is the room for one user in a lookup or auth response.
const maxUserSize = maxBody - 1

// gecosKeep is how much gecos FitUser keeps before it starts dropping
// aliases: the display name is worth more than a long tail of comments,
// while the aliases are only informational for clients (the server
// resolves aliases itself in OpLookupAddr).
const gecosKeep = 128

// FitUser returns u trimmed so that it fits into one response datagram;
// a user that already fits is returned unchanged. It trims in this order,
// stopping as soon as the record fits: gecos to MaxGecos, then gecos as
// far as needed but not below 128 bytes, aliases that exceed MaxName or
// contain NUL (they cannot be encoded), then the last aliases one by one,
// then gecos further. Cuts fall on UTF-8 boundaries.
// Name, shell, home and storage are never changed: their limits are small
// enough that a record of only them always fits. The server stores (or
// sends) the fitted copy; the full record stays in passwdd and over the
// admin channel.
func FitUser(u User) User {
	if userSize(&u) <= maxUserSize && len(u.Gecos) <= MaxGecos && aliasesOK(u.Aliases) {
		return u
	}
	if len(u.Gecos) > MaxGecos {
		u.Gecos = trimUTF8(u.Gecos, MaxGecos)
	}
	// Cutting `over` bytes of content shrinks the record by at least
	// `over`: the length prefix can only get shorter.
	if over := userSize(&u) - maxUserSize; over > 0 && len(u.Gecos) > gecosKeep {
		u.Gecos = trimUTF8(u.Gecos, max(gecosKeep, len(u.Gecos)-over))
	}
	if !aliasesOK(u.Aliases) {
		kept := make([]string, 0, len(u.Aliases))
		for _, a := range u.Aliases {
			if len(a) <= MaxName && strings.IndexByte(a, 0) < 0 {
				kept = append(kept, a)
			}
		}
		u.Aliases = kept
	}
	for userSize(&u) > maxUserSize && len(u.Aliases) > 0 {
		u.Aliases = u.Aliases[:len(u.Aliases)-1]
	}
	if over := userSize(&u) - maxUserSize; over > 0 {
		u.Gecos = trimUTF8(u.Gecos, max(0, len(u.Gecos)-over))
	}
	if len(u.Aliases) == 0 {
		u.Aliases = nil
	}
	return u
}

func aliasesOK(as []string) bool {
	for _, a := range as {
		if len(a) > MaxName || strings.IndexByte(a, 0) >= 0 {
			return false
		}
	}
	return true
}

// trimUTF8 cuts s to at most n bytes without splitting a UTF-8 sequence.
func trimUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func appendResponseBody(b []byte, r *Response) ([]byte, error) {
	if r.Status == 0 || r.Status >= statusEnd {
		return b, fmt.Errorf("pwproto: cannot seal a response with status %d", r.Status)
	}
	b = append(b, byte(r.Status))
	if r.Status != StatusOK {
		return b, nil
	}
	switch r.Op {
	case OpLookupName, OpLookupUID, OpLookupAddr, OpAuth:
		if err := checkUser(&r.User); err != nil {
			return b, err
		}
		b = appendUser(b, &r.User)
	case OpEnumerate:
		for i := range r.Users {
			if err := checkUser(&r.Users[i]); err != nil {
				return b, err
			}
		}
		if n := FitEnumerate(r.Users); n < len(r.Users) {
			return b, fmt.Errorf("%w: only %d of %d users fit in one enumerate response (page with FitEnumerate)", ErrTooBig, n, len(r.Users))
		}
		b = binary.BigEndian.AppendUint64(b, r.Next)
		b = binary.AppendUvarint(b, uint64(len(r.Users)))
		for i := range r.Users {
			b = appendUser(b, &r.Users[i])
		}
	case OpPing:
		if r.Ping.Role == 0 || r.Ping.Role >= roleEnd {
			return b, fmt.Errorf("pwproto: cannot seal a ping response with role %d", r.Ping.Role)
		}
		b = append(b, byte(r.Ping.Role))
		b = binary.BigEndian.AppendUint64(b, r.Ping.Epoch)
		b = binary.BigEndian.AppendUint64(b, r.Ping.Seq)
		b = binary.BigEndian.AppendUint64(b, r.Ping.Users)
	default:
		return b, fmt.Errorf("pwproto: cannot seal a response with op %d", r.Op)
	}
	return b, nil
}

// reader decodes a body. The first failure sticks, so decoders read every
// field and check ok once at the end.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() uint8 {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() uint16 {
	if len(r.b) < 2 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.bad = true
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

// str reads a string of at most limit bytes without NUL.
func (r *reader) str(limit int) string {
	n := r.uvarint()
	if r.bad || n > uint64(limit) || n > uint64(len(r.b)) {
		r.bad = true
		return ""
	}
	p := r.b[:n]
	for _, c := range p {
		if c == 0 {
			r.bad = true
			return ""
		}
	}
	r.b = r.b[n:]
	if n == 0 {
		return ""
	}
	return string(p)
}

// done reports whether the whole body was read without error: trailing
// bytes are malformed too, so one datagram has exactly one meaning.
func (r *reader) done() bool { return !r.bad && len(r.b) == 0 }

// decodeRequestBody fills the op-specific fields of q from body.
func decodeRequestBody(q *Request, body []byte) error {
	r := reader{b: body}
	switch q.Op {
	case OpLookupName:
		q.Name = r.str(MaxName)
	case OpLookupUID:
		q.UID = r.u32()
	case OpLookupAddr:
		q.Address = r.str(MaxAddress)
	case OpAuth:
		q.Name = r.str(MaxName)
		q.Password = r.str(MaxPassword)
		q.Client = r.str(MaxClient)
	case OpEnumerate:
		q.Cursor = r.u64()
		q.Max = r.u16()
	case OpPing:
	default:
		return ErrUnknownOp
	}
	if !r.done() {
		return ErrMalformed
	}
	return nil
}

func (r *reader) user(u *User) {
	u.Name = r.str(MaxName)
	u.UID = r.u32()
	u.GID = r.u32()
	u.Gecos = r.str(MaxGecos)
	u.Shell = r.str(MaxShell)
	u.Home = r.str(MaxHome)
	u.Storage = r.str(MaxStorage)
	u.Quota = int64(r.u64())
	u.State = State(r.u8())
	if u.State >= stateEnd {
		r.bad = true
	}
	n := r.uvarint()
	// Every alias takes at least one byte, so a count beyond the bytes
	// left is a lie; checking first keeps a forged count from allocating.
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		return
	}
	if n > 0 {
		u.Aliases = make([]string, n)
		for i := range u.Aliases {
			u.Aliases[i] = r.str(MaxName)
		}
	}
}

// decodeResponseBody fills the status and op-specific fields of p.
func decodeResponseBody(p *Response, body []byte) error {
	if p.Op == 0 || p.Op >= opEnd {
		return ErrUnknownOp
	}
	r := reader{b: body}
	p.Status = Status(r.u8())
	if p.Status == 0 || p.Status >= statusEnd {
		return ErrMalformed
	}
	if p.Status == StatusOK {
		switch p.Op {
		case OpLookupName, OpLookupUID, OpLookupAddr, OpAuth:
			r.user(&p.User)
		case OpEnumerate:
			p.Next = r.u64()
			n := r.uvarint()
			if r.bad || n > uint64(len(r.b)) {
				return ErrMalformed
			}
			if n > 0 {
				p.Users = make([]User, n)
				for i := range p.Users {
					r.user(&p.Users[i])
				}
			}
		case OpPing:
			p.Ping.Role = Role(r.u8())
			if p.Ping.Role == 0 || p.Ping.Role >= roleEnd {
				return ErrMalformed
			}
			p.Ping.Epoch = r.u64()
			p.Ping.Seq = r.u64()
			p.Ping.Users = r.u64()
		}
	}
	if !r.done() {
		return ErrMalformed
	}
	return nil
}
