package imapwire

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
)

func fetchArgs(t *testing.T, s string) []Arg {
	t.Helper()
	r := NewReader(bufio.NewReader(strings.NewReader("a FETCH 1 "+s+"\r\n")), Limits{}, nil)
	cmd, err := r.ReadCommand()
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return cmd.Args[1:]
}

func describe(atts []FetchAtt) string {
	var parts []string
	for _, a := range atts {
		s := a.Name
		if a.Peek {
			s += ".PEEK"
		}
		if a.Section != nil {
			s += fmt.Sprintf("[%v %s %q]", a.Section.Part, a.Section.Specifier, a.Section.Fields)
		}
		if a.Partial != nil {
			s += fmt.Sprintf("<%d.%d>", a.Partial.Offset, a.Partial.Count)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestParseFetchAtts(t *testing.T) {
	tests := []struct{ in, want string }{
		{"FLAGS", "FLAGS"},
		{"fast", "FLAGS INTERNALDATE RFC822.SIZE"},
		{"ALL", "FLAGS INTERNALDATE RFC822.SIZE ENVELOPE"},
		{"FULL", "FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY"},
		{"(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE UID MODSEQ)", "FLAGS INTERNALDATE RFC822.SIZE ENVELOPE UID MODSEQ"},
		{"BODY[]", `BODY[[]  []]`},
		{"body.peek[]", `BODY.PEEK[[]  []]`},
		{"BODY[]<0.100>", `BODY[[]  []]<0.100>`},
		{"BODY.PEEK[HEADER.FIELDS (From To)]<0.100>", `BODY.PEEK[[] HEADER.FIELDS ["From" "To"]]<0.100>`},
		{`(UID BODY.PEEK[HEADER.FIELDS.NOT ("X-Spam" Received)])`, `UID BODY.PEEK[[] HEADER.FIELDS.NOT ["X-Spam" "Received"]]`},
		{"BODY[1.2.3]", `BODY[[1 2 3]  []]`},
		{"BODY[1.2.MIME]", `BODY[[1 2] MIME []]`},
		{"BODY[2.TEXT]", `BODY[[2] TEXT []]`},
		{"BODY[HEADER]", `BODY[[] HEADER []]`},
		{"BINARY[1]", `BINARY[[1]  []]`},
		{"BINARY.PEEK[]<5.10>", `BINARY.PEEK[[]  []]<5.10>`},
		{"BINARY.SIZE[2]", `BINARY.SIZE[[2]  []]`},
		{"RFC822.HEADER", "RFC822.HEADER"},
		{"BODYSTRUCTURE", "BODYSTRUCTURE"},
	}
	for _, tc := range tests {
		args := fetchArgs(t, tc.in)
		atts, err := ParseFetchAtts(args[0])
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := describe(atts); got != tc.want {
			t.Errorf("%q: got %s want %s", tc.in, got, tc.want)
		}
	}
}

func TestParseFetchAttsErrors(t *testing.T) {
	for _, in := range []string{
		"()", "FOO", "(FLAGS ALL)", `("FLAGS")`, "BODY[", "BODY[0]", "BODY[1.]", "BODY[.1]", "BODY[MIME]",
		"BODY[HEADER.FIELDS]", "BODY[HEADER.FIELDS ()]", "BODY[HEADER.FIELDS (A:B)]", "BODY[HEADER.FIELDS  (A)]",
		"BODY[HEADER.FIELDS (A  B)]", "BODY[HEADER.FIELDS (A )]", "BODY[TEXT (A)]", "BODY[FOO]",
		"BODY[]<0>", "BODY[]<0.0>", "BODY[]<a.1>", "BODY[]<4294967296.1>", "BODY[]<1.2", "BODY[]x",
		"BINARY[HEADER]", "BINARY.SIZE[1]<0.1>", "ENVELOPE[]", "BODY[4294967296]",
		"BODY[" + strings.Repeat("1.", 100) + "1]", `BODY[HEADER.FIELDS ("A)]`,
	} {
		if atts, err := ParseFetchAtts(Arg{Kind: KindAtom, Str: in}); err == nil {
			t.Errorf("%q: accepted as %s", in, describe(atts))
		}
	}
	if _, err := ParseFetchAtts(Arg{Kind: KindList, List: []Arg{}}); err == nil {
		t.Error("empty list accepted")
	}
}

func TestParseFetchModifiers(t *testing.T) {
	args := fetchArgs(t, "(FLAGS) (CHANGEDSINCE 12345 VANISHED)")
	m, err := ParseFetchModifiers(args[1])
	if err != nil || m.ChangedSince != 12345 || !m.Vanished {
		t.Fatalf("%+v %v", m, err)
	}
	for _, in := range []string{"()", "(VANISHED)", "(CHANGEDSINCE)", "(CHANGEDSINCE 0)", "(CHANGEDSINCE 9223372036854775808)", "(FOO)"} {
		if _, err := ParseFetchModifiers(fetchArgs(t, in)[0]); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
