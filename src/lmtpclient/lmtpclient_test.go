package lmtpclient

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// script is a fake server on the other end of a pipe: it sends the
// greeting, then for every line the client sends it calls answer, which
// returns what to write back (possibly nothing).
type script struct {
	t      *testing.T
	got    chan string // every line received, in order
	answer func(line string, inData bool) string
}

func serve(t *testing.T, greeting, lhlo string, answer func(line string, inData bool) string) (*Client, *script, error) {
	t.Helper()
	cc, sc := net.Pipe()
	s := &script{t: t, got: make(chan string, 1000), answer: answer}
	go func() {
		defer sc.Close()
		sc.SetDeadline(time.Now().Add(10 * time.Second))
		if greeting == "" {
			return // the server hangs up at once
		}
		w := bufio.NewWriter(sc)
		w.WriteString(greeting)
		w.Flush()
		r := bufio.NewReader(sc)
		inData := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			s.got <- line
			if n, ok := bdatSize(line); ok {
				chunk := make([]byte, n)
				if _, err := io.ReadFull(r, chunk); err != nil {
					return
				}
				s.got <- string(chunk)
			}
			if strings.HasPrefix(line, "LHLO ") {
				w.WriteString(lhlo)
				w.Flush()
				continue
			}
			out := answer(line, inData)
			if line == "DATA\r\n" && strings.HasPrefix(out, "354") {
				inData = true
			} else if inData && line == ".\r\n" {
				inData = false
			}
			if out != "" {
				w.WriteString(out)
				w.Flush()
			}
		}
	}()
	cc.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := New(cc, "mx1.correo.test")
	t.Cleanup(func() { cc.Close() })
	return c, s, err
}

const lhloPipelining = "250-st1 hello\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 1000000\r\n"

// bdatSize reads "BDAT n [LAST]".
func bdatSize(line string) (int, bool) {
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "BDAT" {
		return 0, false
	}
	n, err := strconv.Atoi(f[1])
	return n, err == nil && n >= 0
}

// lmtpServer answers like pdeliveryd: unknown users refused at RCPT, a
// per-recipient 250 after the message.
func lmtpServer(rcpts *[]string) func(string, bool) string {
	return func(line string, inData bool) string {
		switch {
		case inData && line == ".\r\n":
			var b strings.Builder
			for _, r := range *rcpts {
				b.WriteString("250 2.0.0 <" + r + "> delivered\r\n")
			}
			*rcpts = nil
			return b.String()
		case inData:
			return ""
		case strings.HasPrefix(line, "MAIL FROM:"):
			return "250 2.1.0 ok\r\n"
		case strings.HasPrefix(line, "RCPT TO:<nobody@"):
			return "550 5.1.1 no such user\r\n"
		case strings.HasPrefix(line, "RCPT TO:"):
			*rcpts = append(*rcpts, strings.TrimSuffix(strings.TrimPrefix(line, "RCPT TO:<"), ">\r\n"))
			return "250 2.1.5 ok\r\n"
		case line == "DATA\r\n":
			if len(*rcpts) == 0 {
				return "503 5.5.1 no valid recipients\r\n"
			}
			return "354 go ahead\r\n"
		case strings.HasPrefix(line, "BDAT ") && strings.HasSuffix(line, " LAST\r\n"):
			if len(*rcpts) == 0 {
				return "503 5.5.1 no valid recipients\r\n"
			}
			var b strings.Builder
			for _, r := range *rcpts {
				b.WriteString("250 2.0.0 <" + r + "> delivered\r\n")
			}
			*rcpts = nil
			return b.String()
		case line == "RSET\r\n":
			return "250 2.0.0 reset\r\n"
		}
		return "500 5.5.2 what?\r\n"
	}
}

func TestPipelinedTransaction(t *testing.T) {
	var rcpts []string
	c, s, err := serve(t, "220 st1 LMTP\r\n", lhloPipelining, lmtpServer(&rcpts))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Pipelining() {
		t.Fatal("PIPELINING not seen in the LHLO reply")
	}
	msg := "Subject: x\n\n.leading dot\r\nlast line without end"
	out, err := c.Send("s@example.org", 42, []string{"ana@correo.test", "nobody@correo.test", "eva@correo.test"}, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if out.Mail.Code != 250 || out.Rcpts[0].Code != 250 || out.Rcpts[1].Code != 550 || out.Rcpts[1].Enhanced != "5.1.1" ||
		out.Rcpts[1].Text != "no such user" || out.Data.Code != 354 {
		t.Fatalf("outcome %+v", out)
	}
	if out.Final[0].Code != 250 || out.Final[1].Code != 0 || out.Final[2].Code != 250 || out.Final[2].Text != "<eva@correo.test> delivered" {
		t.Fatalf("final replies %+v", out.Final)
	}
	lines := drain(s)
	want := []string{"LHLO mx1.correo.test\r\n", "MAIL FROM:<s@example.org> SIZE=42\r\n", "RCPT TO:<ana@correo.test>\r\n",
		"RCPT TO:<nobody@correo.test>\r\n", "RCPT TO:<eva@correo.test>\r\n", "DATA\r\n",
		"Subject: x\r\n", "\r\n", "..leading dot\r\n", "last line without end\r\n", ".\r\n"}
	if strings.Join(lines, "") != strings.Join(want, "") {
		t.Fatalf("the server got\n%q\nwant\n%q", lines, want)
	}
	// The session goes on.
	out, err = c.Send("", 0, []string{"ana@correo.test"}, strings.NewReader("x\r\n"))
	if err != nil || out.Final[0].Code != 250 {
		t.Fatalf("second transaction: %v %+v", err, out)
	}
}

// TestLockStep: a server without PIPELINING gets one command at a time,
// and no RCPT after a refused MAIL, no DATA when every RCPT was refused.
func TestLockStep(t *testing.T) {
	var rcpts []string
	inner := lmtpServer(&rcpts)
	mailRefused := false
	c, s, err := serve(t, "220 st1\r\n", "250-st1\r\n250 ENHANCEDSTATUSCODES\r\n", func(line string, inData bool) string {
		if mailRefused && strings.HasPrefix(line, "MAIL") {
			return "452 4.3.1 insufficient storage\r\n"
		}
		return inner(line, inData)
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Pipelining() {
		t.Fatal("pipelining without PIPELINING")
	}
	out, err := c.Send("s@example.org", 10, []string{"nobody@correo.test"}, strings.NewReader("x"))
	if err != nil || out.Rcpts[0].Code != 550 || out.Data.Code != 0 {
		t.Fatalf("all refused: %v %+v", err, out)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	mailRefused = true
	out, err = c.Send("s@example.org", 10, []string{"ana@correo.test"}, strings.NewReader("x"))
	if err != nil || out.Mail.Code != 452 || out.Rcpts[0].Code != 0 {
		t.Fatalf("MAIL refused: %v %+v", err, out)
	}
	for len(s.got) > 0 {
		if l := <-s.got; strings.HasPrefix(l, "DATA") || strings.HasPrefix(l, "SIZE") {
			t.Errorf("sent %q", l)
		}
	}
}

// TestRefusals: greetings and LHLO replies that end the session.
func TestRefusals(t *testing.T) {
	cases := []struct {
		name, greeting, lhlo, want string
	}{
		{"busy", "421 4.3.2 too busy\r\n", "", "greeting refused: 421 4.3.2 too busy"},
		{"lhlo refused", "220 ok\r\n", "554 5.7.1 not from you\r\n", "LHLO refused: 554 5.7.1 not from you"},
		{"garbage greeting", "hello there\r\n", "", "no three-digit code"},
		{"code out of range", "999 what\r\n", "", "out of range"},
		{"mixed codes", "220-a\r\n250 b\r\n", "", "inside a reply"},
		{"no separator", "220xyz\r\n", "", "no space or hyphen"},
		{"over-long line", "220 " + strings.Repeat("x", maxLineBytes) + "\r\n", "", "longer than"},
		{"endless reply", strings.Repeat("220-x\r\n", maxReplyLines+1), "", "longer than"},
		{"closed", "", "", "unexpected EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := serve(t, tc.greeting, tc.lhlo, func(string, bool) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestServerClosing: a 421 in the middle leaves the client broken, with
// the replies read so far.
func TestServerClosing(t *testing.T) {
	c, _, err := serve(t, "220 ok\r\n", lhloPipelining, func(line string, inData bool) string {
		if strings.HasPrefix(line, "MAIL") {
			return "421 4.3.2 shutting down\r\n"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Send("s@example.org", 0, []string{"ana@correo.test"}, strings.NewReader("x"))
	if out.Mail.Code != 421 || err == nil {
		t.Fatalf("after a 421: %v %+v", err, out)
	}
	if _, err := c.Send("s@example.org", 0, []string{"ana@correo.test"}, strings.NewReader("x")); err == nil {
		t.Fatal("a closing session accepted another transaction")
	}
	if err := c.Reset(); err == nil {
		t.Fatal("RSET on a closing session")
	}
}

// TestBadAddresses: an address that would inject a command is refused
// before anything is sent.
func TestBadAddresses(t *testing.T) {
	var rcpts []string
	c, s, err := serve(t, "220 ok\r\n", lhloPipelining, lmtpServer(&rcpts))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"a@b\r\nRSET", "a>@b", "<a@b"} {
		if _, err := c.Send("s@example.org", 0, []string{a}, strings.NewReader("x")); err == nil {
			t.Errorf("%q sent", a)
		}
	}
	if len(s.got) != 1 { // the LHLO only
		t.Errorf("%d lines reached the server", len(s.got))
	}
}

// TestAllRefusedAfter354: a server that says 354 although it refused every
// recipient gets an empty message, and the session stays usable.
func TestAllRefusedAfter354(t *testing.T) {
	c, _, err := serve(t, "220 ok\r\n", lhloPipelining, func(line string, inData bool) string {
		switch {
		case strings.HasPrefix(line, "MAIL"):
			return "250 ok\r\n"
		case strings.HasPrefix(line, "RCPT"):
			return "550 5.1.1 no\r\n"
		case line == "DATA\r\n":
			return "354 go\r\n"
		case line == ".\r\n":
			return "503 5.5.1 no recipients\r\n"
		case line == "RSET\r\n":
			return "250 ok\r\n"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Send("s@example.org", 0, []string{"x@correo.test"}, strings.NewReader("secret"))
	if err != nil || out.Final[0].Code != 0 {
		t.Fatalf("%v %+v", err, out)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
}

// TestReplyParsing: multi-line replies, enhanced codes and their absence.
func TestReplyParsing(t *testing.T) {
	cases := []struct {
		in   string
		want Reply
	}{
		{"250 2.1.5 ok\r\n", Reply{250, "2.1.5", "ok"}},
		{"250 ok\r\n", Reply{250, "", "ok"}},
		{"250\r\n", Reply{250, "", ""}},
		{"451-4.3.0 <eva@correo.test> stored on st2,\r\n451 4.3.0 not here\r\n", Reply{451, "4.3.0", "<eva@correo.test> stored on st2, not here"}},
		{"550 4.1.1 class mismatch\r\n", Reply{550, "", "4.1.1 class mismatch"}},
		{"550 5.1.1234 too long\r\n", Reply{550, "", "5.1.1234 too long"}},
		{"250 2.0.0\n", Reply{250, "2.0.0", ""}},
	}
	for _, tc := range cases {
		c := &Client{r: bufio.NewReader(strings.NewReader(tc.in))}
		got, _, err := c.read()
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.in, got, err, tc.want)
		}
	}
}

// TestWriteFailure: a server that stops reading makes Send fail with the
// connection marked unusable, not hang.
func TestWriteFailure(t *testing.T) {
	cc, sc := net.Pipe()
	go func() {
		sc.Write([]byte("220 ok\r\n"))
		r := bufio.NewReader(sc)
		r.ReadString('\n')
		sc.Write([]byte(lhloPipelining))
		sc.Close()
	}()
	cc.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := New(cc, "mx1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Send("s@example.org", 0, []string{"a@b.c"}, strings.NewReader("x"))
	if err == nil || !(errors.Is(err, io.ErrClosedPipe) || strings.Contains(err.Error(), "closed")) {
		t.Fatalf("Send to a closed peer: %v", err)
	}
}

const lhloChunking = "250-st1 hello\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 1000000\r\n"

func drain(s *script) []string {
	var lines []string
	for len(s.got) > 0 {
		lines = append(lines, <-s.got)
	}
	return lines
}

// TestChunkedTransaction: one recipient, a server with CHUNKING: MAIL,
// RCPT and BDAT LAST carry the message as it is, and the one reply after
// it is the recipient's.
func TestChunkedTransaction(t *testing.T) {
	var rcpts []string
	c, s, err := serve(t, "220 st1 LMTP\r\n", lhloChunking, lmtpServer(&rcpts))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Chunking() {
		t.Fatal("CHUNKING not seen in the LHLO reply")
	}
	msg := "Subject: x\r\n\r\n.leading dot, sent as it is\r\n"
	out, err := c.Send("s@example.org", int64(len(msg)), []string{"ana@correo.test"}, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !out.Sent || out.Mail.Code != 250 || out.Rcpts[0].Code != 250 || out.Data.Code != 0 ||
		out.Final[0].Code != 250 || out.Final[0].Text != "<ana@correo.test> delivered" {
		t.Fatalf("outcome %+v", out)
	}
	want := []string{"LHLO mx1.correo.test\r\n", fmt.Sprintf("MAIL FROM:<s@example.org> SIZE=%d\r\n", len(msg)),
		"RCPT TO:<ana@correo.test>\r\n", fmt.Sprintf("BDAT %d LAST\r\n", len(msg)), msg}
	if got := drain(s); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("the server got\n%q\nwant\n%q", got, want)
	}
	// A refused recipient: the one reply after BDAT is BDAT's own
	// refusal, and the session goes on.
	out, err = c.Send("s@example.org", int64(len(msg)), []string{"nobody@correo.test"}, strings.NewReader(msg))
	if err != nil || out.Sent != true || out.Rcpts[0].Code != 550 || out.Final[0].Code != 0 {
		t.Fatalf("refused recipient: %v %+v", err, out)
	}
	out, err = c.Send("s@example.org", int64(len(msg)), []string{"eva@correo.test"}, strings.NewReader(msg))
	if err != nil || out.Final[0].Code != 250 || out.Final[0].Text != "<eva@correo.test> delivered" {
		t.Fatalf("after a refusal: %v %+v", err, out)
	}
}

// TestChunkingFallsBackToData: whatever BDAT cannot carry unchanged, or
// where its replies could be miscounted, goes with DATA.
func TestChunkingFallsBackToData(t *testing.T) {
	good := "Subject: x\r\n\r\nbody\r\n"
	cases := []struct {
		name  string
		msg   io.Reader
		size  int64
		rcpts []string
	}{
		{"two recipients", strings.NewReader(good), int64(len(good)), []string{"ana@correo.test", "eva@correo.test"}},
		{"lone LF", strings.NewReader("Subject: x\n\r\nbody\r\n"), 21, []string{"ana@correo.test"}},
		{"lone CR", strings.NewReader("Subject: x\r\r\n\r\nbody\r\n"), 23, []string{"ana@correo.test"}},
		{"no final CRLF", strings.NewReader("Subject: x\r\n\r\nbody"), 20, []string{"ana@correo.test"}},
		{"too large", strings.NewReader(strings.Repeat(strings.Repeat("x", 998)+"\r\n", maxChunk/1000+1)), int64(1000 * (maxChunk/1000 + 1)), []string{"ana@correo.test"}},
		{"size unknown", strings.NewReader(good), 0, []string{"ana@correo.test"}},
		{"not rereadable", io.MultiReader(strings.NewReader(good)), int64(len(good)), []string{"ana@correo.test"}},
		{"size wrong", strings.NewReader(good), int64(len(good)) + 5, []string{"ana@correo.test"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rcpts []string
			c, s, err := serve(t, "220 st1 LMTP\r\n", lhloChunking, lmtpServer(&rcpts))
			if err != nil {
				t.Fatal(err)
			}
			out, err := c.Send("s@example.org", tc.size, tc.rcpts, tc.msg)
			if err != nil || !out.Sent || out.Data.Code != 354 {
				t.Fatalf("%v %+v", err, out)
			}
			for i := range tc.rcpts {
				if out.Final[i].Code != 250 {
					t.Fatalf("final replies %+v", out.Final)
				}
			}
			for _, l := range drain(s) {
				if strings.HasPrefix(l, "BDAT") {
					t.Fatalf("sent %q", l)
				}
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]bool{
		"a\r\n": true, "a\r\nb\r\n\r\n": true, "\r\n": true,
		"": false, "a": false, "a\n": false, "a\r": false, "a\rb\r\n": false, "a\nb\r\n": false, "a\r\r\n": false,
	} {
		if got := canonical([]byte(in)); got != want {
			t.Errorf("canonical(%q) = %v, want %v", in, got, want)
		}
	}
}
