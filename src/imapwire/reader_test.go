package imapwire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// render writes args back in a canonical form for comparisons: atoms bare,
// strings quoted with %q, literals as {n}%q, lists in parentheses.
func render(args []Arg) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch a.Kind {
		case KindAtom:
			b.WriteString(a.Str)
		case KindQuoted:
			fmt.Fprintf(&b, "%q", a.Str)
		case KindLiteral:
			if a.Binary {
				b.WriteByte('~')
			}
			fmt.Fprintf(&b, "{%d}%q", len(a.Str), a.Str)
		case KindList:
			b.WriteString("(" + render(a.List) + ")")
		}
	}
	return b.String()
}

// transcript reads commands until the stream ends or breaks and describes
// each outcome on one line.
func transcript(r *Reader) []string {
	var out []string
	for range 100 {
		cmd, err := r.ReadCommand()
		var e *Error
		switch {
		case err == nil:
			s := cmd.Tag + " "
			if cmd.UID {
				s += "UID "
			}
			s += cmd.Name
			if len(cmd.Args) > 0 {
				s += " " + render(cmd.Args)
			}
			out = append(out, s)
			continue
		case errors.As(err, &e):
			s := "BAD tag=" + e.Tag
			if e.Code != "" {
				s += " [" + e.Code + "]"
			}
			if e.Fatal {
				out = append(out, s+" FATAL")
				return out
			}
			out = append(out, s)
			continue
		case errors.Is(err, io.EOF):
			return out
		default:
			return append(out, "IO "+err.Error())
		}
	}
	return append(out, "too many")
}

func newTestReader(in string, lim Limits) (*Reader, *[]LiteralInfo) {
	var seen []LiteralInfo
	r := NewReader(bufio.NewReader(strings.NewReader(in)), lim, func(l LiteralInfo) error {
		seen = append(seen, l)
		return nil
	})
	return r, &seen
}

func TestReadCommand(t *testing.T) {
	deep := strings.Repeat("(", 10000) + strings.Repeat(")", 10000)
	tests := []struct {
		name string
		in   string
		lim  Limits
		utf8 bool
		want []string
	}{
		{"noop", "a1 NOOP\r\n", Limits{}, false, []string{"a1 NOOP"}},
		{"lower case name", "a1 noop\r\n", Limits{}, false, []string{"a1 NOOP"}},
		{"uid prefix", "a2 uid fetch 1:* (FLAGS)\r\n", Limits{}, false, []string{"a2 UID FETCH 1:* (FLAGS)"}},
		{"uid alone", "a2 UID\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a2", "b NOOP"}},
		{"bare LF", "a NOOP\nb NOOP\n", Limits{}, false, []string{"a NOOP", "b NOOP"}},
		{"quoted escapes", `a LOGIN "jo\"e" "p\\w"` + "\r\n", Limits{}, false, []string{`a LOGIN "jo\"e" "p\\w"`}},
		{"quoted bad escape", `a LOGIN "a\b" x` + "\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"quoted unterminated", "a LOGIN \"abc\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"quoted 8-bit rev1", "a SELECT \"caf\xc3\xa9\"\r\n", Limits{}, false, []string{"BAD tag=a"}},
		{"quoted UTF-8 rev2", "a SELECT \"caf\xc3\xa9\"\r\n", Limits{}, true, []string{`a SELECT "café"`}},
		{"quoted bad UTF-8 rev2", "a SELECT \"caf\xe9\"\r\nb NOOP\r\n", Limits{}, true, []string{"BAD tag=a", "b NOOP"}},
		{"quoted NUL", "a LOGIN \"a\x00b\" x\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"quoted tab allowed", "a LOGIN \"a\tb\" x\r\n", Limits{}, false, []string{"a LOGIN \"a\\tb\" x"}},
		{"NUL in atom", "a SELECT IN\x00BOX\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"NUL in tag", "a\x00 NOOP\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=", "b NOOP"}},
		{"bare CR", "a NO\rOP\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"8-bit atom", "a SELECT caf\xc3\xa9\r\n", Limits{}, true, []string{"BAD tag=a"}},
		{"empty line", "\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=", "b NOOP"}},
		{"no command", "a\r\n", Limits{}, false, []string{"BAD tag="}},
		{"plus tag", "+ NOOP\r\n", Limits{}, false, []string{"BAD tag="}},
		{"star tag", "* NOOP\r\n", Limits{}, false, []string{"BAD tag="}},
		{"double space", "a SELECT  INBOX\r\n", Limits{}, false, []string{"BAD tag=a"}},
		{"trailing space", "a NOOP \r\n", Limits{}, false, []string{"BAD tag=a"}},
		{"flags", `a STORE 1 +FLAGS.SILENT (\Seen \Deleted $Junk)` + "\r\n", Limits{}, false,
			[]string{`a STORE 1 +FLAGS.SILENT (\Seen \Deleted $Junk)`}},
		{"lone backslash", "a STORE 1 FLAGS (\\)\r\n", Limits{}, false, []string{"BAD tag=a"}},
		{"empty list", "a STORE 1 FLAGS ()\r\n", Limits{}, false, []string{"a STORE 1 FLAGS ()"}},
		{"nested lists", "a X (a (b (c)) ())\r\n", Limits{}, false, []string{"a X (a (b (c)) ())"}},
		{"unterminated list", "a STORE 1 FLAGS (\\Seen\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"extra close", "a X a)\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"10000 deep", "a X " + deep + "\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"depth limit", "a X ((()))\r\n", Limits{MaxDepth: 2}, false, []string{"BAD tag=a"}},
		{"depth ok", "a X (())\r\n", Limits{MaxDepth: 2}, false, []string{"a X (())"}},
		{"too many args", "a X 1 2 3 4\r\nb X 1 2 3\r\n", Limits{MaxArgs: 3}, false, []string{"BAD tag=a", "b X 1 2 3"}},
		{"fetch section", "a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100> UID)\r\n", Limits{}, false,
			[]string{`a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From "To")]<0.100> UID)`}},
		{"fetch empty section", "a FETCH 1 BODY[]\r\n", Limits{}, false, []string{"a FETCH 1 BODY[]"}},
		{"unclosed bracket atom", "a SELECT a[b\r\n", Limits{}, false, []string{"a SELECT a[b"}},
		{"brackets only after a section name", "a RENAME a[ b]\r\n", Limits{}, false, []string{"a RENAME a[ b]"}},
		{"lower-case section name", "a FETCH 1 body.peek[header.fields (a b)]\r\n", Limits{}, false,
			[]string{"a FETCH 1 body.peek[header.fields (a b)]"}},
		// Left for ParseFetchAtts to refuse.
		{"unclosed section", "a FETCH 1 BODY[HEADER.FIELDS (a b)\r\n", Limits{}, false, []string{"a FETCH 1 BODY[HEADER.FIELDS (a b)"}},
		{"resp-special in atom", "a SELECT a]b\r\n", Limits{}, false, []string{"a SELECT a]b"}},
		{"list wildcards", "a LIST \"\" %/*\r\n", Limits{}, false, []string{`a LIST "" %/*`}},

		// Literals.
		{"literal", "a LOGIN {3}\r\nbob {4}\r\npass\r\n", Limits{}, false, []string{`a LOGIN {3}"bob" {4}"pass"`}},
		{"literal in list", "a X ({3}\r\nabc)\r\n", Limits{}, false, []string{`a X ({3}"abc")`}},
		{"literal empty", "a LOGIN {0}\r\n {0}\r\n\r\n", Limits{}, false, []string{`a LOGIN {0}"" {0}""`}},
		{"literal crlf inside", "a APPEND x {4}\r\n\r\n\r\n\r\n", Limits{}, false, []string{`a APPEND x {4}"\r\n\r\n"`}},
		{"literal plus", "a LOGIN {3+}\r\nbob {4+}\r\npass\r\n", Limits{}, false, []string{`a LOGIN {3}"bob" {4}"pass"`}},
		{"literal8", "a APPEND x ~{3}\r\na\x00b\r\n", Limits{}, false, []string{"a APPEND x ~{3}\"a\\x00b\""}},
		{"literal8 nonsync", "a APPEND x ~{1+}\r\n\x00\r\n", Limits{}, false, []string{"a APPEND x ~{1}\"\\x00\""}},
		{"NUL in literal", "a APPEND x {3}\r\na\x00b\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"literal not at end", "a LOGIN {3} x\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"literal bad size", "a LOGIN {x}\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"literal signed size", "a LOGIN {+3}\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"literal then garbage", "a LOGIN {3}\r\nbobx\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"literal size overflow", "a APPEND x {99999999999999999999}\r\nb NOOP\r\n", Limits{}, false, []string{"BAD tag=a", "b NOOP"}},
		{"sync literal of a gigabyte", "a APPEND x {1073741824}\r\nb NOOP\r\n", Limits{}, false,
			[]string{"BAD tag=a [TOOBIG]", "b NOOP"}},
		{"sync literal of 2^63-1", "a APPEND x {9223372036854775807}\r\nb NOOP\r\n", Limits{}, false,
			[]string{"BAD tag=a [TOOBIG]", "b NOOP"}},
		{"literals over the command's total", "a X {6}\r\nabcdef {6}\r\nb NOOP\r\n", Limits{MaxLiteral: 10}, false,
			[]string{"BAD tag=a [TOOBIG]", "b NOOP"}},
		{"LITERAL- over 4096 skipped", "a APPEND x {5000+}\r\n" + strings.Repeat("x", 5000) + " more {3+}\r\nabc\r\nb NOOP\r\n", Limits{}, false,
			[]string{"BAD tag=a [TOOBIG]", "b NOOP"}},
		{"LITERAL+ allows more", "a APPEND x {5000+}\r\n" + strings.Repeat("x", 5000) + "\r\n", Limits{MaxNonSync: 1 << 20}, false,
			[]string{"a APPEND x {5000}\"" + strings.Repeat("x", 5000) + "\""}},
		{"nonsync literal of a gigabyte", "a APPEND x {1073741824+}\r\nxxxx", Limits{}, false,
			[]string{"BAD tag=a [TOOBIG] FATAL"}},
		{"bad line ending in nonsync literal", "a LOGIN \"x {5+}\r\nhe\r\no\r\nb NOOP\r\n", Limits{}, false,
			[]string{"BAD tag=a", "b NOOP"}},
		{"bad line ending in sync literal", "a LOGIN \"x {5}\r\nb NOOP\r\n", Limits{}, false,
			[]string{"BAD tag=a", "b NOOP"}},
		{"eof in literal", "a LOGIN {5}\r\nab", Limits{}, false, []string{"IO unexpected EOF"}},
		{"eof mid line", "a LOGIN", Limits{}, false, []string{"IO unexpected EOF"}},

		// Lines.
		{"line at limit", "a X " + strings.Repeat("y", 12) + "\r\n", Limits{MaxLine: 16}, false, []string{"a X " + strings.Repeat("y", 12)}},
		{"line over limit", "a X " + strings.Repeat("y", 13) + "\r\nb NOOP\r\n", Limits{MaxLine: 16}, false,
			[]string{"BAD tag=a [TOOBIG]", "b NOOP"}},
		{"limit counts all lines", "a X {1}\r\nz " + strings.Repeat("y", 10) + "\r\nb NOOP\r\n", Limits{MaxLine: 16}, false,
			[]string{"BAD tag=a [TOOBIG]", "b NOOP"}},
		{"long line after literal skipped with its literal", "a X {1}\r\nz " + strings.Repeat("y", 40) + " {3+}\r\nabc\r\nb NOOP\r\n",
			Limits{MaxLine: 16}, false, []string{"BAD tag=a [TOOBIG]", "b NOOP"}},
		{"1 MiB line", "a APPEND " + strings.Repeat("y", 1<<20) + "\r\nb NOOP\r\n", Limits{MaxSkip: 2 << 20}, false,
			[]string{"BAD tag=a [TOOBIG]", "b NOOP"}},
		{"1 MiB without CRLF", "a APPEND " + strings.Repeat("y", 1<<20), Limits{MaxSkip: 2 << 20}, false,
			[]string{"IO unexpected EOF"}},
		{"endless line", "a APPEND " + strings.Repeat("y", 3<<20) + "\r\nb NOOP\r\n", Limits{}, false,
			[]string{"BAD tag=a [TOOBIG] FATAL"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newTestReader(tc.in, tc.lim)
			r.SetUTF8(tc.utf8)
			got := transcript(r)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// TestLiteralCallbackBeforeRead: the client sends a synchronising literal's
// octets only after "+": the reader must ask first and read after.
func TestLiteralCallbackBeforeRead(t *testing.T) {
	pr, pw := io.Pipe()
	asked := make(chan LiteralInfo, 1)
	r := NewReader(bufio.NewReader(pr), Limits{}, func(l LiteralInfo) error {
		asked <- l
		return nil
	})
	go func() {
		io.WriteString(pw, "t1 APPEND INBOX (\\Seen) {5}\r\n")
		select {
		case <-asked:
		case <-time.After(5 * time.Second):
			pw.CloseWithError(errors.New("reader did not ask for the literal"))
			return
		}
		io.WriteString(pw, "hello\r\n")
	}()
	cmd, err := r.ReadCommand()
	if err != nil {
		t.Fatal(err)
	}
	if got := render(cmd.Args); got != `INBOX (\Seen) {5}"hello"` {
		t.Errorf("args %s", got)
	}
}

func TestLiteralInfo(t *testing.T) {
	r, seen := newTestReader("t UID X {2+}\r\nab ~{1}\r\nc\r\n", Limits{})
	if _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	want := []LiteralInfo{{Tag: "t", Name: "X", Size: 2, NonSync: true}, {Tag: "t", Name: "X", Size: 1, Binary: true}}
	if fmt.Sprint(*seen) != fmt.Sprint(want) {
		t.Errorf("got %v want %v", *seen, want)
	}
}

func TestLiteralRefused(t *testing.T) {
	quota := errors.New("over quota")
	for _, tc := range []struct{ in, next string }{
		// The client waits for "+": nothing follows.
		{"a APPEND INBOX {10}\r\nb NOOP\r\n", "b"},
		// It does not wait: the octets follow and are skipped.
		{"a APPEND INBOX {10+}\r\n0123456789\r\nb NOOP\r\n", "b"},
	} {
		r := NewReader(bufio.NewReader(strings.NewReader(tc.in)), Limits{}, func(LiteralInfo) error { return quota })
		_, err := r.ReadCommand()
		var e *Error
		if !errors.As(err, &e) || e.Tag != "a" || e.Fatal || !errors.Is(err, quota) {
			t.Fatalf("%q: got %v", tc.in, err)
		}
		cmd, err := r.ReadCommand()
		if err != nil || cmd.Tag != tc.next {
			t.Fatalf("%q: after refusal got %v %v", tc.in, cmd, err)
		}
	}
}

// TestGigabyteLiteralCostsNothing: a literal announced at a gigabyte is
// neither allocated nor read.
func TestGigabyteLiteralCostsNothing(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	called := false
	r := NewReader(bufio.NewReader(strings.NewReader("a APPEND INBOX {1073741824}\r\nb NOOP\r\n")), Limits{},
		func(LiteralInfo) error { called = true; return nil })
	_, err := r.ReadCommand()
	runtime.ReadMemStats(&after)
	var e *Error
	if !errors.As(err, &e) || e.Code != "TOOBIG" || e.Fatal {
		t.Fatalf("got %v", err)
	}
	if called {
		t.Error("asked for a literal it will refuse")
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("allocated %d bytes", d)
	}
}

// TestLiteralMemoryFollowsData: a literal within the limit that never
// arrives costs what arrived, not what was announced.
func TestLiteralMemoryFollowsData(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, _ := newTestReader("a APPEND INBOX {60000000}\r\nshort", Limits{})
	_, err := r.ReadCommand()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("allocated %d bytes for 5 octets", d)
	}
}

// TestOneByteReads: line ends, literals and resynchronisation do not
// depend on how the octets arrive.
func TestOneByteReads(t *testing.T) {
	in := "a LOGIN {3}\r\nbob \"x\"\r\nb NOOP\nc X " + strings.Repeat("z", 100) + "\r\nd FETCH 1 BODY[TEXT]\r\n"
	r := NewReader(bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), 16), Limits{MaxLine: 50}, nil)
	got := strings.Join(transcript(r), "|")
	want := `a LOGIN {3}"bob" "x"|b NOOP|BAD tag=c [TOOBIG]|d FETCH 1 BODY[TEXT]`
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

// TestLimitExactAcrossReads: a line of exactly MaxLine octets is taken
// however its CR and LF arrive.
func TestLimitExactAcrossReads(t *testing.T) {
	for k := 8; k < 40; k++ {
		testLimitExact(t, "a X "+strings.Repeat("y", k))
	}
}

func testLimitExact(t *testing.T, line string) {
	for _, end := range []string{"\r\n", "\n"} {
		r := NewReader(bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(line+end+line+"y"+end+"b NOOP"+end)), 16), Limits{MaxLine: len(line)}, nil)
		got := strings.Join(transcript(r), "|")
		if want := line + "|BAD tag=a [TOOBIG]|b NOOP"; got != want {
			t.Errorf("%q: got %s want %s", end, got, want)
		}
	}
}

func TestReadLineIgnoresLiterals(t *testing.T) {
	r, _ := newTestReader(strings.Repeat("A", 100)+"{5+}\r\nDONE\r\n", Limits{MaxLine: 50})
	var e *Error
	if _, err := r.ReadLine(); !errors.As(err, &e) || e.Fatal {
		t.Fatalf("long line: %v", err)
	}
	if s, err := r.ReadLine(); err != nil || s != "DONE" {
		t.Fatalf("%q %v", s, err)
	}
}

// TestLinearWork: hostile lines within MaxLine cost work in proportion to
// their length. Measured in bytes allocated, not time: a token of 60 000
// "[" once copied its growing prefix at every "[" (gigabytes).
func TestLinearWork(t *testing.T) {
	for _, in := range []string{
		"a X a" + strings.Repeat("[", 60000),
		"a X " + strings.Repeat("BODY[", 12000),
		"a X BODY[" + strings.Repeat("\"[", 30000),
		"a X " + strings.Repeat("a]", 30000),
		"a X " + strings.Repeat("(", 60000),
		"a X " + strings.Repeat("\"\\\"", 20000),
		"a SEARCH " + strings.Repeat("NOT ", 8000) + "ALL",
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r := NewReader(bufio.NewReader(strings.NewReader(in+"\r\n")), Limits{}, nil)
		if cmd, err := r.ReadCommand(); err == nil && cmd.Name == "SEARCH" {
			ParseSearch(cmd.Args, 0)
		}
		runtime.ReadMemStats(&after)
		if d := after.TotalAlloc - before.TotalAlloc; d > 8<<20 {
			t.Errorf("%.20q...: %d bytes allocated for %d octets", in, d, len(in))
		}
	}
}

func TestTagKeptOnLongLine(t *testing.T) {
	r, _ := newTestReader("x7 APPEND "+strings.Repeat("y", 100000)+"\r\n", Limits{})
	_, err := r.ReadCommand()
	var e *Error
	if !errors.As(err, &e) || e.Tag != "x7" || e.Code != "TOOBIG" {
		t.Fatalf("got %#v", err)
	}
}

func TestReadLine(t *testing.T) {
	r, _ := newTestReader("dGVzdA==\r\n"+strings.Repeat("A", 100)+"\r\nDONE\n", Limits{MaxLine: 50})
	if s, err := r.ReadLine(); err != nil || s != "dGVzdA==" {
		t.Fatalf("%q %v", s, err)
	}
	var e *Error
	if _, err := r.ReadLine(); !errors.As(err, &e) || e.Fatal {
		t.Fatalf("long line: %v", err)
	}
	if s, err := r.ReadLine(); err != nil || s != "DONE" {
		t.Fatalf("%q %v", s, err)
	}
}

func TestArgHelpers(t *testing.T) {
	r, _ := newTestReader("a X NIL nil \"NIL\" {1}\r\nz (a)\r\n", Limits{})
	cmd, err := r.ReadCommand()
	if err != nil {
		t.Fatal(err)
	}
	a := cmd.Args
	if !a[0].IsNIL() || !a[1].IsNIL() || a[2].IsNIL() || a[3].IsNIL() {
		t.Error("IsNIL")
	}
	if !a[2].IsString() || !a[3].IsString() || a[0].IsString() {
		t.Error("IsString")
	}
	if s, ok := a[3].AString(); !ok || s != "z" {
		t.Error("AString literal")
	}
	if _, ok := a[4].AString(); ok {
		t.Error("AString of a list")
	}
}
