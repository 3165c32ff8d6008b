// Package proxyproto encodes and decodes the PROXY protocol version 2
// header (HAProxy's specification, binary form only): the few bytes a
// proxy sends first on a connection to tell the server who the real
// client is. mailproxy sends it to pop3d; pop3d accepts it only from the
// profile's mailproxy hosts, because whoever may send it may claim to be
// any address.
//
// Version 1 (the text form) is not accepted: nothing in correo sends it,
// and every parser is attack surface.
package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Signature is the fixed 12-byte start of every v2 header. It begins with
// CRLF CRLF NUL, which no text protocol's first line can, so a server can
// tell a header from a client command by its first bytes.
var Signature = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// Commands (low nibble of the version/command byte).
const (
	CmdLocal = 0x0 // health checks by the proxy itself: no addresses
	CmdProxy = 0x1 // a relayed connection: addresses follow
)

// Address families and transports (the family/transport byte).
const (
	famUnspec = 0x00
	famTCP4   = 0x11
	famTCP6   = 0x21
)

// TLV types used by correo (the specification's numbering).
const (
	TypeUniqueID = 0x05 // opaque id of the connection: correo's trace id
	TypeSSL      = 0x20 // the client connection used TLS
	// TypeTicket (in the range the specification leaves to
	// applications) carries mailproxy's sealed login ticket (src/ticket).
	TypeTicket = 0xE1
)

// MaxTLVBytes bounds the TLV section a decoder accepts. The length field
// allows 65535 bytes; correo sends well under a hundred, and a peer that
// sends more is broken or hostile.
const MaxTLVBytes = 1024

// maxUniqueID is the specification's limit for PP2_TYPE_UNIQUE_ID.
const maxUniqueID = 128

// Header is a decoded or to-be-encoded header.
type Header struct {
	// Local is a LOCAL command: the connection is the proxy's own and
	// Source/Dest are unset.
	Local bool
	// Source is the real client, Dest the address it connected to.
	Source, Dest netip.AddrPort
	// UniqueID is an opaque connection id (at most 128 bytes).
	UniqueID string
	// TLS says the client's connection to the proxy was encrypted.
	TLS bool
	// Ticket is an opaque login ticket (at most maxTicket bytes).
	Ticket []byte
}

// maxTicket bounds the ticket TLV.
const maxTicket = 512

// Errors a decoder returns, wrapped with detail.
var (
	ErrNoSignature = errors.New("proxyproto: not a PROXY v2 header")
	ErrMalformed   = errors.New("proxyproto: malformed PROXY v2 header")
)

// Encode returns the header's bytes: TCP over IPv4 when both addresses are
// IPv4 (or IPv4-mapped), else TCP over IPv6.
func (h Header) Encode() ([]byte, error) {
	var b bytes.Buffer
	b.Write(Signature[:])
	var addrs []byte
	fam := byte(famUnspec)
	cmd := byte(CmdLocal)
	if !h.Local {
		cmd = CmdProxy
		src, dst := h.Source.Addr().Unmap(), h.Dest.Addr().Unmap()
		switch {
		case src.Is4() && dst.Is4():
			fam = famTCP4
			a, d := src.As4(), dst.As4()
			addrs = append(append(addrs, a[:]...), d[:]...)
		case src.IsValid() && dst.IsValid():
			// IPv6, or one side IPv4: both as IPv6 (IPv4-mapped).
			fam = famTCP6
			a, d := src.As16(), dst.As16()
			addrs = append(append(addrs, a[:]...), d[:]...)
		default:
			return nil, fmt.Errorf("proxyproto: source %v or destination %v is not an address", h.Source, h.Dest)
		}
		addrs = binary.BigEndian.AppendUint16(addrs, h.Source.Port())
		addrs = binary.BigEndian.AppendUint16(addrs, h.Dest.Port())
	}
	var tlvs []byte
	if h.UniqueID != "" {
		if len(h.UniqueID) > maxUniqueID {
			return nil, fmt.Errorf("proxyproto: unique id of %d bytes, more than %d", len(h.UniqueID), maxUniqueID)
		}
		tlvs = appendTLV(tlvs, TypeUniqueID, []byte(h.UniqueID))
	}
	if len(h.Ticket) > 0 {
		if len(h.Ticket) > maxTicket {
			return nil, fmt.Errorf("proxyproto: ticket of %d bytes, more than %d", len(h.Ticket), maxTicket)
		}
		tlvs = appendTLV(tlvs, TypeTicket, h.Ticket)
	}
	if h.TLS {
		// PP2_CLIENT_SSL set, verify = 0 (no client certificate asked),
		// no sub-TLVs.
		tlvs = appendTLV(tlvs, TypeSSL, []byte{0x01, 0, 0, 0, 0})
	}
	b.WriteByte(0x20 | cmd)
	b.WriteByte(fam)
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(addrs)+len(tlvs)))
	b.Write(l[:])
	b.Write(addrs)
	b.Write(tlvs)
	return b.Bytes(), nil
}

func appendTLV(b []byte, typ byte, v []byte) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// HasSignature reports whether the reader's next bytes are the v2
// signature, reading no more than needed to decide: it peeks one byte at a
// time, so a client that sent a short command line and waits for an
// answer is told apart at its first byte instead of blocking until twelve
// bytes arrive. Nothing is consumed.
func HasSignature(r *bufio.Reader) (bool, error) {
	for i := range Signature {
		b, err := r.Peek(i + 1)
		if err != nil {
			return false, err
		}
		if b[i] != Signature[i] {
			return false, nil
		}
	}
	return true, nil
}

// Read decodes one header from r, consuming exactly its bytes.
func Read(r io.Reader) (Header, error) {
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Header{}, fmt.Errorf("%w: truncated", ErrMalformed)
		}
		return Header{}, err
	}
	if !bytes.Equal(fixed[:12], Signature[:]) {
		return Header{}, ErrNoSignature
	}
	n := int(binary.BigEndian.Uint16(fixed[14:16]))
	if n > 36+MaxTLVBytes {
		return Header{}, fmt.Errorf("%w: %d bytes of addresses and TLVs, more than %d", ErrMalformed, n, 36+MaxTLVBytes)
	}
	rest := make([]byte, n)
	if _, err := io.ReadFull(r, rest); err != nil {
		return Header{}, fmt.Errorf("%w: truncated after %d of %d bytes: %v", ErrMalformed, 16, 16+n, err)
	}
	return parse(fixed[12], fixed[13], rest)
}

// Decode decodes a header held whole in b and returns how many bytes it
// took.
func Decode(b []byte) (Header, int, error) {
	if len(b) < 16 {
		if len(b) >= 12 && !bytes.Equal(b[:12], Signature[:]) {
			return Header{}, 0, ErrNoSignature
		}
		return Header{}, 0, fmt.Errorf("%w: %d bytes, a header has at least 16", ErrMalformed, len(b))
	}
	if !bytes.Equal(b[:12], Signature[:]) {
		return Header{}, 0, ErrNoSignature
	}
	n := int(binary.BigEndian.Uint16(b[14:16]))
	if n > 36+MaxTLVBytes {
		return Header{}, 0, fmt.Errorf("%w: %d bytes of addresses and TLVs, more than %d", ErrMalformed, n, 36+MaxTLVBytes)
	}
	if len(b) < 16+n {
		return Header{}, 0, fmt.Errorf("%w: truncated: %d of %d bytes", ErrMalformed, len(b), 16+n)
	}
	h, err := parse(b[12], b[13], b[16:16+n])
	if err != nil {
		return Header{}, 0, err
	}
	return h, 16 + n, nil
}

func parse(verCmd, fam byte, rest []byte) (Header, error) {
	if verCmd>>4 != 2 {
		return Header{}, fmt.Errorf("%w: version %d, only 2 is supported", ErrMalformed, verCmd>>4)
	}
	var h Header
	switch verCmd & 0x0F {
	case CmdLocal:
		// The specification: the receiver must ignore the address block
		// of a LOCAL header and use the real connection's endpoints.
		h.Local = true
		return h, nil
	case CmdProxy:
	default:
		return Header{}, fmt.Errorf("%w: unknown command 0x%x", ErrMalformed, verCmd&0x0F)
	}
	var alen int
	switch fam {
	case famTCP4:
		alen = 12
		if len(rest) < alen {
			return Header{}, fmt.Errorf("%w: %d bytes for TCP over IPv4 addresses, need 12", ErrMalformed, len(rest))
		}
		src := netip.AddrFrom4([4]byte(rest[0:4]))
		dst := netip.AddrFrom4([4]byte(rest[4:8]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(rest[8:10]))
		h.Dest = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(rest[10:12]))
	case famTCP6:
		alen = 36
		if len(rest) < alen {
			return Header{}, fmt.Errorf("%w: %d bytes for TCP over IPv6 addresses, need 36", ErrMalformed, len(rest))
		}
		src := netip.AddrFrom16([16]byte(rest[0:16]))
		dst := netip.AddrFrom16([16]byte(rest[16:32]))
		// Two IPv4-mapped addresses are an IPv4 connection seen by an
		// IPv6 socket; one alone stays as sent.
		if src.Is4In6() && dst.Is4In6() {
			src, dst = src.Unmap(), dst.Unmap()
		}
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(rest[32:34]))
		h.Dest = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(rest[34:36]))
	default:
		// UDP, Unix sockets and UNSPEC with PROXY make no sense for a
		// relayed POP3 connection.
		return Header{}, fmt.Errorf("%w: address family/transport 0x%02x is not TCP over IPv4 or IPv6", ErrMalformed, fam)
	}
	tlvs := rest[alen:]
	for len(tlvs) > 0 {
		if len(tlvs) < 3 {
			return Header{}, fmt.Errorf("%w: %d stray bytes after the last TLV", ErrMalformed, len(tlvs))
		}
		typ, l := tlvs[0], int(binary.BigEndian.Uint16(tlvs[1:3]))
		if len(tlvs) < 3+l {
			return Header{}, fmt.Errorf("%w: TLV 0x%02x of %d bytes overruns the header", ErrMalformed, typ, l)
		}
		v := tlvs[3 : 3+l]
		switch typ {
		case TypeUniqueID:
			if l > maxUniqueID {
				return Header{}, fmt.Errorf("%w: unique id of %d bytes, more than %d", ErrMalformed, l, maxUniqueID)
			}
			h.UniqueID = string(v)
		case TypeTicket:
			if l > maxTicket {
				return Header{}, fmt.Errorf("%w: ticket of %d bytes, more than %d", ErrMalformed, l, maxTicket)
			}
			h.Ticket = append([]byte(nil), v...)
		case TypeSSL:
			if l < 5 {
				return Header{}, fmt.Errorf("%w: SSL TLV of %d bytes, need at least 5", ErrMalformed, l)
			}
			h.TLS = v[0]&0x01 != 0
		}
		// Other types (ALPN, authority, CRC32C, NOOP, ...) are allowed
		// and ignored, as the specification asks.
		tlvs = tlvs[3+l:]
	}
	return h, nil
}
