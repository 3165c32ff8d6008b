package imapwire

import (
	"strconv"
	"strings"
	"time"
)

// SearchOp is the kind of a search key.
type SearchOp uint8

// Search keys. The flag keys of RFC 9051 (ANSWERED, SEEN, UNSEEN, KEYWORD
// ...) all become SearchFlag, negated under SearchNot, and FROM, TO, CC,
// BCC and SUBJECT become SearchHeader, so a store evaluates few kinds.
const (
	SearchAll        SearchOp = iota
	SearchAnd                 // Keys: all must match (a parenthesised group, the top level)
	SearchOr                  // Keys: two, either
	SearchNot                 // Keys: one, negated
	SearchFlag                // Value: a flag such as \Seen or a keyword; RECENT is \Recent
	SearchHeader              // Field: the header name; Value: the substring ("" matches any such header)
	SearchBody                // Value in the body
	SearchText                // Value in the header or body
	SearchBefore              // Date: internal date before the day
	SearchOn                  // Date: internal date on the day
	SearchSince               // Date: internal date on or after the day
	SearchSentBefore          // Date: Date header before the day
	SearchSentOn              // Date: Date header on the day
	SearchSentSince           // Date: Date header on or after the day
	SearchLarger              // Num: RFC822.SIZE larger than
	SearchSmaller             // Num: RFC822.SIZE smaller than
	SearchUID                 // Set: UIDs
	SearchSeq                 // Set: message numbers
	SearchModSeq              // Num: mod-sequence at least; Field, Value: entry name and type, if given
)

// SearchKey is a node of the search tree.
type SearchKey struct {
	Op    SearchOp
	Field string
	Value string
	// Date is the day (midnight UTC; the server compares in its own zone,
	// as RFC 9051 says it may).
	Date time.Time
	Num  uint64
	Set  SeqSet
	Keys []SearchKey
}

// Search return options (RFC 4731, RFC 5182).
const (
	ReturnMin = 1 << iota
	ReturnMax
	ReturnAll
	ReturnCount
	ReturnSave
)

// SearchRequest is a parsed SEARCH.
type SearchRequest struct {
	// ESearch: RETURN was given, so the answer is ESEARCH.
	ESearch bool
	// Return is a set of Return* bits; RETURN () means ReturnAll.
	Return  int
	Charset string
	// Key is a SearchAnd of the top-level keys.
	Key SearchKey
}

var searchFlags = map[string]string{
	"ANSWERED": `\Answered`, "DELETED": `\Deleted`, "DRAFT": `\Draft`, "FLAGGED": `\Flagged`,
	"SEEN": `\Seen`, "RECENT": `\Recent`,
}

var searchHeaders = map[string]string{
	"FROM": "From", "TO": "To", "CC": "Cc", "BCC": "Bcc", "SUBJECT": "Subject",
}

var searchDates = map[string]SearchOp{
	"BEFORE": SearchBefore, "ON": SearchOn, "SINCE": SearchSince,
	"SENTBEFORE": SearchSentBefore, "SENTON": SearchSentOn, "SENTSINCE": SearchSentSince,
}

// ParseSearch parses SEARCH's arguments: [RETURN (...)] [CHARSET x] keys.
// Nesting (lists, NOT, OR) is bounded by maxDepth. A charset other than
// UTF-8 and US-ASCII is refused with Code BADCHARSET (answer NO).
func ParseSearch(args []Arg, maxDepth int) (*SearchRequest, error) {
	req := &SearchRequest{}
	if len(args) >= 2 && args[0].Kind == KindAtom && strings.EqualFold(args[0].Str, "RETURN") {
		if args[1].Kind != KindList {
			return nil, &Error{Text: "RETURN needs a list"}
		}
		req.ESearch = true
		for _, o := range args[1].List {
			if o.Kind != KindAtom {
				return nil, &Error{Text: "Invalid RETURN option"}
			}
			switch strings.ToUpper(o.Str) {
			case "MIN":
				req.Return |= ReturnMin
			case "MAX":
				req.Return |= ReturnMax
			case "ALL":
				req.Return |= ReturnAll
			case "COUNT":
				req.Return |= ReturnCount
			case "SAVE":
				req.Return |= ReturnSave
			default:
				return nil, &Error{Text: "Unknown RETURN option " + strconv.Quote(o.Str)}
			}
		}
		if len(args[1].List) == 0 {
			req.Return = ReturnAll
		}
		args = args[2:]
	}
	if len(args) >= 2 && args[0].Kind == KindAtom && strings.EqualFold(args[0].Str, "CHARSET") {
		cs, ok := args[1].AString()
		if !ok {
			return nil, &Error{Text: "CHARSET needs a name"}
		}
		switch strings.ToUpper(cs) {
		case "UTF-8", "US-ASCII":
			req.Charset = strings.ToUpper(cs)
		default:
			return nil, &Error{Code: "BADCHARSET (UTF-8)", Text: "Unsupported charset " + strconv.Quote(cs)}
		}
		args = args[2:]
	}
	if len(args) == 0 {
		return nil, &Error{Text: "SEARCH needs a search key"}
	}
	if maxDepth <= 0 {
		maxDepth = DefaultLimits().MaxDepth
	}
	p := searchParser{args: args, maxDepth: maxDepth}
	keys, err := p.keys(0)
	if err != nil {
		return nil, err
	}
	req.Key = SearchKey{Op: SearchAnd, Keys: keys}
	return req, nil
}

type searchParser struct {
	args     []Arg
	maxDepth int
}

func (p *searchParser) keys(depth int) ([]SearchKey, error) {
	var keys []SearchKey
	for len(p.args) > 0 {
		k, err := p.key(depth)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func (p *searchParser) next() (Arg, bool) {
	if len(p.args) == 0 {
		return Arg{}, false
	}
	a := p.args[0]
	p.args = p.args[1:]
	return a, true
}

func (p *searchParser) astring(key string) (string, error) {
	a, ok := p.next()
	if !ok {
		return "", &Error{Text: key + " needs an argument"}
	}
	s, ok := a.AString()
	if !ok {
		return "", &Error{Text: key + " needs a string"}
	}
	return s, nil
}

func (p *searchParser) key(depth int) (SearchKey, error) {
	if depth >= p.maxDepth {
		return SearchKey{}, &Error{Text: "Search keys nested too deeply"}
	}
	a, _ := p.next()
	if a.Kind == KindList {
		if len(a.List) == 0 {
			return SearchKey{}, &Error{Text: "Empty search key list"}
		}
		sub := searchParser{args: a.List, maxDepth: p.maxDepth}
		keys, err := sub.keys(depth + 1)
		if err != nil {
			return SearchKey{}, err
		}
		return SearchKey{Op: SearchAnd, Keys: keys}, nil
	}
	if a.Kind != KindAtom {
		return SearchKey{}, &Error{Text: "Expected a search key, got a string"}
	}
	name := strings.ToUpper(a.Str)
	if f, ok := searchFlags[name]; ok {
		return SearchKey{Op: SearchFlag, Value: f}, nil
	}
	if f, ok := searchFlags[strings.TrimPrefix(name, "UN")]; ok && strings.HasPrefix(name, "UN") && name != "UNRECENT" {
		return not(SearchKey{Op: SearchFlag, Value: f}), nil
	}
	if h, ok := searchHeaders[name]; ok {
		v, err := p.astring(name)
		return SearchKey{Op: SearchHeader, Field: h, Value: v}, err
	}
	if op, ok := searchDates[name]; ok {
		s, err := p.astring(name)
		if err != nil {
			return SearchKey{}, err
		}
		d, err := ParseDate(s)
		return SearchKey{Op: op, Date: d}, err
	}
	switch name {
	case "ALL":
		return SearchKey{Op: SearchAll}, nil
	case "NEW":
		return SearchKey{Op: SearchAnd, Keys: []SearchKey{{Op: SearchFlag, Value: `\Recent`}, not(SearchKey{Op: SearchFlag, Value: `\Seen`})}}, nil
	case "OLD":
		return not(SearchKey{Op: SearchFlag, Value: `\Recent`}), nil
	case "KEYWORD", "UNKEYWORD":
		kw, err := p.atom(name)
		if err != nil {
			return SearchKey{}, err
		}
		if !validKeyword(kw) {
			return SearchKey{}, &Error{Text: "Invalid keyword " + strconv.Quote(kw)}
		}
		k := SearchKey{Op: SearchFlag, Value: kw}
		if name == "UNKEYWORD" {
			k = not(k)
		}
		return k, nil
	case "HEADER":
		f, err := p.astring(name)
		if err != nil {
			return SearchKey{}, err
		}
		if !validFieldName(f) {
			return SearchKey{}, &Error{Text: "Invalid header name " + strconv.Quote(f)}
		}
		v, err := p.astring(name)
		return SearchKey{Op: SearchHeader, Field: f, Value: v}, err
	case "BODY", "TEXT":
		v, err := p.astring(name)
		op := SearchBody
		if name == "TEXT" {
			op = SearchText
		}
		return SearchKey{Op: op, Value: v}, err
	case "LARGER", "SMALLER":
		s, err := p.atom(name)
		if err != nil {
			return SearchKey{}, err
		}
		n, err := strconv.ParseUint(s, 10, 63)
		if err != nil || s[0] == '+' {
			return SearchKey{}, &Error{Text: name + " needs a number"}
		}
		op := SearchLarger
		if name == "SMALLER" {
			op = SearchSmaller
		}
		return SearchKey{Op: op, Num: n}, nil
	case "UID":
		s, err := p.atom(name)
		if err != nil {
			return SearchKey{}, err
		}
		set, err := ParseSeqSet(s)
		return SearchKey{Op: SearchUID, Set: set}, err
	case "NOT":
		if len(p.args) == 0 {
			return SearchKey{}, &Error{Text: "NOT needs a key"}
		}
		k, err := p.key(depth + 1)
		return not(k), err
	case "OR":
		if len(p.args) == 0 {
			return SearchKey{}, &Error{Text: "OR needs two keys"}
		}
		a, err := p.key(depth + 1)
		if err != nil {
			return SearchKey{}, err
		}
		if len(p.args) == 0 {
			return SearchKey{}, &Error{Text: "OR needs two keys"}
		}
		b, err := p.key(depth + 1)
		return SearchKey{Op: SearchOr, Keys: []SearchKey{a, b}}, err
	case "MODSEQ":
		return p.modseq()
	}
	if c := name[0]; c >= '0' && c <= '9' || c == '*' || c == '$' {
		set, err := ParseSeqSet(a.Str)
		return SearchKey{Op: SearchSeq, Set: set}, err
	}
	return SearchKey{}, &Error{Text: "Unknown search key " + strconv.Quote(a.Str)}
}

func not(k SearchKey) SearchKey { return SearchKey{Op: SearchNot, Keys: []SearchKey{k}} }

func (p *searchParser) atom(key string) (string, error) {
	a, ok := p.next()
	if !ok || a.Kind != KindAtom {
		return "", &Error{Text: key + " needs an atom"}
	}
	return a.Str, nil
}

// modseq: MODSEQ [entry-name entry-type-req] mod-sequence-valzer, where
// entry-name is a quoted "/flags/\\Seen" and entry-type-req priv, shared
// or all.
func (p *searchParser) modseq() (SearchKey, error) {
	k := SearchKey{Op: SearchModSeq}
	if len(p.args) >= 3 && p.args[0].IsString() {
		name, _ := p.next()
		typ, _ := p.next()
		if typ.Kind != KindAtom {
			return k, &Error{Text: "MODSEQ entry type must be priv, shared or all"}
		}
		switch t := strings.ToLower(typ.Str); t {
		case "priv", "shared", "all":
			k.Field, k.Value = name.Str, t
		default:
			return k, &Error{Text: "MODSEQ entry type must be priv, shared or all"}
		}
	}
	s, err := p.atom("MODSEQ")
	if err != nil {
		return k, err
	}
	k.Num, err = ParseModSeqZero(s)
	return k, err
}

// validKeyword: flag-keyword is an atom; a keyword starting with "\" is a
// system flag and does not belong after KEYWORD.
func validKeyword(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAtomChar(c) || c == '%' || c == '*' || c == '[' {
			return false
		}
	}
	return true
}
