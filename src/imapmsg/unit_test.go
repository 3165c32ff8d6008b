package imapmsg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func parseString(t testing.TB, s string) *Message {
	m, err := Parse(strings.NewReader(s), int64(len(s)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCRLFReader(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"\n\n", "\r\n\r\n"},
		{"a\rb\n", "a\rb\r\n"}, // a lone CR stays
		{"a\r", "a\r"},
		{"x\r\n\n\r\r\n", "x\r\n\r\n\r\r\n"},
	} {
		// One byte at a time too: a CRLF split between reads must not double.
		for _, r := range []io.Reader{strings.NewReader(c.in), iotest.OneByteReader(strings.NewReader(c.in))} {
			got, err := io.ReadAll(NewCRLFReader(r))
			if err != nil || string(got) != c.want {
				t.Errorf("%q: got %q, %v; want %q", c.in, got, err, c.want)
			}
		}
		if n := CRLFSize([]byte(c.in), false); n != int64(len(c.want)) {
			t.Errorf("CRLFSize(%q) = %d, want %d", c.in, n, len(c.want))
		}
	}
}

// TestLFAndCRLFAgree: the same message stored either way gives the same
// answers, since the client sees CRLF in both cases.
func TestLFAndCRLFAgree(t *testing.T) {
	for _, name := range testMessages(t) {
		lf := strings.ReplaceAll(string(mustRead(t, name)), "\r\n", "\n")
		crlf := strings.ReplaceAll(lf, "\n", "\r\n")
		a, b := render(parseString(t, lf)), render(parseString(t, crlf))
		if a != b {
			t.Errorf("%s: LF and CRLF forms differ:\n%s\n%s", name, a, b)
		}
	}
}

func mustRead(t testing.TB, name string) []byte {
	m := parseFile(t, name)
	b, _ := io.ReadAll(io.NewSectionReader(m.r, 0, m.size))
	return b
}

func TestPartial(t *testing.T) {
	m := parseString(t, "Subject: x\n\n0123456789\n")
	for _, c := range []struct {
		off, count int64
		want       string
	}{
		{0, 3, "012"}, {2, 5, "23456"}, {8, 100, "89\r\n"}, {12, 5, ""}, {100, 1, ""}, {0, -1, "0123456789\r\n"},
	} {
		r, n := m.Section(nil, "TEXT", nil, false)
		pr, pn := Partial(r, n, c.off, c.count)
		got, _ := io.ReadAll(pr)
		if string(got) != c.want || pn != int64(len(got)) {
			t.Errorf("<%d.%d>: got %q (size %d), want %q", c.off, c.count, got, pn, c.want)
		}
	}
}

func TestSectionNumbering(t *testing.T) {
	m := parseFile(t, "testdata/msg/nested-rfc822.eml")
	for _, c := range []struct {
		path []int
		spec string
		want string
	}{
		{[]int{2, 1}, "", "hello there"},
		{[]int{2, 2}, "", "<b>hello there</b>"},
		{[]int{2, 1}, "MIME", "Content-Type: text/plain; charset=utf-8\r\n\r\n"},
		{[]int{2}, "HEADER.FIELDS", "Subject: hello\r\n\r\n"},
		{[]int{1}, "HEADER", ""}, // not a message/rfc822
		{[]int{2, 3}, "", ""},
		{[]int{0}, "", ""},
		{[]int{1, 1, 1, 1}, "", "See below.\r\n"},
		{[]int{2, 1, 2}, "", ""},
	} {
		got := string(m.SectionBytes(c.path, c.spec, []string{"subject"}, false))
		if got != c.want {
			t.Errorf("%v %s: got %q, want %q", c.path, c.spec, got, c.want)
		}
	}
}

func TestBinary(t *testing.T) {
	m := parseString(t, "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: x-uuencode\n\nbegin\n--b\nContent-Transfer-Encoding: quoted-printable\n\na=3Db=\nc =ZZ=\n--b\nContent-Transfer-Encoding: BASE64\n\naGVs\nbG8=garbage!!\n--b--\n")
	if _, _, err := m.Binary([]int{1}); !errors.Is(err, ErrUnknownCTE) {
		t.Errorf("x-uuencode: %v, want ErrUnknownCTE", err)
	}
	for path, want := range map[int]string{2: "a=bc =ZZ", 3: "hello\x81\xaa\xdbj\a"} {
		r, n, err := m.Binary([]int{path})
		got, _ := io.ReadAll(r)
		if err != nil || string(got) != want || n != int64(len(got)) {
			t.Errorf("part %d: %q (size %d) %v, want %q", path, got, n, err, want)
		}
	}
	if n, err := m.BinarySize([]int{9}); n != 0 || err != nil {
		t.Errorf("missing part: %d %v", n, err)
	}
}

func TestHeaderValuesAndDate(t *testing.T) {
	m := parseString(t, "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus\n =?ISO-8859-1?Q?K=F6ln?=\nX-A: 1\nx-a: 2\nDate: Tue,  2 Jul 2024 08:00:00 -0300 (ART)\n\n")
	if got := m.HeaderValues("subject"); len(got) != 1 || got[0] != "Grüße aus Köln" {
		t.Errorf("subject: %q", got)
	}
	if got := m.HeaderValues("X-A"); len(got) != 2 || got[1] != "2" {
		t.Errorf("X-A: %q", got)
	}
	d, ok := m.Date()
	if !ok || !d.Equal(time.Date(2024, 7, 2, 11, 0, 0, 0, time.UTC)) {
		t.Errorf("date %v %v", d, ok)
	}
	for _, s := range []string{"2 Jul 2024 08:00:00 -0300", "Tue 2 Jul 2024 08:00:00 -0300", "Tue, 2 Jul 2024 08:00 -0300"} {
		if _, ok := parseDate(s); !ok {
			t.Errorf("date %q not read", s)
		}
	}
	if _, ok := parseDate("yesterday"); ok {
		t.Error("garbage date read")
	}
}

func TestContains(t *testing.T) {
	m := parseFile(t, "testdata/msg/alternative.eml")
	for _, c := range []struct {
		needle string
		text   bool
		want   bool
	}{
		{"VERANO ☀ CON", false, true},       // quoted-printable undone, case folded
		{"navegador", false, true},          // across a soft line break
		{"ofertas de verano ☀", true, true}, // in the decoded Subject
		{"shop, inc", false, false},         // header text is not BODY
		{"shop, inc", true, true},           // but is TEXT
		{"=E2=98=80", false, false},         // encoded form is not the text
	} {
		if got := m.Contains(c.needle, c.text); got != c.want {
			t.Errorf("Contains(%q, %v) = %v", c.needle, c.text, got)
		}
	}
	// A match across the reader's chunk boundary.
	body := strings.Repeat("x", 32*1024-3) + "NEEDLE"
	if !parseString(t, "\n"+body).Contains("needle", false) {
		t.Error("match across chunks missed")
	}
	if !parseString(t, "Content-Type: text/plain; charset=iso-8859-1\n\nCaf\xe9").Contains("CAFÉ", false) {
		t.Error("latin-1 body not matched")
	}
	if parseString(t, "Content-Type: image/png\n\nsecret").Contains("secret", false) {
		t.Error("non-text part searched")
	}
}

func TestWriteStrings(t *testing.T) {
	for _, c := range []struct {
		in     string
		utf8ok bool
		want   string
	}{
		{"plain", false, `"plain"`},
		{`a "q" \ b`, false, `"a \"q\" \\ b"`},
		{"Grüße", false, "{7}\r\nGrüße"},
		{"Grüße", true, `"Grüße"`},
		{"bad\xff", true, "{4}\r\nbad\xff"},
		{"nul\x00x", false, `"nulx"`},
		{"two\r\nlines", false, "{10}\r\ntwo\r\nlines"},
	} {
		if got := string(appendString(nil, c.in, c.utf8ok)); got != c.want {
			t.Errorf("%q utf8=%v: %q, want %q", c.in, c.utf8ok, got, c.want)
		}
	}
	var b bytes.Buffer
	WriteEnvelope(&b, Envelope{Subject: ns("s")}, true)
	if b.String() != `(NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL)` {
		t.Error(b.String())
	}
}

// TestMaxParts: past the limit the rest of the file is the last part's body,
// and the structure stays well-formed and small.
func TestLimits(t *testing.T) {
	var s strings.Builder
	s.WriteString("Content-Type: multipart/mixed; boundary=B\n\n")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&s, "--B\n\npart %d\n", i)
	}
	s.WriteString("--B--\n")
	msg := s.String()
	m, _ := ParseLimits(strings.NewReader(msg), int64(len(msg)), Limits{MaxParts: 10, MaxDepth: 5, MaxHeaderBytes: 100})
	st := m.BodyStructure()
	if n := len(st.Children); n != 9 {
		t.Fatalf("%d children, want 9 (10 parts with the root)", n)
	}
	last := string(m.SectionBytes([]int{9}, "", nil, false))
	if !strings.HasPrefix(last, "part 8\r\n--B\r\n") || !strings.HasSuffix(last, "--B--\r\n") {
		t.Errorf("last part does not hold the rest: %q", last)
	}
	if m.Size() != int64(len(strings.ReplaceAll(msg, "\n", "\r\n"))) {
		t.Error("size wrong past the limit")
	}

	// Depth: nested multiparts beyond MaxDepth are leaves with the empty part.
	deep := ""
	for i := 0; i < 20; i++ {
		// x1y is no prefix of x10y: prefix matching would see a delimiter.
		deep += fmt.Sprintf("Content-Type: multipart/mixed; boundary=x%dy\n\n--x%dy\n", i, i)
	}
	m, _ = ParseLimits(strings.NewReader(deep), int64(len(deep)), Limits{MaxParts: 100, MaxDepth: 5, MaxHeaderBytes: 1000})
	out := string(AppendBodyStructure(nil, m.BodyStructure(), true, false))
	if strings.Count(out, `"mixed"`) != 6 || !strings.Contains(out, `("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0`) {
		t.Errorf("depth limit: %s", out)
	}
}

// TestLazy: ENVELOPE needs the header only; the tree waits for BODYSTRUCTURE.
func TestLazy(t *testing.T) {
	msg := "Subject: lazy\n\n" + strings.Repeat("body line\n", 10000)
	cr := &countingReaderAt{r: strings.NewReader(msg)}
	m, _ := Parse(cr, int64(len(msg)))
	m.Envelope()
	if cr.n > 64*1024 {
		t.Errorf("ENVELOPE read %d bytes", cr.n)
	}
	if m.root != nil {
		t.Error("tree parsed for ENVELOPE")
	}
}

type countingReaderAt struct {
	r io.ReaderAt
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

func TestCharsets(t *testing.T) {
	m := parseString(t, "Subject: =?windows-1252?Q?=80_5_=96_caf=E9?= =?iso-8859-15?Q?=A4?= =?koi8-r?Q?=F0?=\nContent-Type: text/plain; charset=windows-1252\n\n\x93quoted\x94 caf\xe9\n")
	if got := m.HeaderValues("Subject"); got[0] != "€ 5 – café€ =?koi8-r?Q?=F0?=" {
		t.Errorf("%q", got)
	}
	if !m.Contains("“QUOTED” CAFÉ", false) {
		t.Error("windows-1252 body not matched")
	}
}
