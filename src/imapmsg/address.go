package imapmsg

import "strings"

// Address is one ENVELOPE address: (name adl mailbox host). A group is
// written as a start marker {Mailbox: group name, Host: NIL} and an end
// marker with all four NIL, as RFC 9051 section 7.5.2 says.
type Address struct {
	Name, ADL, Mailbox, Host NString
}

// NString is an IMAP nstring: NIL when !Valid.
type NString struct {
	S     string
	Valid bool
}

func ns(s string) NString { return NString{s, true} }

// maxAddresses bounds one address list: a header of a few hundred kilobytes
// of commas must not become a million-element ENVELOPE.
const maxAddresses = 1000

// ParseAddressList parses an address header value the way Dovecot does for
// ENVELOPE: never failing, encoded words left encoded, a comment standing in
// for a missing display name, and Dovecot's placeholders (MISSING_DOMAIN,
// MISSING_MAILBOX, SYNTAX_ERROR) where the header is broken, so that clients
// see the same thing from correo as from the server they migrate from.
func ParseAddressList(v string) []Address {
	l := &lexer{s: v}
	var out []Address
	inGroup := false
	for !l.done() && len(out) < maxAddresses {
		before := l.i
		comment := l.skipCFWS()
		switch l.peek() {
		case ',':
			l.i++
			continue
		case ';':
			l.i++
			if inGroup {
				out = append(out, Address{})
				inGroup = false
			}
			continue
		}
		start := l.i
		words, c2 := l.phrase()
		if c2 != "" {
			comment = c2
		}
		switch l.peek() {
		case ':':
			l.i++
			if !inGroup {
				out = append(out, Address{Mailbox: ns(strings.Join(words, " "))})
				inGroup = true
			}
		case '<':
			l.i++
			a := l.angleAddr()
			if len(words) > 0 {
				a.Name = ns(strings.Join(words, " "))
			} else if comment != "" {
				a.Name = ns(comment)
			}
			out = append(out, a)
		case '@':
			l.i++
			local := l.s[start : l.i-1]
			a := Address{Mailbox: ns(localPart(local))}
			host, c := l.domain()
			if host == "" {
				host = "MISSING_DOMAIN"
			}
			a.Host = ns(host)
			if c == "" {
				c = comment
			}
			if c != "" {
				a.Name = ns(c)
			}
			out = append(out, a)
		default:
			if len(words) > 0 {
				a := Address{Mailbox: ns(strings.Join(words, "")), Host: ns("MISSING_DOMAIN")}
				if comment != "" {
					a.Name = ns(comment)
				}
				out = append(out, a)
			}
		}
		if l.i == before {
			l.i++ // a stray special such as '>': skip it; every turn must progress
		}
	}
	if inGroup && len(out) < maxAddresses+1 {
		out = append(out, Address{})
	}
	return out
}

// phrase reads words (atoms, quoted strings, dots) up to a special. Quoted
// strings are unquoted; a comment among the words is returned separately.
func (l *lexer) phrase() ([]string, string) {
	var words []string
	var comment string
	for !l.done() {
		if c := l.skipCFWS(); c != "" {
			comment = c
		}
		switch c := l.peek(); {
		case c == '"':
			words = append(words, l.quoted())
		case c == 0 || strings.IndexByte("<>@,;:[]", c) >= 0:
			return words, comment
		case c == '.':
			l.i++
			if n := len(words); n > 0 {
				words[n-1] += "."
			} else {
				words = append(words, ".")
			}
		default:
			st := l.i
			for !l.done() && strings.IndexByte("()<>@,;:\\\".[] \t\r\n", l.s[l.i]) < 0 {
				l.i++
			}
			if l.i == st {
				l.i++ // a stray backslash: part of the word, and progress
			}
			w := l.s[st:l.i]
			if n := len(words); n > 0 && strings.HasSuffix(words[n-1], ".") && l.i > 0 && st > 0 && l.s[st-1] == '.' {
				words[n-1] += w
			} else {
				words = append(words, w)
			}
		}
	}
	return words, comment
}

// localPart removes quoting and comments from a local part as written before
// '@' ("john doe"@x gives john doe, as Dovecot does).
func localPart(s string) string {
	l := &lexer{s: s}
	var b strings.Builder
	for !l.done() {
		if l.skipCFWS(); l.done() {
			break
		}
		switch l.peek() {
		case '"':
			b.WriteString(l.quoted())
		default:
			b.WriteByte(l.s[l.i])
			l.i++
		}
	}
	return b.String()
}

// domain reads a domain (dot-atoms or a [literal]) up to ',', ';', '>' or
// the end, returning a trailing comment too.
func (l *lexer) domain() (string, string) {
	var b strings.Builder
	var comment string
	for !l.done() {
		if c := l.skipCFWS(); c != "" {
			comment = c
		}
		c := l.peek()
		if c == 0 || c == ',' || c == ';' || c == '>' {
			break
		}
		if c == '[' {
			st := l.i
			for !l.done() && l.s[l.i] != ']' {
				l.i++
			}
			if !l.done() {
				l.i++
			}
			b.WriteString(l.s[st:l.i])
			continue
		}
		if c == '<' || c == '@' || c == ':' || c == '"' {
			l.i++
			continue
		}
		b.WriteByte(c)
		l.i++
	}
	return b.String(), comment
}

// angleAddr reads "[@route,@route:]local@domain>" after the '<'.
func (l *lexer) angleAddr() Address {
	var a Address
	l.skipCFWS()
	if l.peek() == '@' {
		st := l.i
		for !l.done() && l.s[l.i] != ':' && l.s[l.i] != '>' {
			l.i++
		}
		a.ADL = ns(strings.TrimSpace(l.s[st:l.i]))
		l.eat(':')
	}
	st := l.i
	for !l.done() && l.s[l.i] != '@' && l.s[l.i] != '>' {
		if l.s[l.i] == '"' {
			l.quoted()
			continue
		}
		l.i++
	}
	local := localPart(l.s[st:l.i])
	if l.eat('@') {
		host, _ := l.domain()
		a.Mailbox, a.Host = ns(local), ns(host)
		if host == "" {
			a.Host = ns("MISSING_DOMAIN")
		}
	} else if local != "" {
		a.Mailbox, a.Host = ns(local), ns("MISSING_DOMAIN")
	} else {
		a.Mailbox, a.Host = ns("MISSING_MAILBOX"), ns("SYNTAX_ERROR")
	}
	l.eat('>') // unterminated: keep what could be read, as Dovecot does
	return a
}
