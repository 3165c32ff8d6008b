package imapwire

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func searchArgs(t testing.TB, s string) []Arg {
	t.Helper()
	r := NewReader(bufio.NewReader(strings.NewReader("a SEARCH "+s+"\r\n")), Limits{}, nil)
	r.SetUTF8(true)
	cmd, err := r.ReadCommand()
	if err != nil {
		if len(s) > 60 {
			s = s[:60] + "..."
		}
		t.Fatalf("%q: %v", s, err)
	}
	return cmd.Args
}

// sexpr writes a key tree as an s-expression for comparisons.
func sexpr(k SearchKey) string {
	names := map[SearchOp]string{
		SearchAll: "all", SearchAnd: "and", SearchOr: "or", SearchNot: "not", SearchFlag: "flag",
		SearchHeader: "header", SearchBody: "body", SearchText: "text", SearchBefore: "before", SearchOn: "on",
		SearchSince: "since", SearchSentBefore: "sentbefore", SearchSentOn: "senton", SearchSentSince: "sentsince",
		SearchLarger: "larger", SearchSmaller: "smaller", SearchUID: "uid", SearchSeq: "seq", SearchModSeq: "modseq",
	}
	s := names[k.Op]
	switch k.Op {
	case SearchAnd, SearchOr, SearchNot:
		for _, sub := range k.Keys {
			s += " " + sexpr(sub)
		}
	case SearchFlag, SearchBody, SearchText:
		s += " " + k.Value
	case SearchHeader:
		s += fmt.Sprintf(" %s %q", k.Field, k.Value)
	case SearchBefore, SearchOn, SearchSince, SearchSentBefore, SearchSentOn, SearchSentSince:
		s += " " + k.Date.Format("2006-01-02")
	case SearchLarger, SearchSmaller:
		s += fmt.Sprint(" ", k.Num)
	case SearchModSeq:
		s += fmt.Sprint(" ", k.Num)
		if k.Field != "" {
			s += " " + k.Field + " " + k.Value
		}
	case SearchUID, SearchSeq:
		s += " " + k.Set.String()
	}
	return "(" + s + ")"
}

func TestParseSearch(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ALL", "(and (all))"},
		{"UNSEEN", `(and (not (flag \Seen)))`},
		{"answered deleted draft flagged seen", `(and (flag \Answered) (flag \Deleted) (flag \Draft) (flag \Flagged) (flag \Seen))`},
		{"UNANSWERED UNDELETED UNDRAFT UNFLAGGED", `(and (not (flag \Answered)) (not (flag \Deleted)) (not (flag \Draft)) (not (flag \Flagged)))`},
		{"NEW", `(and (and (flag \Recent) (not (flag \Seen))))`},
		{"OLD RECENT", `(and (not (flag \Recent)) (flag \Recent))`},
		{"KEYWORD $Junk UNKEYWORD $Forwarded", `(and (flag $Junk) (not (flag $Forwarded)))`},
		{`FROM "juan@example.com" TO bob CC {3}` + "\r\nana BCC x SUBJECT \"hola\"", `(and (header From "juan@example.com") (header To "bob") (header Cc "ana") (header Bcc "x") (header Subject "hola"))`},
		{`HEADER Message-ID "<a@b>" HEADER X-Spam ""`, `(and (header Message-ID "<a@b>") (header X-Spam ""))`},
		{`BODY "café" TEXT "naïve"`, `(and (body café) (text naïve))`},
		{`BEFORE 1-Feb-1994 ON "01-Feb-1994" SINCE 28-feb-2024`, `(and (before 1994-02-01) (on 1994-02-01) (since 2024-02-28))`},
		{`SENTBEFORE 1-Jan-2000 SENTON 2-Jan-2000 SENTSINCE 3-Jan-2000`, `(and (sentbefore 2000-01-01) (senton 2000-01-02) (sentsince 2000-01-03))`},
		{"LARGER 1000 SMALLER 5000", "(and (larger 1000) (smaller 5000))"},
		{"UID 1:* 2,4:5", "(and (uid 1:*) (seq 2,4:5))"},
		{"UID $ $", "(and (uid $) (seq $))"},
		{"NOT SEEN", `(and (not (flag \Seen)))`},
		{"OR SEEN FLAGGED", `(and (or (flag \Seen) (flag \Flagged)))`},
		{"OR (SEEN FROM a) NOT (LARGER 5)", `(and (or (and (flag \Seen) (header From "a")) (not (and (larger 5)))))`},
		{"MODSEQ 0", "(and (modseq 0))"},
		{`MODSEQ "/flags/\\Seen" all 620162338`, `(and (modseq 620162338 /flags/\Seen all))`},
		{"*", "(and (seq *))"},
	}
	for _, tc := range tests {
		req, err := ParseSearch(searchArgs(t, tc.in), 0)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := sexpr(req.Key); got != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func TestParseSearchReturnCharset(t *testing.T) {
	for _, tc := range []struct {
		in      string
		esearch bool
		ret     int
		charset string
	}{
		{"ALL", false, 0, ""},
		{"RETURN (MIN MAX COUNT) ALL", true, ReturnMin | ReturnMax | ReturnCount, ""},
		{"RETURN () ALL", true, ReturnAll, ""},
		{"RETURN (SAVE ALL) CHARSET utf-8 SEEN", true, ReturnSave | ReturnAll, "UTF-8"},
		{"CHARSET US-ASCII SEEN", false, 0, "US-ASCII"},
	} {
		req, err := ParseSearch(searchArgs(t, tc.in), 0)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if req.ESearch != tc.esearch || req.Return != tc.ret || req.Charset != tc.charset {
			t.Errorf("%q: got %+v", tc.in, req)
		}
	}
	_, err := ParseSearch(searchArgs(t, "CHARSET ISO-8859-1 FROM x"), 0)
	var e *Error
	if !errors.As(err, &e) || !strings.HasPrefix(e.Code, "BADCHARSET") {
		t.Errorf("unknown charset: %v", err)
	}
}

func TestParseSearchErrors(t *testing.T) {
	for _, in := range []string{
		"", "FOO", "FROM", "HEADER From", "HEADER \"A:B\" x", "BEFORE 32-Jan-2000", "BEFORE 2000-01-01",
		"SINCE 30-Feb-2024", "LARGER", "LARGER -1", "LARGER +1", "LARGER x", "UID", "UID 0", "4294967296", "0",
		"NOT", "OR SEEN", "OR", "()", "KEYWORD", "KEYWORD \\Seen", "KEYWORD (a)", "RETURN (FOO) ALL",
		"RETURN ALL", "MODSEQ", "MODSEQ x", "MODSEQ \"/flags/a\" bogus 5", "\"ALL\"", "CHARSET", "RETURN (MIN)",
	} {
		var args []Arg
		if in != "" {
			args = searchArgs(t, in)
		}
		if req, err := ParseSearch(args, 0); err == nil {
			t.Errorf("%q: accepted as %s", in, sexpr(req.Key))
		}
	}
}

func TestParseSearchDepth(t *testing.T) {
	// 5 000 NOTs fit in a line; they must not become 5 000 frames.
	args := searchArgs(t, strings.Repeat("NOT ", 5000)+"ALL")
	if _, err := ParseSearch(args, 32); err == nil {
		t.Error("5 000 NOTs accepted")
	}
	if _, err := ParseSearch(searchArgs(t, strings.Repeat("NOT ", 30)+"ALL"), 32); err != nil {
		t.Errorf("30 NOTs: %v", err)
	}
	if _, err := ParseSearch(searchArgs(t, strings.Repeat("OR ALL ", 40)+"ALL"), 32); err == nil {
		t.Error("40 nested ORs accepted")
	}
	if _, err := ParseSearch(searchArgs(t, "((((ALL))))"), 3); err == nil {
		t.Error("4 levels of lists accepted at depth 3")
	}
}
