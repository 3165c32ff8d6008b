package imapwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// countingReader tells how far the reader got, to prove that every
// outcome of ReadCommand makes progress.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

var fuzzLimits = Limits{MaxLine: 1024, MaxLiteral: 4096, MaxNonSync: 512, MaxDepth: 8, MaxArgs: 64, MaxSkip: 8192}

func checkArgs(t *testing.T, args []Arg, depth int, count *int, lit *int64) {
	for _, a := range args {
		*count++
		switch a.Kind {
		case KindList:
			if depth+1 > fuzzLimits.MaxDepth {
				t.Fatalf("list nested %d deep", depth+1)
			}
			checkArgs(t, a.List, depth+1, count, lit)
		case KindLiteral:
			*lit += int64(len(a.Str))
			if !a.Binary && strings.IndexByte(a.Str, 0) >= 0 {
				t.Fatal("NUL in a literal")
			}
		case KindQuoted:
			if strings.ContainsAny(a.Str, "\x00\r\n") {
				t.Fatalf("quoted string with NUL, CR or LF: %q", a.Str)
			}
		case KindAtom:
			if a.Str == "" {
				t.Fatal("empty atom")
			}
		}
	}
}

func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"a1 NOOP\r\n",
		"a2 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)\r\n",
		"a3 LOGIN {3}\r\nbob \"p\\\"w\"\r\n",
		"a4 APPEND INBOX (\\Seen) \"05-Feb-2024 09:03:07 -0300\" {5+}\r\nhello\r\n",
		"a5 APPEND INBOX ~{3}\r\na\x00b\r\n",
		"a6 APPEND INBOX {1073741824}\r\nb NOOP\r\n",
		"a7 APPEND INBOX {5000+}\r\nxx\r\n",
		"a8 X ((((((((((()))))))))))\r\n",
		"a9 SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR FROM \"x\" NOT (SEEN LARGER 5)\r\n",
		"b1 SELECT \"caf\xc3\xa9\"\r\n",
		"\r\n\r\n",
		"a LOGIN \"x {5+}\r\nhe\r\no\r\nb NOOP\r\n",
		"a\x00 NOOP\nb NOOP\n",
		"a X (\r\n",
		"t UID X {2+}\r\nab ~{1}\r\nc\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, utf8ok bool) {
		cr := &countingReader{r: bytes.NewReader(data)}
		br := bufio.NewReaderSize(cr, 64)
		r := NewReader(br, fuzzLimits, func(l LiteralInfo) error {
			if l.Size < 0 || l.Size > fuzzLimits.MaxLiteral || l.NonSync && l.Size > fuzzLimits.MaxNonSync {
				t.Fatalf("asked for a literal out of limits: %+v", l)
			}
			if l.Size == 13 {
				return errors.New("refused")
			}
			return nil
		})
		r.SetUTF8(utf8ok)
		last := int64(-1)
		for {
			cmd, err := r.ReadCommand()
			pos := cr.n - int64(br.Buffered())
			var e *Error
			switch {
			case err == nil:
				if cmd.Tag == "" || cmd.Name == "" || cmd.Name != strings.ToUpper(cmd.Name) {
					t.Fatalf("bad command %+v", cmd)
				}
				var n int
				var lit int64
				checkArgs(t, cmd.Args, 0, &n, &lit)
				if n > fuzzLimits.MaxArgs || lit > fuzzLimits.MaxLiteral {
					t.Fatalf("%d args, %d literal octets", n, lit)
				}
			case errors.As(err, &e):
				if e.Fatal {
					return
				}
			default:
				return
			}
			if pos <= last {
				t.Fatalf("no progress at %d", pos)
			}
			last = pos
		}
	})
}

func FuzzParseSeqSet(f *testing.F) {
	for _, s := range []string{"1", "1,3:5,7:*", "*", "$", "4294967295", "4294967296", "0", "1:*", "5:3,2,1:1", "01", ",", "1,$"} {
		f.Add(s, uint32(10))
	}
	f.Fuzz(func(t *testing.T, s string, max uint32) {
		set, err := ParseSeqSet(s)
		if err != nil {
			return
		}
		again, err := ParseSeqSet(set.String())
		if err != nil || again.String() != set.String() {
			t.Fatalf("%q wrote %q, which reads back as %q (%v)", s, set.String(), again.String(), err)
		}
		rs := set.Ranges(max)
		for i, r := range rs {
			if r.Start == 0 || r.Start > r.Stop {
				t.Fatalf("bad range %v", r)
			}
			if i > 0 && uint64(rs[i-1].Stop)+1 >= uint64(r.Start) {
				t.Fatalf("ranges not merged: %v", rs)
			}
			for _, n := range []uint32{r.Start, r.Stop} {
				if !set.Contains(n, max) {
					t.Fatalf("%q max %d: Ranges has %d, Contains does not", s, max, n)
				}
			}
			if r.Start > 1 && set.Contains(r.Start-1, max) && (i == 0 || rs[i-1].Stop != r.Start-1) {
				t.Fatalf("%q max %d: Contains %d outside Ranges %v", s, max, r.Start-1, rs)
			}
		}
		if set.Contains(0, max) {
			t.Fatal("contains 0")
		}
		// "*" in an empty mailbox is no message at all: the ranges are
		// those of the set without its "*" ranges.
		if max == 0 {
			var plain SeqSet
			for _, x := range set.Set {
				if x.Start != 0 && x.Stop != 0 {
					plain.Set = append(plain.Set, x)
				}
			}
			if !slices.Equal(plain.Ranges(7), rs) {
				t.Fatalf("%q on an empty mailbox: %v, want %v", s, rs, plain.Ranges(7))
			}
		}
	})
}

func FuzzParseSearch(f *testing.F) {
	for _, s := range []string{
		"ALL", "UNSEEN", "RETURN (MIN MAX COUNT SAVE) CHARSET UTF-8 OR FROM \"x\" NOT (SEEN LARGER 5)",
		"HEADER X-A \"b\" SINCE 1-Feb-1994", "UID 1:* 2,4:5 $", "NOT NOT NOT ALL", "OR OR OR A B C D",
		"MODSEQ \"/flags/\\\\Seen\" all 620162338", "KEYWORD $Junk UNKEYWORD x NEW OLD RECENT",
		"TEXT {3}\r\nabc BODY \"x\"", "((((ALL))))", "CHARSET KOI8-R ALL",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := NewReader(bufio.NewReader(strings.NewReader("a SEARCH "+s+"\r\n")), fuzzLimits, nil)
		r.SetUTF8(true)
		cmd, err := r.ReadCommand()
		if err != nil {
			return
		}
		req, err := ParseSearch(cmd.Args, fuzzLimits.MaxDepth)
		if err != nil {
			return
		}
		var walk func(k SearchKey, depth int)
		walk = func(k SearchKey, depth int) {
			// NEW adds one level of its own.
			if depth > fuzzLimits.MaxDepth+2 {
				t.Fatalf("tree %d deep", depth)
			}
			switch k.Op {
			case SearchNot:
				if len(k.Keys) != 1 {
					t.Fatalf("NOT with %d keys", len(k.Keys))
				}
			case SearchOr:
				if len(k.Keys) != 2 {
					t.Fatalf("OR with %d keys", len(k.Keys))
				}
			}
			for _, sub := range k.Keys {
				walk(sub, depth+1)
			}
		}
		walk(req.Key, 0)
	})
}

func FuzzParseFetchAtts(f *testing.F) {
	for _, s := range []string{
		"FLAGS", "ALL", "(FLAGS UID MODSEQ)", "BODY.PEEK[HEADER.FIELDS (From To)]<0.100>", "BODY[1.2.MIME]",
		"BINARY.PEEK[1]<0.10>", "BINARY.SIZE[2]", "(BODY[HEADER.FIELDS.NOT (\"X\" Y)] RFC822.SIZE)", "BODY[]<0.0>",
		"(FLAGS) (CHANGEDSINCE 5 VANISHED)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if att, err := ParseFetchAtt(s); err == nil {
			if att.Partial != nil && att.Partial.Count == 0 {
				t.Fatal("partial of zero octets")
			}
			if att.Section != nil {
				for _, p := range att.Section.Part {
					if p == 0 {
						t.Fatal("part 0")
					}
				}
			}
		}
		r := NewReader(bufio.NewReader(strings.NewReader("a FETCH 1 "+s+"\r\n")), fuzzLimits, nil)
		cmd, err := r.ReadCommand()
		if err != nil || len(cmd.Args) < 2 {
			return
		}
		ParseFetchAtts(cmd.Args[1])
		if len(cmd.Args) > 2 {
			ParseFetchModifiers(cmd.Args[2])
		}
	})
}

func FuzzDecodeMailbox(f *testing.F) {
	for _, s := range []string{"INBOX", "&-", "&AOk-", "caf&AOk-/ni&APE-o", "&U,BTFw-", "&2D3eAA-", "&AOk", "&AOk-&AOk-", "&2D0-", "&AGE-", "&A/k-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if dec, err := DecodeMailbox(s); err == nil {
			if !utf8.ValidString(dec) {
				t.Fatalf("%q decoded to invalid UTF-8 %q", s, dec)
			}
			if enc := EncodeMailbox(dec); enc != s {
				t.Fatalf("%q decoded to %q, which encodes as %q: two spellings of one name", s, dec, enc)
			}
		}
		if utf8.ValidString(s) {
			enc := EncodeMailbox(s)
			if dec, err := DecodeMailbox(enc); err != nil || dec != s {
				t.Fatalf("%q encoded as %q, decoded as %q (%v)", s, enc, dec, err)
			}
		}
	})
}

// FuzzQuoteReadBack: whatever String and Astring write, the reader reads
// back as the same string.
func FuzzQuoteReadBack(f *testing.F) {
	for _, s := range []string{"", "INBOX", "NIL", "a b", `a"b\c`, "café", "caf\xe9", "a\r\nb", "x]y", "{5}", "~{1}", "a[b c]", "BODY[x y]", "\\Seen"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, utf8ok bool) {
		if strings.IndexByte(s, 0) >= 0 {
			return
		}
		for _, enc := range []string{String(s, utf8ok), Astring(s, utf8ok)} {
			r := NewReader(bufio.NewReader(strings.NewReader("t X "+enc+"\r\n")), Limits{MaxLine: 1 << 20, MaxLiteral: 1 << 20}, nil)
			r.SetUTF8(utf8ok)
			cmd, err := r.ReadCommand()
			if err != nil {
				t.Fatalf("%q written as %q: %v", s, enc, err)
			}
			if got, _ := cmd.Args[0].AString(); len(cmd.Args) != 1 || got != s {
				t.Fatalf("%q written as %q read back as %q (%d args)", s, enc, got, len(cmd.Args))
			}
		}
	})
}
