package smtpd

import (
	"strings"

	"correo/src/cluster"
	"correo/src/delivery"
	"correo/src/queue"
)

// Destination is where a recipient address points.
type Destination int

const (
	// Refused: the address is bad or a relay trick; see the reply.
	Refused Destination = iota
	// Local: one of the cluster's domains (still to be looked up).
	Local
	// Remote: another domain; only the relay role may accept it.
	Remote
)

// Reply is an SMTP reply for a refused address.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
	// Reason says why, for the log.
	Reason string
}

// relayDenied is the one reply for every attempt to use the MX as a relay.
func relayDenied(reason string) *Reply {
	return &Reply{Code: 554, Enhanced: "5.7.1", Text: "relay access denied", Reason: reason}
}

// Classify decides where a RCPT TO address (as go-smtp hands it over:
// brackets and any source route removed, a quoted local part unquoted)
// points, or why it is refused. The relay tricks are refused here, before
// any lookup, whatever the domain:
//
//   - user%other@domain and other!user@domain: the percent hack and UUCP
//     bang paths, which old MTAs forwarded to "other";
//   - "user@other"@domain: after unquoting the local part holds an '@';
//   - @a:user@b: go-smtp drops the source route (RFC 5321 §3.6.1 says to
//     ignore it), so what remains is judged like any address: user@b is
//     local or not by its own domain.
//
// A syntactically bad address is 501 5.1.3 (delivery.CheckPath: correo's
// one address grammar).
func Classify(p *cluster.Profile, addr string) (Destination, *Reply) {
	at := strings.LastIndexByte(addr, '@')
	if at > 0 {
		local := addr[:at]
		if strings.ContainsAny(local, "@%!") {
			return Refused, relayDenied("routing characters in the local part of " + quote(addr))
		}
	}
	if err := delivery.CheckPath(addr, false); err != nil {
		ae := err.(*delivery.AddrError)
		return Refused, &Reply{Code: ae.Code, Enhanced: ae.Enhanced, Text: ae.Text, Reason: ae.Reason}
	}
	domain := addr[at+1:]
	if p.IsLocalDomain(domain) {
		return Local, nil
	}
	return Remote, nil
}

// quote makes an address safe for a log attribute.
func quote(s string) string {
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = '?'
		}
	}
	return string(b)
}

// QueueRoute is the queue's routing for a profile: recipients at the
// cluster's domains go to storage, others (relay role) to their domain's
// MX hosts.
func QueueRoute(p *cluster.Profile) func(addr string) queue.Route {
	return func(addr string) queue.Route {
		if d, _ := Classify(p, addr); d == Remote {
			return queue.RouteRemote
		}
		return queue.RouteLocal
	}
}
