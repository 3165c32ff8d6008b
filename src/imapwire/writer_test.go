package imapwire

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

func TestWriter(t *testing.T) {
	var sb strings.Builder
	bw := bufio.NewWriter(&sb)
	w := NewWriter(bw)
	w.Tagged("a1", "OK", "READ-WRITE", "SELECT completed")
	w.Tagged("a2", "NO", "", "No such mailbox \"x\r\n* BYE forged\"")
	w.Tagged("*", "BAD", "", "")
	w.Untagged("3 EXISTS")
	w.Untagged("LIST () \"/\" " + Astring("a b", false))
	w.Continue("")
	w.Continue("Send\nmore")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "a1 OK [READ-WRITE] SELECT completed\r\n" +
		"a2 NO No such mailbox \"x  * BYE forged\"\r\n" +
		"* BAD BAD\r\n" +
		"* 3 EXISTS\r\n" +
		"* LIST () \"/\" \"a b\"\r\n" +
		"+ Ready\r\n" +
		"+ Send more\r\n"
	if sb.String() != want {
		t.Errorf("got\n%q\nwant\n%q", sb.String(), want)
	}
}

func TestWriterLiteralFrom(t *testing.T) {
	var sb strings.Builder
	bw := bufio.NewWriterSize(&sb, 16)
	w := NewWriter(bw)
	w.Raw("* 1 FETCH (UID 7 BODY[] ")
	body := strings.Repeat("line\r\n", 100)
	if err := w.LiteralFrom(int64(len(body)), strings.NewReader(body+"extra"), false); err != nil {
		t.Fatal(err)
	}
	w.Raw(" BINARY[1] ")
	if err := w.LiteralFrom(2, strings.NewReader("\x00x"), true); err != nil {
		t.Fatal(err)
	}
	w.Raw(")\r\n")
	w.Flush()
	want := "* 1 FETCH (UID 7 BODY[] {600}\r\n" + body + " BINARY[1] ~{2}\r\n\x00x)\r\n"
	if sb.String() != want {
		t.Errorf("got %q", sb.String())
	}
	if err := w.LiteralFrom(10, strings.NewReader("short"), false); err == nil {
		t.Error("a short body was not reported")
	}
}

func TestQuoting(t *testing.T) {
	tests := []struct {
		s            string
		utf8         bool
		astring, str string
	}{
		{"INBOX", false, "INBOX", `"INBOX"`},
		{"", false, `""`, `""`},
		{"NIL", false, `"NIL"`, `"NIL"`},
		{"nil", false, `"nil"`, `"nil"`},
		{"a b", false, `"a b"`, `"a b"`},
		{`a"b\c`, false, `"a\"b\\c"`, `"a\"b\\c"`},
		{"a]b", false, "a]b", `"a]b"`},
		{"a%b", false, `"a%b"`, `"a%b"`},
		{"a*", false, `"a*"`, `"a*"`},
		{"(x)", false, `"(x)"`, `"(x)"`},
		{"{3}", false, `"{3}"`, `"{3}"`},
		{"café", false, "{5}\r\ncafé", "{5}\r\ncafé"},
		{"café", true, `"café"`, `"café"`},
		{"caf\xe9", true, "{4}\r\ncaf\xe9", "{4}\r\ncaf\xe9"},
		{"a\r\nb", true, "{4}\r\na\r\nb", "{4}\r\na\r\nb"},
		{"a\x00b", false, "{3}\r\na\x00b", "{3}\r\na\x00b"},
		{strings.Repeat("x", 2000), false, strings.Repeat("x", 2000), "{2000}\r\n" + strings.Repeat("x", 2000)},
	}
	for _, tc := range tests {
		if got := Astring(tc.s, tc.utf8); got != tc.astring {
			t.Errorf("Astring(%q, %v) = %q, want %q", tc.s, tc.utf8, got, tc.astring)
		}
		if got := String(tc.s, tc.utf8); got != tc.str {
			t.Errorf("String(%q, %v) = %q, want %q", tc.s, tc.utf8, got, tc.str)
		}
	}
	if NString(nil, false) != "NIL" {
		t.Error("NString(nil)")
	}
	s := "x"
	if NString(&s, false) != `"x"` {
		t.Error("NString")
	}
}

// TestQuotingReadsBack: whatever String and Astring write, the reader
// reads back unchanged.
func TestQuotingReadsBack(t *testing.T) {
	for _, s := range []string{"", "INBOX", "a b", `a"b\c`, "café", "a\r\nb", "x]y", "NIL", "{5}", "~{1}", "a[b c]"} {
		for _, utf8 := range []bool{false, true} {
			for _, enc := range []string{String(s, utf8), Astring(s, utf8)} {
				r := NewReader(bufio.NewReader(strings.NewReader("t X "+enc+"\r\n")), Limits{}, nil)
				r.SetUTF8(utf8)
				cmd, err := r.ReadCommand()
				if err != nil {
					t.Errorf("%q as %q: %v", s, enc, err)
					continue
				}
				if got, _ := cmd.Args[0].AString(); got != s || len(cmd.Args) != 1 {
					t.Errorf("%q as %q read back as %q", s, enc, got)
				}
			}
		}
	}
}

func TestModifiedUTF7(t *testing.T) {
	tests := []struct{ utf8, mutf7 string }{
		{"INBOX", "INBOX"},
		{"&", "&-"},
		{"a&b", "a&-b"},
		{"&&", "&-&-"},
		{"é", "&AOk-"},
		{"café/niño", "caf&AOk-/ni&APE-o"},
		{"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"😀", "&2D3eAA-"},
		{"é&", "&AOk-&-"},
		{"\t", "&AAk-"},
	}
	for _, tc := range tests {
		if got := EncodeMailbox(tc.utf8); got != tc.mutf7 {
			t.Errorf("EncodeMailbox(%q) = %q, want %q", tc.utf8, got, tc.mutf7)
		}
		if got, err := DecodeMailbox(tc.mutf7); err != nil || got != tc.utf8 {
			t.Errorf("DecodeMailbox(%q) = %q, %v, want %q", tc.mutf7, got, err, tc.utf8)
		}
	}
	for _, bad := range []string{
		"&",           // unterminated
		"&AOk",        // unterminated
		"&AOk=-",      // padding
		"&A/k-",       // "/" is not in the alphabet
		"&AO-",        // odd bits
		"&AOl-",       // non-zero padding bits
		"&AGE-",       // "a" encoded
		"&AOk-&AOk-",  // two runs: must be one
		"&2D0-",       // lone high surrogate
		"&3gA-",       // lone low surrogate
		"caf\xc3\xa9", // 8-bit
		"a\x00b",      // NUL
		"a\nb",
		"&00\n0-", // base64 with a line break in it
		"&00\r0-",
		"&-&AOk--", // fine until the stray "-"... which is ASCII: valid
	} {
		if bad == "&-&AOk--" {
			if got, err := DecodeMailbox(bad); err != nil || got != "&é-" {
				t.Errorf("DecodeMailbox(%q) = %q, %v", bad, got, err)
			}
			continue
		}
		if got, err := DecodeMailbox(bad); err == nil {
			t.Errorf("DecodeMailbox(%q) accepted as %q", bad, got)
		}
	}
}

func TestMailboxWire(t *testing.T) {
	for _, tc := range []struct {
		in   string
		utf8 bool
		want string
		ok   bool
	}{
		{"inbox", false, "INBOX", true},
		{"Inbox/Sub", false, "INBOX/Sub", true},
		{"INBOXES", false, "INBOXES", true},
		{"caf&AOk-", false, "café", true},
		{"caf&AOk-", true, "caf&AOk-", true},
		{"café", true, "café", true},
		{"café", false, "", false},
		{"caf\xe9", true, "", false},
	} {
		got, err := MailboxFromWire(tc.in, tc.utf8)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("MailboxFromWire(%q, %v) = %q, %v", tc.in, tc.utf8, got, err)
		}
	}
	if got := MailboxToWire("café & co", false); got != `"caf&AOk- &- co"` {
		t.Errorf("MailboxToWire rev1: %q", got)
	}
	if got := MailboxToWire("café", true); got != `"café"` {
		t.Errorf("MailboxToWire rev2: %q", got)
	}
}

func TestCheckMailboxName(t *testing.T) {
	for _, ok := range []string{"INBOX", "Sent", "a/b/c", "café", "a.b", "...x", "x..", "a b", "[Gmail]/All", strings.Repeat("x", 255)} {
		if err := CheckMailboxName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", "..", ".", "a/../b", "a/..", "../a", "a/./b", "/a", "/", "a/", "a//b", "a\x00b", "a\nb", "a\tb", "a\x7fb",
		"a\u0085b", "caf\xe9", "a%", "a*b", strings.Repeat("x", 256), strings.Repeat("é", 128),
	} {
		if err := CheckMailboxName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDateTime(t *testing.T) {
	d := time.Date(2024, 2, 5, 9, 3, 7, 0, time.FixedZone("", -3*3600))
	if got := FormatDateTime(d); got != "05-Feb-2024 09:03:07 -0300" {
		t.Errorf("FormatDateTime = %q", got)
	}
	for _, s := range []string{"05-Feb-2024 09:03:07 -0300", " 5-Feb-2024 09:03:07 -0300", "05-feb-2024 09:03:07 -0300"} {
		got, err := ParseDateTime(s)
		if err != nil || !got.Equal(d) {
			t.Errorf("ParseDateTime(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "5-Feb-2024 09:03:07 -0300", "05-Feb-2024 09:03:07", "32-Jan-2024 00:00:00 +0000",
		"05-Feb-2024 25:00:00 +0000", "05-Foo-2024 09:03:07 -0300", "2024-02-05T09:03:07Z"} {
		if _, err := ParseDateTime(s); err == nil {
			t.Errorf("ParseDateTime(%q) accepted", s)
		}
	}
	for _, s := range []string{"1-Feb-1994", "01-Feb-1994", " 1-Feb-1994", "1-FEB-1994"} {
		got, err := ParseDate(s)
		if err != nil || got != time.Date(1994, 2, 1, 0, 0, 0, 0, time.UTC) {
			t.Errorf("ParseDate(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "29-Feb-2023", "1-Feb-94", "1 Feb 1994", "1-Feb-1994 "} {
		if _, err := ParseDate(s); err == nil {
			t.Errorf("ParseDate(%q) accepted", s)
		}
	}
}
