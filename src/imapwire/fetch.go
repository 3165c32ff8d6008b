package imapwire

import (
	"strconv"
	"strings"
)

// FetchAtt is one FETCH data item the client asked for.
type FetchAtt struct {
	// Name is the item in upper case: ENVELOPE, FLAGS, INTERNALDATE,
	// RFC822.SIZE, RFC822, RFC822.HEADER, RFC822.TEXT, BODY,
	// BODYSTRUCTURE, UID, MODSEQ, BINARY.SIZE, and BODY or BINARY with a
	// Section. ".PEEK" is not part of Name: see Peek.
	Name string
	// Peek: BODY.PEEK or BINARY.PEEK, which do not set \Seen.
	Peek bool
	// Section is set for BODY[...], BINARY[...] and BINARY.SIZE[...].
	Section *Section
	// Partial is <offset.count>, when given.
	Partial *Partial
}

// Section is the part of a message in BODY[...] (RFC 9051 section 6.4.5).
type Section struct {
	// Part is the part number path, "1.2.3"; empty for the whole message.
	Part []uint32
	// Specifier is "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT or
	// MIME (MIME only after a part).
	Specifier string
	// Fields are the header names of HEADER.FIELDS[.NOT], as sent.
	Fields []string
}

// Partial is <Offset.Count>.
type Partial struct {
	Offset uint32
	Count  uint32
}

// The macros of RFC 9051 section 6.4.5.
var fetchMacros = map[string][]string{
	"ALL":  {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"},
	"FAST": {"FLAGS", "INTERNALDATE", "RFC822.SIZE"},
	"FULL": {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"},
}

var plainFetchAtts = map[string]bool{
	"ENVELOPE": true, "FLAGS": true, "INTERNALDATE": true, "RFC822.SIZE": true, "RFC822": true,
	"RFC822.HEADER": true, "RFC822.TEXT": true, "BODY": true, "BODYSTRUCTURE": true, "UID": true,
	"MODSEQ": true,
}

// ParseFetchAtts parses the data items of FETCH: one atom (a macro or an
// item) or a list of items. An empty list is refused.
func ParseFetchAtts(a Arg) ([]FetchAtt, error) {
	switch a.Kind {
	case KindAtom:
		if m, ok := fetchMacros[strings.ToUpper(a.Str)]; ok {
			atts := make([]FetchAtt, len(m))
			for i, n := range m {
				atts[i] = FetchAtt{Name: n}
			}
			return atts, nil
		}
		att, err := ParseFetchAtt(a.Str)
		if err != nil {
			return nil, err
		}
		return []FetchAtt{att}, nil
	case KindList:
		if len(a.List) == 0 {
			return nil, &Error{Text: "Empty FETCH item list"}
		}
		atts := make([]FetchAtt, 0, len(a.List))
		for _, e := range a.List {
			if e.Kind != KindAtom {
				return nil, &Error{Text: "FETCH items are atoms"}
			}
			att, err := ParseFetchAtt(e.Str)
			if err != nil {
				return nil, err
			}
			atts = append(atts, att)
		}
		return atts, nil
	}
	return nil, &Error{Text: "Expected FETCH items"}
}

// ParseFetchAtt parses one item such as
// BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100>.
func ParseFetchAtt(s string) (FetchAtt, error) {
	name, rest, hasSection := strings.Cut(s, "[")
	name = strings.ToUpper(name)
	if !hasSection {
		if plainFetchAtts[name] {
			return FetchAtt{Name: name}, nil
		}
		return FetchAtt{}, &Error{Text: "Unknown FETCH item " + strconv.Quote(s)}
	}
	var att FetchAtt
	binary := false
	switch name {
	case "BODY", "BODY.PEEK":
		att.Name, att.Peek = "BODY", name == "BODY.PEEK"
	case "BINARY", "BINARY.PEEK":
		att.Name, att.Peek, binary = "BINARY", name == "BINARY.PEEK", true
	case "BINARY.SIZE":
		att.Name, binary = "BINARY.SIZE", true
	default:
		return FetchAtt{}, &Error{Text: "Unknown FETCH item " + strconv.Quote(s)}
	}
	end := strings.LastIndexByte(rest, ']')
	if end < 0 {
		return FetchAtt{}, &Error{Text: "FETCH section without ]"}
	}
	sec, err := parseSection(rest[:end], binary)
	if err != nil {
		return FetchAtt{}, err
	}
	att.Section = sec
	if p := rest[end+1:]; p != "" {
		if att.Name == "BINARY.SIZE" {
			return FetchAtt{}, &Error{Text: "BINARY.SIZE takes no partial"}
		}
		if att.Partial, err = parsePartial(p); err != nil {
			return FetchAtt{}, err
		}
	}
	return att, nil
}

func parseSection(s string, binary bool) (*Section, error) {
	sec := &Section{}
	// Part numbers come first, each followed by "." or the end.
	for s != "" && s[0] >= '0' && s[0] <= '9' {
		numStr, rest, _ := strings.Cut(s, ".")
		n, err := parseNZ(numStr)
		if err != nil {
			return nil, &Error{Text: "Invalid section part " + strconv.Quote(numStr)}
		}
		if len(sec.Part) >= 64 {
			return nil, &Error{Text: "Section part path too long"}
		}
		sec.Part = append(sec.Part, n)
		if len(rest) == 0 && len(numStr) < len(s) {
			return nil, &Error{Text: "Section ends with a dot"}
		}
		s = rest
	}
	if s == "" {
		return sec, nil
	}
	if binary {
		return nil, &Error{Text: "BINARY sections are part numbers only"}
	}
	spec, fields, hasFields := strings.Cut(s, " ")
	spec = strings.ToUpper(spec)
	switch spec {
	case "HEADER", "TEXT":
	case "MIME":
		if len(sec.Part) == 0 {
			return nil, &Error{Text: "MIME needs a part number"}
		}
	case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		if !hasFields {
			return nil, &Error{Text: spec + " needs a list of header names"}
		}
		names, err := parseHeaderList(fields)
		if err != nil {
			return nil, err
		}
		sec.Fields = names
	default:
		return nil, &Error{Text: "Unknown section " + strconv.Quote(spec)}
	}
	if hasFields && !strings.HasPrefix(spec, "HEADER.FIELDS") {
		return nil, &Error{Text: "Unexpected text after " + spec}
	}
	sec.Specifier = spec
	return sec, nil
}

// parseHeaderList parses "(From To "X-Y")": astrings without literals (a
// literal inside a section is legal but no client sends one, and the
// tokeniser keeps sections on one line).
func parseHeaderList(s string) ([]string, error) {
	if len(s) < 2 || s[0] != '(' || s[len(s)-1] != ')' {
		return nil, &Error{Text: "Header list must be in parentheses"}
	}
	s = s[1 : len(s)-1]
	var names []string
	for s != "" {
		var name string
		if s[0] == '"' {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, &Error{Text: "Unterminated quoted header name"}
			}
			name, s = b.String(), s[i+1:]
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			name, s = s[:end], s[end:]
		}
		if !validFieldName(name) {
			return nil, &Error{Text: "Invalid header name " + strconv.Quote(name)}
		}
		names = append(names, name)
		if s != "" {
			if s[0] != ' ' || len(s) == 1 {
				return nil, &Error{Text: "Header names are separated by single spaces"}
			}
			s = s[1:]
		}
	}
	if len(names) == 0 {
		return nil, &Error{Text: "Empty header list"}
	}
	return names, nil
}

// validFieldName: RFC 5322 ftext, printable ASCII but ":".
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

func parsePartial(s string) (*Partial, error) {
	if len(s) < 5 || s[0] != '<' || s[len(s)-1] != '>' {
		return nil, &Error{Text: "Partial must be <offset.count>"}
	}
	off, cnt, ok := strings.Cut(s[1:len(s)-1], ".")
	if !ok {
		return nil, &Error{Text: "Partial must be <offset.count>"}
	}
	o, err := parseNumber(off)
	if err != nil {
		return nil, err
	}
	c, err := parseNZ(cnt)
	if err != nil {
		return nil, &Error{Text: "Partial count must be a number from 1"}
	}
	return &Partial{Offset: o, Count: c}, nil
}

// parseNumber: number of RFC 9051, 0 to 4294967295, digits only.
func parseNumber(s string) (uint32, error) {
	if s == "" || len(s) > 10 {
		return 0, &Error{Text: "Invalid number " + strconv.Quote(s)}
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, &Error{Text: "Invalid number " + strconv.Quote(s)}
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, &Error{Text: "Number out of range " + strconv.Quote(s)}
	}
	return uint32(n), nil
}

func parseNZ(s string) (uint32, error) {
	n, err := parseNumber(s)
	if err == nil && n == 0 {
		return 0, &Error{Text: "Zero where a number from 1 is needed"}
	}
	return n, err
}

// FetchModifiers are FETCH's optional modifiers (RFC 7162).
type FetchModifiers struct {
	// ChangedSince is CHANGEDSINCE's mod-sequence; 0 when absent.
	ChangedSince uint64
	// Vanished is QRESYNC's VANISHED (UID FETCH only).
	Vanished bool
}

// ParseFetchModifiers parses "(CHANGEDSINCE 12345 VANISHED)".
func ParseFetchModifiers(a Arg) (FetchModifiers, error) {
	var m FetchModifiers
	if a.Kind != KindList || len(a.List) == 0 {
		return m, &Error{Text: "FETCH modifiers must be a non-empty list"}
	}
	for i := 0; i < len(a.List); i++ {
		e := a.List[i]
		if e.Kind != KindAtom {
			return m, &Error{Text: "Invalid FETCH modifier"}
		}
		switch strings.ToUpper(e.Str) {
		case "CHANGEDSINCE":
			if i+1 == len(a.List) || a.List[i+1].Kind != KindAtom {
				return m, &Error{Text: "CHANGEDSINCE needs a mod-sequence"}
			}
			i++
			n, err := ParseModSeq(a.List[i].Str)
			if err != nil {
				return m, err
			}
			m.ChangedSince = n
		case "VANISHED":
			m.Vanished = true
		default:
			return m, &Error{Text: "Unknown FETCH modifier " + strconv.Quote(e.Str)}
		}
	}
	if m.Vanished && m.ChangedSince == 0 {
		return m, &Error{Text: "VANISHED needs CHANGEDSINCE"}
	}
	return m, nil
}

// ParseModSeq parses a mod-sequence-value (RFC 7162): 1 to 2^63-1 (0 is
// allowed where mod-sequence-valzer is: use ParseModSeqZero).
func ParseModSeq(s string) (uint64, error) {
	n, err := ParseModSeqZero(s)
	if err == nil && n == 0 {
		return 0, &Error{Text: "Mod-sequence must be from 1"}
	}
	return n, err
}

// ParseModSeqZero parses a mod-sequence-valzer: 0 to 2^63-1.
func ParseModSeqZero(s string) (uint64, error) {
	if s == "" || len(s) > 19 {
		return 0, &Error{Text: "Invalid mod-sequence " + strconv.Quote(s)}
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, &Error{Text: "Invalid mod-sequence " + strconv.Quote(s)}
		}
	}
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, &Error{Text: "Mod-sequence out of range " + strconv.Quote(s)}
	}
	return n, nil
}
