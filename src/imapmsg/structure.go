package imapmsg

import "strings"

// Structure is one node of BODY / BODYSTRUCTURE (RFC 9051 section 7.5.2).
// It always carries the extension data; WriteBodyStructure leaves it out for
// BODY.
type Structure struct {
	Type, Subtype string // as written in the header (Dovecot keeps the case)
	Params        []Param
	ID, Desc      NString
	Encoding      string
	Size          int64 // body octets in CRLF form
	Lines         int64 // text/* and message/rfc822 only

	Envelope *Envelope  // message/rfc822
	Body     *Structure // message/rfc822

	Children []Structure // multipart; never empty (IMAP's grammar needs one)

	MD5         NString
	Disposition *Disposition
	Language    []string
	Location    NString
}

// Disposition is Content-Disposition: ("attachment" ("filename" "x")).
type Disposition struct {
	Type   string
	Params []Param
}

// IsMultipart says whether s is written as a multipart.
func (s *Structure) IsMultipart() bool { return s.Children != nil }

// emptyPart stands in for the children of a multipart that has none (no
// boundary, no delimiter, or too deep): the grammar needs one, and this is
// what Dovecot sends.
var emptyPart = Structure{
	Type: "text", Subtype: "plain", Params: []Param{{"charset", "us-ascii"}},
	Encoding: "7bit",
}

// BodyStructure of the message. It parses the MIME tree on first use.
func (m *Message) BodyStructure() Structure {
	return structureOf(m.tree())
}

func structureOf(p *node) Structure {
	s := Structure{
		Type: p.ct.Type, Subtype: p.ct.Subtype, Params: p.ct.Params,
		ID: p.id, Desc: p.desc, MD5: p.md5, Location: p.loc,
		Language: p.lang,
		Encoding: "7bit",
		Size:     p.end.crlf - p.body.crlf,
	}
	if p.enc.Valid {
		s.Encoding = p.enc.S
	}
	if p.hasDisp {
		s.Disposition = &Disposition{Type: p.disp.Type, Params: p.disp.Params}
	}
	switch {
	case p.ct.is("multipart", ""):
		s.Encoding = ""
		for _, c := range p.children {
			s.Children = append(s.Children, structureOf(c))
		}
		if len(s.Children) == 0 {
			s.Children = []Structure{emptyPart}
		}
	case p.msg != nil:
		env := envelopeOf(p.msg.h)
		body := structureOf(p.msg)
		s.Envelope, s.Body = &env, &body
		s.Lines = p.end.lf - p.body.lf
	case p.ct.is("message", "rfc822") || p.ct.is("message", "global"):
		// Not parsed (encoded, or too deep): IMAP's grammar still wants an
		// envelope and a body here, and Dovecot sends empty ones.
		env, body := Envelope{}, emptyPart
		s.Envelope, s.Body = &env, &body
		s.Lines = p.end.lf - p.body.lf
	case strings.EqualFold(p.ct.Type, "text"):
		s.Lines = p.end.lf - p.body.lf
	}
	return s
}
