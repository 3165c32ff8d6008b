package imapmsg

import (
	"net/mail"
	"strings"
	"time"
)

// Envelope is RFC 9051's ENVELOPE: strings as they are in the header
// (unfolded, encoded words not decoded), NIL for a missing field.
type Envelope struct {
	Date, Subject                      NString
	From, Sender, ReplyTo, To, Cc, Bcc []Address
	InReplyTo, MessageID               NString
}

// Envelope of the message.
func (m *Message) Envelope() Envelope { return envelopeOf(&m.h) }

func envelopeOf(h *header) Envelope {
	var e Envelope
	str := func(name string) NString {
		v, ok := h.value(name)
		return NString{v, ok}
	}
	addrs := func(name string) []Address {
		v, ok := h.value(name)
		if !ok {
			return nil
		}
		return ParseAddressList(v)
	}
	e.Date = str("Date")
	e.Subject = str("Subject")
	e.From = addrs("From")
	e.Sender = addrs("Sender")
	e.ReplyTo = addrs("Reply-To")
	e.To = addrs("To")
	e.Cc = addrs("Cc")
	e.Bcc = addrs("Bcc")
	e.InReplyTo = str("In-Reply-To")
	e.MessageID = str("Message-ID")
	// RFC 9051: an absent or empty Sender or Reply-To is the From.
	if len(e.Sender) == 0 {
		e.Sender = e.From
	}
	if len(e.ReplyTo) == 0 {
		e.ReplyTo = e.From
	}
	return e
}

// HeaderValues returns every value of the named top-level header field,
// unfolded and with encoded words decoded to UTF-8, for SEARCH HEADER,
// FROM, SUBJECT and the like.
func (m *Message) HeaderValues(name string) []string {
	var out []string
	for i := range m.h.fields {
		if m.h.fields[i].Name != "" && strings.EqualFold(m.h.fields[i].Name, name) {
			out = append(out, decode2047(unfold(m.h.fields[i].Value)))
		}
	}
	return out
}

// Date is the sent date from the Date header (SEARCH SENTBEFORE and
// friends). ok is false when there is none or it cannot be read even
// leniently; RFC 9051 then lets the server use the internal date.
func (m *Message) Date() (time.Time, bool) {
	v, ok := m.h.value("Date")
	if !ok {
		return time.Time{}, false
	}
	return parseDate(v)
}

// dateLayouts are the shapes seen in real mail that net/mail refuses.
var dateLayouts = []string{
	"2 Jan 2006 15:04:05 -0700",
	"2 Jan 2006 15:04 -0700",
	"2 Jan 2006 15:04:05 MST",
	"2 Jan 06 15:04:05 -0700",
	"Jan 2 15:04:05 2006",
	"2006-01-02 15:04:05 -0700",
	time.RFC3339,
}

func parseDate(v string) (time.Time, bool) {
	if t, err := mail.ParseDate(v); err == nil {
		return t, true
	}
	s := v
	if i := strings.IndexByte(s, '('); i >= 0 {
		s = s[:i]
	}
	s = strings.Join(strings.Fields(s), " ")
	if i := strings.IndexByte(s, ','); i >= 0 && i < 10 {
		s = strings.TrimSpace(s[i+1:])
	} else if len(s) > 4 && s[3] == ' ' && isAlpha(s[:3]) && !isMonth(s[:3]) {
		s = s[4:] // a weekday without its comma
	}
	for _, l := range dateLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

func isMonth(s string) bool {
	return strings.Contains("jan feb mar apr may jun jul aug sep oct nov dec", strings.ToLower(s))
}
