package logging

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var fixedTime = time.Date(2026, 3, 14, 15, 9, 26, 535897123, time.UTC)

func fixedNow() time.Time { return fixedTime }

func testHeader() header { return newHeader(2, "mx1", "smtpd", 4242) }

func TestFormat5424Exact(t *testing.T) {
	h := testHeader()
	tests := []struct {
		name string
		ev   event
		want string
	}{
		{
			name: "trace and attrs",
			ev: event{time: fixedTime, level: slog.LevelInfo, msg: "accepted", trace: "abcdefghijklmnop",
				attrs: []kv{{"from", "juan@example.org"}, {"size", "1234"}}},
			want: `<22>1 2026-03-14T15:09:26.535897Z mx1 smtpd 4242 - [correo@32473 trace="abcdefghijklmnop"] msg="accepted" from=juan@example.org size=1234`,
		},
		{
			name: "no trace, msgid promoted",
			ev: event{time: fixedTime, level: slog.LevelError, msg: "queue write failed",
				attrs: []kv{{"msgid", "QUEUE"}, {"err", "disk full"}}},
			want: `<19>1 2026-03-14T15:09:26.535897Z mx1 smtpd 4242 QUEUE - msg="queue write failed" err="disk full"`,
		},
		{
			name: "sd escaping",
			ev:   event{time: fixedTime, level: slog.LevelWarn, msg: "x", trace: `a"b\c]d`},
			want: `<20>1 2026-03-14T15:09:26.535897Z mx1 smtpd 4242 - [correo@32473 trace="a\"b\\c\]d"] msg="x"`,
		},
		{
			name: "newlines escaped, empty value quoted, msgid sanitised",
			ev: event{time: fixedTime.In(time.FixedZone("ART", -3*3600)), level: slog.LevelDebug, msg: "line1\nline2",
				attrs: []kv{{"msgid", "has space"}, {"body", "a\r\nb"}, {"empty", ""}}},
			want: `<23>1 2026-03-14T15:09:26.535897Z mx1 smtpd 4242 has_space - msg="line1\nline2" body="a\r\nb" empty=""`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(format5424(&h, &tt.ev, 0))
			if got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestLogfmtQuoting(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"", `""`},
		{"two words", `"two words"`},
		{"a=b", `"a=b"`},
		{`say "hi"`, `"say \"hi\""`},
		{"tab\there", `"tab\there"`},
		{"nl\n", `"nl\n"`},
		{"back\\slash", `back\slash`},
		{"ñandú", "ñandú"},
		{"\u2028sep", `"\u2028sep"`},
		{"bad\xffutf8", `"bad\xffutf8"`},
		{"nbsp\u00a0x", `"nbsp\u00a0x"`},
	}
	for _, tt := range tests {
		got := string(appendLogfmt(nil, tt.in))
		if got != tt.want {
			t.Errorf("appendLogfmt(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestSeverity(t *testing.T) {
	tests := []struct {
		l    slog.Level
		want int
	}{
		{slog.LevelDebug - 4, 7},
		{slog.LevelDebug, 7},
		{slog.LevelInfo, 6},
		{slog.LevelInfo + 2, 6},
		{slog.LevelWarn, 4},
		{slog.LevelError, 3},
		{slog.LevelError + 4, 3},
	}
	for _, tt := range tests {
		if got := severity(tt.l); got != tt.want {
			t.Errorf("severity(%v) = %d, want %d", tt.l, got, tt.want)
		}
	}
}

func TestUDPTruncationKeepsUTF8(t *testing.T) {
	h := testHeader()
	// Multi-byte runes of every width so a byte cut would land mid-rune
	// for some offset.
	for _, filler := range []string{"ñ", "€", "𝄞", "a€"} {
		for pad := range 4 {
			ev := event{time: fixedTime, level: slog.LevelInfo, msg: "big", trace: "t",
				attrs: []kv{{"pad", strings.Repeat("x", pad)}, {"v", strings.Repeat(filler, 3000)}}}
			b := format5424(&h, &ev, maxUDP)
			if len(b) > maxUDP {
				t.Fatalf("%q/%d: %d bytes > %d", filler, pad, len(b), maxUDP)
			}
			if !utf8.Valid(b) {
				t.Fatalf("%q/%d: truncated message is not valid UTF-8", filler, pad)
			}
			if !bytes.HasPrefix(b, []byte(`<22>1 2026-03-14T15:09:26.535897Z mx1 smtpd 4242 - [correo@32473 trace="t"] msg="big"`)) {
				t.Fatalf("header damaged: %.120s", b)
			}
		}
	}
}

func TestOctetFraming(t *testing.T) {
	tests := []struct{ msg, want string }{
		{"<14>1 - - - - - -", "17 <14>1 - - - - - -"},
		{"ñ", "2 ñ"}, // length is in octets, not characters
		{"", "0 "},
	}
	for _, tt := range tests {
		if got := string(frameOctet([]byte(tt.msg))); got != tt.want {
			t.Errorf("frameOctet(%q) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}

func TestFormat3164(t *testing.T) {
	h := testHeader()
	ev := event{time: fixedTime, level: slog.LevelWarn, msg: "slow client", trace: "tr1",
		attrs: []kv{{"msgid", "X"}, {"ip", "10.0.0.9"}}}
	want := "<20>" + fixedTime.Local().Format(time.Stamp) + ` smtpd[4242]: msg="slow client" trace=tr1 msgid=X ip=10.0.0.9`
	if got := string(format3164(&h, &ev, 0)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestHeaderAndJournalNames(t *testing.T) {
	if got := headerField("my host\x00é", 255); got != "my_host___" {
		t.Errorf("headerField = %q", got)
	}
	if got := headerField("", 48); got != "-" {
		t.Errorf("empty headerField = %q", got)
	}
	if got := headerField(strings.Repeat("a", 60), 48); len(got) != 48 {
		t.Errorf("APP-NAME not capped: %d", len(got))
	}
	tests := []struct{ in, want string }{
		{"from", "CORREO_FROM"},
		{"smtp.remote-ip", "CORREO_SMTP_REMOTE_IP"},
		{"ñu", "CORREO___U"},
		{strings.Repeat("k", 100), "CORREO_" + strings.Repeat("K", 57)},
	}
	for _, tt := range tests {
		if got := journalField(tt.in); got != tt.want {
			t.Errorf("journalField(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Groups, WithAttrs, LogValuers and awkward values go through the same
// flattening for every sink.
func TestHandlerFlattening(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Config{Target: TargetStderr, stderr: &buf, now: fixedNow, Level: slog.LevelDebug})
	if err != nil {
		t.Fatal(err)
	}
	var nilErr *myErr
	l.With("conn", 7).WithGroup("smtp").With("helo", "mx.example").
		Debug("rcpt", "to", "ana", slog.Group("tls", "ver", "1.3"), slog.Group("empty"),
			slog.Any("err", errors.New("boom\nbang")), slog.Any("nilerr", nilErr), slog.Any("list", []int{1, 2}),
			slog.Attr{}, slog.Group("", "inline", 1))
	want := `time=2026-03-14T15:09:26.535Z level=DEBUG msg="rcpt" conn=7 smtp.helo=mx.example smtp.to=ana smtp.tls.ver=1.3 smtp.err="boom\nbang" smtp.nilerr="!PANIC: nil myErr" smtp.list="[1 2]" smtp.inline=1` + "\n"
	if buf.String() != want {
		t.Errorf("got\n%swant\n%s", buf.String(), want)
	}
}

type myErr struct{ s string }

func (e *myErr) Error() string {
	if e == nil {
		panic("nil myErr")
	}
	return e.s
}

// Property: whatever strings land in the message, attrs or trace, an RFC 5424
// message is one line of valid UTF-8 with a well-formed SD element, and the
// other formats are one line too.
func TestPropertyOneLineValidSD(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "9", " ", "=", `"`, `\`, "]", "[", "\n", "\r", "\t", "\x00", "\xff", "\xe2\x82",
		"ñ", "€", "𝄞", "\u2028", "\u2029", "\u0085", "\u00a0", "-", "@"}
	gen := func() string {
		var sb strings.Builder
		for range r.IntN(40) {
			sb.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return sb.String()
	}
	h := testHeader()
	for i := range 5000 {
		ev := event{time: fixedTime, level: slog.LevelInfo, msg: gen(), trace: gen(),
			attrs: []kv{{gen(), gen()}, {"msgid", gen()}, {gen(), gen()}}}
		for name, b := range map[string][]byte{
			"5424":   format5424(&h, &ev, maxUDP),
			"3164":   format3164(&h, &ev, maxStream),
			"stderr": bytes.TrimSuffix(formatText(&ev), []byte("\n")),
		} {
			if !utf8.Valid(b) {
				t.Fatalf("case %d %s: invalid UTF-8: %q", i, name, b)
			}
			if bytes.ContainsAny(b, "\n\r\u2028\u2029\u0085") {
				t.Fatalf("case %d %s: more than one line: %q", i, name, b)
			}
		}
		if err := checkSD(format5424(&h, &ev, 0)); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
	}
}

// checkSD parses the header and STRUCTURED-DATA of an RFC 5424 message
// strictly enough to catch an escaping mistake.
func checkSD(b []byte) error {
	s := string(b)
	// PRI VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID, then SD.
	for range 6 {
		i := strings.IndexByte(s, ' ')
		if i <= 0 {
			return errors.New("short header: " + string(b))
		}
		s = s[i+1:]
	}
	if strings.HasPrefix(s, "- ") {
		return nil
	}
	const open = `[correo@32473 trace="`
	if !strings.HasPrefix(s, open) {
		return errors.New("bad SD start: " + s)
	}
	s = s[len(open):]
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case ']':
			return errors.New("unescaped ] in SD value: " + string(b))
		case '"':
			if !strings.HasPrefix(s[i+1:], "] msg=") {
				return errors.New("SD not closed properly: " + string(b))
			}
			return nil
		}
	}
	return errors.New("unterminated SD: " + string(b))
}

func TestTraceInStderr(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(Config{stderr: &buf, now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	ctx := WithTrace(context.Background(), "abcdefghijklmnop")
	l.InfoContext(ctx, "delivered", "rcpt", "ana")
	l.With(TraceKey, "q2").Info("same via attr")
	l.Info("no trace")
	want := `time=2026-03-14T15:09:26.535Z level=INFO msg="delivered" trace=abcdefghijklmnop rcpt=ana
time=2026-03-14T15:09:26.535Z level=INFO msg="same via attr" trace=q2
time=2026-03-14T15:09:26.535Z level=INFO msg="no trace"
`
	if buf.String() != want {
		t.Errorf("got\n%swant\n%s", buf.String(), want)
	}
}
