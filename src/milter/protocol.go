package milter

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The wire format (Sendmail's libmilter, protocol version 6): every
// packet is a 4-byte big-endian length, a command or response byte, and
// length-1 bytes of data. Strings are NUL-terminated.

// protoVersion is the protocol version correo speaks (Sendmail 8.14+,
// Postfix, rspamd's minimum).
const protoVersion = 6

// maxResponse bounds the length a milter may announce for one response
// packet. libmilter's own largest data size is 1 MB (SMFIP_MDS_1M); a
// longer announcement is garbage and is refused before anything is
// allocated.
const maxResponse = 1<<20 + 64

// maxChunk is the largest body chunk (and header packet) sent: libmilter's
// MILTER_CHUNK_SIZE. Older milters refuse longer packets.
const maxChunk = 65535

// Commands, MTA to milter.
const (
	cmdAbort   = 'A'
	cmdBody    = 'B'
	cmdConnect = 'C'
	cmdMacro   = 'D'
	cmdEOB     = 'E'
	cmdHelo    = 'H'
	cmdHeader  = 'L'
	cmdMail    = 'M'
	cmdEOH     = 'N'
	cmdOptneg  = 'O'
	cmdQuit    = 'Q'
	cmdRcpt    = 'R'
	cmdData    = 'T'
)

// Responses, milter to MTA.
const (
	respAddRcpt    = '+'
	respDelRcpt    = '-'
	respAddRcptPar = '2'
	respShutdown   = '4'
	respAccept     = 'a'
	respReplBody   = 'b'
	respContinue   = 'c'
	respDiscard    = 'd'
	respChgFrom    = 'e'
	respConnFail   = 'f'
	respAddHeader  = 'h'
	respInsHeader  = 'i'
	respSetSymList = 'l'
	respChgHeader  = 'm'
	respOptneg     = 'O'
	respProgress   = 'p'
	respQuarantine = 'q'
	respReject     = 'r'
	respSkip       = 's'
	respTempfail   = 't'
	respReplyCode  = 'y'
)

// Actions (SMFIF_*) an MTA allows a milter.
const (
	actAddHeaders = 0x01 // add and insert headers
	actChgBody    = 0x02
	actAddRcpt    = 0x04
	actDelRcpt    = 0x08
	actChgHeaders = 0x10 // change and delete headers
	actQuarantine = 0x20
	actChgFrom    = 0x40
)

// offeredActions are the modifications correo applies: header edits and
// quarantine. Body replacement and envelope changes are not offered
// (see the package comment).
const offeredActions = actAddHeaders | actChgHeaders | actQuarantine

// Protocol flags (SMFIP_*): steps a milter may skip, replies it may omit.
const (
	protoNoConnect = 0x01
	protoNoHelo    = 0x02
	protoNoMail    = 0x04
	protoNoRcpt    = 0x08
	protoNoBody    = 0x10
	protoNoHeaders = 0x20
	protoNoEOH     = 0x40
	protoNRHeader  = 0x80
	protoNoUnknown = 0x100
	protoNoData    = 0x200
	protoSkip      = 0x400
	protoNRConn    = 0x1000
	protoNRHelo    = 0x2000
	protoNRMail    = 0x4000
	protoNRRcpt    = 0x8000
	protoNRData    = 0x10000
	protoNRUnknown = 0x20000
	protoNREOH     = 0x40000
	protoNRBody    = 0x80000
)

// offeredProtocol: every step may be skipped and every reply but the
// end of message's omitted. SMFIP_RCPT_REJ (correo only passes accepted
// recipients), SMFIP_HDR_LEADSPC and the data size flags are not offered.
const offeredProtocol = protoNoConnect | protoNoHelo | protoNoMail | protoNoRcpt | protoNoBody | protoNoHeaders |
	protoNoEOH | protoNRHeader | protoNoUnknown | protoNoData | protoSkip | protoNRConn | protoNRHelo |
	protoNRMail | protoNRRcpt | protoNRData | protoNRUnknown | protoNREOH | protoNRBody

// errProtocol marks a milter's answer that breaks the protocol.
var errProtocol = errors.New("protocol error")

func protoErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, a...))
}

// packet is one command or response.
type packet struct {
	code byte
	data []byte
}

// appendPacket appends p's wire form to b.
func appendPacket(b []byte, code byte, data ...[]byte) []byte {
	n := 1
	for _, d := range data {
		n += len(d)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, code)
	for _, d := range data {
		b = append(b, d...)
	}
	return b
}

// readPacket reads one response. The announced length is checked before
// anything is allocated; buf is reused when large enough.
func readPacket(r *bufio.Reader, buf []byte) (packet, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return packet{}, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return packet{}, buf, protoErr("empty packet")
	}
	if n > maxResponse {
		return packet{}, buf, protoErr("packet of %d bytes announced (limit %d)", n, maxResponse)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return packet{}, buf, err
	}
	return packet{code: buf[0], data: buf[1:]}, buf, nil
}

// cstring returns the NUL-terminated string at the start of b and the
// rest after the NUL; ok is false when there is no NUL.
func cstring(b []byte) (s string, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", b, false
}

// untilNUL is b up to its first NUL, or all of b.
func untilNUL(b []byte) string {
	s, _, ok := cstring(b)
	if !ok {
		return string(b)
	}
	return s
}

// optneg is the milter's answer to option negotiation.
type optneg struct {
	version  uint32
	actions  uint32
	protocol uint32
}

func parseOptneg(p packet) (optneg, error) {
	if p.code != respOptneg {
		return optneg{}, protoErr("answer %s to option negotiation", codeName(p.code))
	}
	if len(p.data) < 12 {
		return optneg{}, protoErr("option negotiation of %d bytes", len(p.data))
	}
	// Anything after the three words (SMFIR_SETSYMLIST's macro lists,
	// which correo did not offer) is ignored.
	o := optneg{
		version:  binary.BigEndian.Uint32(p.data[0:]),
		actions:  binary.BigEndian.Uint32(p.data[4:]),
		protocol: binary.BigEndian.Uint32(p.data[8:]),
	}
	if o.version < 2 || o.version > protoVersion {
		return optneg{}, protoErr("milter protocol version %d (correo speaks 2 to %d)", o.version, protoVersion)
	}
	return o, nil
}

// response is one parsed milter response.
type response struct {
	code   byte
	reply  reply        // respReplyCode
	change HeaderChange // respAddHeader, respInsHeader, respChgHeader
	reason string       // respQuarantine
}

// parseResponse parses any response but option negotiation. Codes it
// does not know, and known codes with malformed data, are protocol
// errors.
func parseResponse(p packet) (response, error) {
	r := response{code: p.code}
	switch p.code {
	case respAccept, respContinue, respDiscard, respReject, respTempfail, respSkip, respProgress,
		respShutdown, respConnFail:
		// No data expected; libmilter sends none, and extra bytes are
		// harmless.
	case respReplyCode:
		rp, err := parseReply(p.data)
		if err != nil {
			return r, err
		}
		r.reply = rp
	case respQuarantine:
		r.reason = cleanText(untilNUL(p.data), 512)
	case respAddHeader, respInsHeader, respChgHeader:
		c, err := parseHeaderChange(p.code, p.data)
		if err != nil {
			return r, err
		}
		r.change = c
	case respReplBody, respAddRcpt, respDelRcpt, respAddRcptPar, respChgFrom:
		// Modifications correo does not apply; the caller logs and
		// ignores them.
	default:
		return r, protoErr("unknown response %s", codeName(p.code))
	}
	return r, nil
}

// parseHeaderChange parses SMFIR_ADDHEADER (name, value),
// SMFIR_INSHEADER and SMFIR_CHGHEADER (index, name, value).
func parseHeaderChange(code byte, data []byte) (HeaderChange, error) {
	var c HeaderChange
	switch code {
	case respAddHeader:
		c.Op = Add
	case respInsHeader, respChgHeader:
		if len(data) < 4 {
			return c, protoErr("header change without an index")
		}
		idx := binary.BigEndian.Uint32(data)
		if idx > 1<<20 {
			idx = 1 << 20 // any index past the end means the end
		}
		c.Index = int(idx)
		data = data[4:]
		c.Op = Insert
		if code == respChgHeader {
			c.Op = Change
		}
	}
	name, rest, ok := cstring(data)
	if !ok {
		return c, protoErr("header change without a NUL after the name")
	}
	// The value's NUL is required by the protocol but forgiven, as
	// Sendmail does; nothing may follow it.
	value, rest, ok := cstring(rest)
	if !ok {
		value, rest = string(rest), nil
	}
	if len(rest) != 0 {
		return c, protoErr("%d bytes after a header change", len(rest))
	}
	if !validName(name) {
		return c, protoErr("header change with the invalid name %q", truncate(name, 80))
	}
	c.Name = name
	if c.Op == Change && value == "" {
		c.Op = Delete
		return c, nil
	}
	v, err := normalizeValue(value)
	if err != nil {
		return c, protoErr("header %s: %v", name, err)
	}
	c.Value = v
	return c, nil
}

// validName: a field name is 1 to 256 printable ASCII characters other
// than the colon (RFC 5322 ftext).
func validName(s string) bool {
	if len(s) == 0 || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// normalizeValue checks a header value from a milter and returns it with
// its line breaks as "\n". Milters send folded values with LF or CRLF
// breaks; every line after the first must start with a space or tab, or
// the value would end the header block or start a new field. Control
// characters other than tab are refused.
func normalizeValue(v string) (string, error) {
	v = strings.ReplaceAll(v, "\r\n", "\n")
	lines := strings.Split(v, "\n")
	for i, l := range lines {
		if i > 0 && (l == "" || (l[0] != ' ' && l[0] != '\t')) {
			return "", errors.New("a folded line does not start with white space")
		}
		for j := 0; j < len(l); j++ {
			if c := l[j]; (c < 32 && c != '\t') || c == 127 {
				return "", fmt.Errorf("control character 0x%02x in the value", c)
			}
		}
	}
	return v, nil
}

// reply is an SMTP reply a milter asked for.
type reply struct {
	code     int
	enhanced string
	text     string
}

// parseReply parses SMFIR_REPLYCODE: "550 5.7.1 text", or a multi-line
// reply as libmilter's smfi_setmlreply builds it ("550-5.7.1 one\r\n550
// 5.7.1 two"). The code must be 4xx or 5xx. The enhanced code is kept
// only when its class matches the reply code's; a missing one becomes
// x.7.1. "%%" (libmilter doubles '%') becomes "%". Lines' texts are
// joined with "\n", control characters dropped; no text means a default.
func parseReply(data []byte) (reply, error) {
	s := strings.TrimRight(untilNUL(data), "\r\n")
	var r reply
	var texts []string
	for i, line := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		if len(line) < 3 {
			return r, protoErr("reply line %q too short", truncate(line, 80))
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || line[0] < '0' || line[0] > '9' || code < 400 || code > 599 {
			return r, protoErr("reply code %q (a milter may only answer 4xx or 5xx)", truncate(line[:3], 10))
		}
		if i == 0 {
			r.code = code
		} else if code != r.code {
			return r, protoErr("multi-line reply with codes %d and %d", r.code, code)
		}
		rest := line[3:]
		if rest != "" {
			if rest[0] != ' ' && rest[0] != '-' {
				return r, protoErr("reply line %q: no space after the code", truncate(line, 80))
			}
			rest = rest[1:]
		}
		if enh, after, ok := splitEnhanced(rest); ok {
			if enh[0] == line[0] {
				if r.enhanced == "" {
					r.enhanced = enh
				}
			}
			rest = after
		}
		rest = strings.ReplaceAll(rest, "%%", "%")
		if t := cleanText(rest, 512); t != "" {
			texts = append(texts, t)
		}
		if len(texts) >= 16 {
			break
		}
	}
	r.text = strings.Join(texts, "\n")
	if r.enhanced == "" {
		r.enhanced = fmt.Sprintf("%c.7.1", '0'+r.code/100)
	}
	if r.text == "" {
		if r.code >= 500 {
			r.text = defaultRejectText
		} else {
			r.text = defaultTempfailText
		}
	}
	return r, nil
}

// splitEnhanced splits an RFC 3463 code ("5.7.1") off the start of s.
func splitEnhanced(s string) (enh, rest string, ok bool) {
	end := strings.IndexByte(s, ' ')
	if end < 0 {
		end = len(s)
	}
	parts := strings.Split(s[:end], ".")
	if len(parts) != 3 || len(parts[0]) != 1 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return "", s, false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return "", s, false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return "", s, false
			}
		}
	}
	return s[:end], strings.TrimLeft(s[end:], " "), true
}

// cleanText keeps printable text (valid UTF-8, no control characters),
// at most max bytes, trimmed of surrounding spaces.
func cleanText(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || r < 32 || r == 127 {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// codeName names a packet code for error messages.
func codeName(c byte) string {
	if c >= 33 && c <= 126 {
		return fmt.Sprintf("'%c'", c)
	}
	return fmt.Sprintf("0x%02x", c)
}
