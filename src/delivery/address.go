package delivery

import (
	"fmt"
	"strings"

	"correo/src/cluster"
	"correo/src/mailbox"
)

// MaxPathLen is the longest envelope address accepted, in bytes: RFC 5321
// §4.5.3.1.3 allows 256 octets for a path including the angle brackets.
const MaxPathLen = 254

// AddrError is an envelope address that cannot be delivered, with the
// reply an SMTP or LMTP server gives for it. Servers (pdeliveryd, smtpd)
// send Code/Enhanced/Text as is; clients turn it into a Permanent result.
type AddrError struct {
	Addr     string
	Code     int    // 501 or 550
	Enhanced string // "5.1.3", "5.1.1", "5.1.2"
	Text     string // the reply text, safe to send (no control characters)
	// Reason says what exactly was wrong, for the log; it may quote the
	// address.
	Reason string
}

func (e *AddrError) Error() string {
	return fmt.Sprintf("%d %s %s (%s)", e.Code, e.Enhanced, e.Text, e.Reason)
}

// CheckPath checks the syntax of an envelope address as it travels in
// MAIL FROM and RCPT TO: local@domain, printable ASCII, no spaces or angle
// brackets, at most MaxPathLen bytes. The empty string (the null sender)
// is accepted only when null is true. It is deliberately stricter than
// RFC 5321 (no quoted local parts, no source routes): every address
// correo delivers to is a user name or alias, which are plain atoms.
func CheckPath(addr string, null bool) error {
	bad := func(reason string) error {
		return &AddrError{Addr: addr, Code: 501, Enhanced: "5.1.3", Text: "bad address syntax", Reason: reason}
	}
	if addr == "" {
		if null {
			return nil
		}
		return bad("empty address")
	}
	if len(addr) > MaxPathLen {
		return bad(fmt.Sprintf("address is %d bytes, more than %d", len(addr), MaxPathLen))
	}
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		if c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"' || c == '\\' || c == ',' || c == ';' || c == '(' || c == ')' {
			return bad(fmt.Sprintf("byte 0x%02x at offset %d is not allowed in an address", c, i))
		}
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return bad("expected local@domain")
	}
	if strings.IndexByte(addr[:at], '@') >= 0 {
		return bad("more than one '@'")
	}
	if !validDomain(addr[at+1:]) {
		return bad("domain is not a host name")
	}
	return nil
}

func validDomain(d string) bool {
	if d == "" || len(d) > 253 || d[0] == '.' || d[len(d)-1] == '.' || strings.Contains(d, "..") {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Local is a recipient at one of the cluster's domains, split and
// normalised.
type Local struct {
	// User is the local part without any +detail, normalised by
	// mailbox.NormalizeName: safe in a path and as a lookup key. It may be
	// an alias; passwdd resolves it to the user's name.
	User string
	// Detail is what followed the first '+' ("" if none).
	Detail string
	// Domain is the cluster domain as the profile spells it.
	Domain string
}

// Key is what passwdd's LookupAddr is asked: user@domain, normalised.
func (l Local) Key() string { return l.User + "@" + l.Domain }

// ParseLocal checks a recipient address and splits it. Errors are
// *AddrError: 501 5.1.3 for bad syntax, 550 5.1.2 for a domain that is
// not the cluster's, 550 5.1.1 for a local part that cannot be a user
// name (it could never be found, so "no such user" is the truthful answer;
// the reason says why for the log).
func ParseLocal(p *cluster.Profile, addr string) (Local, error) {
	if err := CheckPath(addr, false); err != nil {
		return Local{}, err
	}
	at := strings.LastIndexByte(addr, '@')
	local, domain := addr[:at], addr[at+1:]
	if !p.IsLocalDomain(domain) {
		return Local{}, &AddrError{Addr: addr, Code: 550, Enhanced: "5.1.2", Text: "not a domain of this cluster",
			Reason: "domain " + domain + " is not in cluster.domains"}
	}
	for _, d := range p.Cluster.Domains {
		if strings.EqualFold(d, domain) {
			domain = d
			break
		}
	}
	var detail string
	if plus := strings.IndexByte(local, '+'); plus > 0 {
		local, detail = local[:plus], local[plus+1:]
	}
	user, err := mailbox.NormalizeName(local)
	if err != nil {
		return Local{}, &AddrError{Addr: addr, Code: 550, Enhanced: "5.1.1", Text: "no such user", Reason: err.Error()}
	}
	return Local{User: user, Detail: detail, Domain: domain}, nil
}

// The reply a storage host gives for a user whose mailbox lives on another
// host. Clients (this package's Deliverer, pdelivery without a cluster key)
// re-route on it, so its text is part of the protocol between correo hosts:
// change StoredElsewhere and ParseStoredElsewhere together.
const (
	storedOn = " is stored on "
	notHere  = ", not here"
)

// StoredElsewhere is the reply text (after "451 4.3.0 ") saying that user
// lives on host.
func StoredElsewhere(user, host string) string {
	return "<" + user + ">" + storedOn + host + notHere
}

// ParseStoredElsewhere finds the host named by a StoredElsewhere reply
// text; ok is false for any other text.
func ParseStoredElsewhere(text string) (host string, ok bool) {
	i := strings.Index(text, storedOn)
	if i < 0 {
		return "", false
	}
	rest := text[i+len(storedOn):]
	j := strings.Index(rest, notHere)
	if j <= 0 {
		return "", false
	}
	host = rest[:j]
	if strings.ContainsAny(host, " \t<>") {
		return "", false
	}
	return host, true
}

// CleanHelo keeps a client's HELO, EHLO or LHLO argument safe for a
// Received header and a log line: characters of host names and address
// literals only, at most 255 of them. smtpd and pdeliveryd both use it.
func CleanHelo(h string) string {
	b := []byte(h)
	if len(b) > 255 {
		b = b[:255]
	}
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(".-_:[]", c) >= 0) {
			b[i] = '?'
		}
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}
