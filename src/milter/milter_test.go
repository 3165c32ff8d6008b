package milter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const testMsg = "Received: from client.example ([192.0.2.7])\r\n" +
	"\tby mx1.correo.test (correo smtpd) with ESMTP id Q1\r\n" +
	"\t(trace T1); Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
	"From: Ana <ana@example.org>\r\n" +
	"To: juan@correo.test\r\n" +
	"Subject: hello\r\n" +
	" world\r\n" +
	"X-Spam: maybe\r\n" +
	"\r\n" +
	"Hi Juan,\r\n" +
	"\r\n" +
	"a body line\r\n"

var testEnv = Envelope{
	Client:     netip.MustParseAddrPort("192.0.2.7:40001"),
	ClientName: "client.example",
	Helo:       "client.example",
	From:       "ana@example.org",
	FromArgs:   []string{"SIZE=300", "BODY=8BITMIME"},
	Rcpts:      []string{"juan@correo.test", "eva@correo.test"},
	AuthUser:   "ana",
	QueueID:    "Q1",
	Hostname:   "mx1.correo.test",
}

// logBuf collects a chain's log lines for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLog() (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

func chain(t *testing.T, log *slog.Logger, cfgs ...Config) *Chain {
	t.Helper()
	for i := range cfgs {
		if cfgs[i].Timeout == 0 {
			cfgs[i].Timeout = 20 * time.Second // generous: never the machine's speed
		}
	}
	c, err := NewChain(cfgs, log)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func check(t *testing.T, c *Chain, msg string) Verdict {
	t.Helper()
	v, err := c.Check(context.Background(), "T1", testEnv, strings.NewReader(msg))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return v
}

func rewrite(t *testing.T, msg string, changes []HeaderChange) string {
	t.Helper()
	var b bytes.Buffer
	if err := Rewrite(&b, strings.NewReader(msg), changes); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestAnswers: each answer a milter can give, through a milter that
// speaks the wire format.
func TestAnswers(t *testing.T) {
	huge := binary.BigEndian.AppendUint32(nil, 2<<30) // 2 GB announced
	tests := []struct {
		name   string
		f      *fake
		policy Policy
		want   Verdict // Changes compared too
		out    string  // the rewritten message, when not testMsg
		stage  string  // the log says where a failure happened
		check  func(t *testing.T, r record)
	}{
		{name: "accept", f: &fake{}, want: Verdict{Action: Accept},
			check: func(t *testing.T, r record) {
				if r.connect != "client.example 4 40001 192.0.2.7" || r.helo != "client.example" {
					t.Errorf("connect %q helo %q", r.connect, r.helo)
				}
				if !reflect.DeepEqual(r.mail, []string{"<ana@example.org>", "SIZE=300", "BODY=8BITMIME"}) {
					t.Errorf("mail %q", r.mail)
				}
				if !reflect.DeepEqual(r.rcpts, []string{"<juan@correo.test>", "<eva@correo.test>"}) {
					t.Errorf("rcpts %q", r.rcpts)
				}
				wantH := [][2]string{
					{"Received", "from client.example ([192.0.2.7])\n\tby mx1.correo.test (correo smtpd) with ESMTP id Q1\n\t(trace T1); Mon, 1 Jan 2024 00:00:00 +0000"},
					{"From", "Ana <ana@example.org>"}, {"To", "juan@correo.test"}, {"Subject", "hello\n world"},
					{"X-Spam", "maybe"}}
				if !reflect.DeepEqual(r.headers, wantH) {
					t.Errorf("headers %q", r.headers)
				}
				if string(r.body) != "Hi Juan,\r\n\r\na body line\r\n" {
					t.Errorf("body %q", r.body)
				}
				for k, v := range map[string]string{"i": "Q1", "j": "mx1.correo.test", "{auth_authen}": "ana",
					"{client_addr}": "192.0.2.7", "{rcpt_addr}": "eva@correo.test"} {
					if r.macros[k] != v {
						t.Errorf("macro %s = %q, want %q", k, r.macros[k], v)
					}
				}
				if r.cmds != "ODCHDMDRDRTLLLLLNBDEQ" || !r.sawData || !r.finished {
					t.Errorf("commands %q", r.cmds)
				}
			}},
		{name: "continue at the end is accept", f: &fake{Answer: pkt(respContinue)}, want: Verdict{Action: Accept}},
		{name: "reject", f: &fake{Answer: pkt(respReject)},
			want: Verdict{Action: Reject, Code: 550, Enhanced: "5.7.1", Text: defaultRejectText, By: "m"}},
		{name: "reply code", f: &fake{Answer: pkt(respReplyCode, "554 5.7.1 Spam message rejected\x00")},
			want: Verdict{Action: Reject, Code: 554, Enhanced: "5.7.1", Text: "Spam message rejected", By: "m"}},
		{name: "reply code without enhanced code", f: &fake{Answer: pkt(respReplyCode, "550 go away 100%%\x00")},
			want: Verdict{Action: Reject, Code: 550, Enhanced: "5.7.1", Text: "go away 100%", By: "m"}},
		{name: "reply code with a mismatched enhanced code", f: &fake{Answer: pkt(respReplyCode, "550 4.2.0 odd\x00")},
			want: Verdict{Action: Reject, Code: 550, Enhanced: "5.7.1", Text: "odd", By: "m"}},
		{name: "reply code without text", f: &fake{Answer: pkt(respReplyCode, "553\x00")},
			want: Verdict{Action: Reject, Code: 553, Enhanced: "5.7.1", Text: defaultRejectText, By: "m"}},
		{name: "multi-line reply", f: &fake{Answer: pkt(respReplyCode, "550-5.7.0 first\r\n550 5.7.0 second\x00")},
			want: Verdict{Action: Reject, Code: 550, Enhanced: "5.7.0", Text: "first\nsecond", By: "m"}},
		{name: "4xx reply code", f: &fake{Answer: pkt(respReplyCode, "451 4.7.1 Try again later\x00")},
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: "Try again later", By: "m"}},
		{name: "tempfail", f: &fake{Answer: pkt(respTempfail)},
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: defaultTempfailText, By: "m"}},
		{name: "discard", f: &fake{Answer: pkt(respDiscard)}, want: Verdict{Action: Discard, By: "m"}},
		{name: "quarantine", f: &fake{Answer: cat(pkt(respQuarantine, "looks like spam\x00"),
			hdrPkt(respAddHeader, 0, "X-Spam", "Yes"), pkt(respAccept))},
			want: Verdict{Action: Quarantine, By: "m", Reason: "looks like spam",
				Changes: []HeaderChange{{Op: Add, Name: "X-Spam", Value: "Yes"}}},
			out: strings.Replace(testMsg, "\r\n\r\nHi", "\r\nX-Spam: Yes\r\n\r\nHi", 1)},
		{name: "header changes", f: &fake{Answer: cat(
			hdrPkt(respAddHeader, 0, "X-Spamd-Result", "default: False [0.40 / 15.00];\n\tARC_NA(0.00)[];\n\tMIME_GOOD(-0.10)[text/plain]"),
			hdrPkt(respInsHeader, 0, "X-Top", "first"),
			hdrPkt(respInsHeader, 2, "X-Third", "third"),
			hdrPkt(respChgHeader, 1, "subject", "changed"),
			hdrPkt(respChgHeader, 1, "X-Spam", ""),
			hdrPkt(respChgHeader, 2, "To", "appended, as Sendmail does"),
			hdrPkt(respChgHeader, 1, "X-Absent", ""),
			pkt(respProgress),
			pkt(respAccept))},
			want: Verdict{Action: Accept, Changes: []HeaderChange{
				{Op: Add, Name: "X-Spamd-Result", Value: "default: False [0.40 / 15.00];\n\tARC_NA(0.00)[];\n\tMIME_GOOD(-0.10)[text/plain]"},
				{Op: Insert, Index: 0, Name: "X-Top", Value: "first"},
				{Op: Insert, Index: 2, Name: "X-Third", Value: "third"},
				{Op: Change, Index: 1, Name: "subject", Value: "changed"},
				{Op: Delete, Index: 1, Name: "X-Spam"},
				{Op: Change, Index: 2, Name: "To", Value: "appended, as Sendmail does"},
				{Op: Delete, Index: 1, Name: "X-Absent"},
			}},
			out: "X-Top: first\r\n" +
				"Received: from client.example ([192.0.2.7])\r\n" +
				"\tby mx1.correo.test (correo smtpd) with ESMTP id Q1\r\n" +
				"\t(trace T1); Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
				"X-Third: third\r\n" +
				"From: Ana <ana@example.org>\r\n" +
				"To: juan@correo.test\r\n" +
				"subject: changed\r\n" +
				"X-Spamd-Result: default: False [0.40 / 15.00];\r\n\tARC_NA(0.00)[];\r\n\tMIME_GOOD(-0.10)[text/plain]\r\n" +
				"To: appended, as Sendmail does\r\n" +
				"\r\nHi Juan,\r\n\r\na body line\r\n"},
		{name: "reject at a recipient rejects the message", f: &fake{At: cmdRcpt, Answer: pkt(respReplyCode, "550 5.1.1 no such user\x00")},
			want: Verdict{Action: Reject, Code: 550, Enhanced: "5.1.1", Text: "no such user", By: "m"},
			check: func(t *testing.T, r record) {
				if r.cmds != "ODCHDMDRAQ" {
					t.Errorf("commands %q: want an abort after the first recipient", r.cmds)
				}
			}},
		{name: "accept at connect ends this milter", f: &fake{At: cmdConnect, Answer: pkt(respAccept)}, want: Verdict{Action: Accept},
			check: func(t *testing.T, r record) {
				if r.cmds != "ODCAQ" {
					t.Errorf("commands %q", r.cmds)
				}
			}},
		{name: "body replacement is ignored", f: &fake{Answer: cat(pkt(respReplBody, "new body"), pkt(respAddRcpt, "<x@y>\x00"), pkt(respAccept))},
			want: Verdict{Action: Accept}},
		{name: "skip", f: &fake{Protocol: protoSkip, At: cmdBody, Answer: pkt(respSkip)}, want: Verdict{Action: Accept}},
		{name: "no-reply flags, as rspamd asks", f: &fake{Protocol: protoNRConn | protoNRHelo | protoNRMail | protoNRRcpt |
			protoNRData | protoNRHeader | protoNREOH | protoNRBody | protoNoUnknown,
			Answer: cat(hdrPkt(respAddHeader, 0, "X-Spam", "No"), pkt(respAccept))},
			want: Verdict{Action: Accept, Changes: []HeaderChange{{Op: Add, Name: "X-Spam", Value: "No"}}},
			out:  strings.Replace(testMsg, "\r\n\r\nHi", "\r\nX-Spam: No\r\n\r\nHi", 1)},
		{name: "steps skipped", f: &fake{Protocol: protoNoConnect | protoNoHelo | protoNoHeaders | protoNoBody | protoNoData},
			want: Verdict{Action: Accept},
			check: func(t *testing.T, r record) {
				if r.cmds != "ODMDRDRNDEQ" {
					t.Errorf("commands %q", r.cmds)
				}
			}},
		{name: "protocol 2 milter gets no DATA", f: &fake{Version: 2, Actions: 0x3f}, want: Verdict{Action: Accept},
			check: func(t *testing.T, r record) {
				if r.sawData {
					t.Error("DATA sent to a protocol 2 milter")
				}
			}},

		// Failures, under both policies (tempfail here, accept below).
		{name: "garbage", f: &fake{At: cmdConnect, Answer: []byte("HTTP/1.1 400 Bad Request\r\n\r\n")}, stage: "connect",
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m"}},
		{name: "garbage optneg", f: &fake{Optneg: pkt('x', "nonsense")}, stage: "negotiate",
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m"}},
		{name: "unknown response code", f: &fake{At: cmdHelo, Answer: pkt('Z')}, stage: "helo",
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m"}},
		{name: "2 GB packet announced", f: &fake{Answer: cat(huge, []byte("h"))}, stage: "end of message",
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m"}},
		{name: "zero-length packet", f: &fake{At: cmdMail, Answer: []byte{0, 0, 0, 0}}, stage: "mail",
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m"}},
		{name: "modification before the end", f: &fake{At: cmdEOH, Answer: hdrPkt(respAddHeader, 0, "X", "y")}, stage: "end of header",
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m"}},
		{name: "2xx reply code", f: &fake{Answer: pkt(respReplyCode, "250 2.0.0 fine\x00")}, stage: "end of message",
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m"}},
		{name: "header change injecting a body", f: &fake{Answer: cat(hdrPkt(respAddHeader, 0, "X-Evil", "a\r\n\r\nbody"), pkt(respAccept))},
			stage: "end of message", want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m"}},
		{name: "header change with a bad name", f: &fake{Answer: cat(hdrPkt(respAddHeader, 0, "X Evil:", "v"), pkt(respAccept))},
			stage: "end of message", want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m"}},
		{name: "shutdown", f: &fake{At: cmdHelo, Answer: pkt(respShutdown)}, stage: "helo",
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m"}},
		{name: "closes mid-message", f: &fake{At: cmdBody, Do: "close"}, stage: "body",
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m"}},
		{name: "closes before answering the end", f: &fake{Do: "close"}, stage: "end of message",
			want: Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m"}},
		{name: "garbage, policy accept", f: &fake{At: cmdConnect, Answer: []byte("garbage!")}, policy: FailAccept, stage: "connect",
			want: Verdict{Action: Accept, Unfiltered: []string{"m"}}},
		{name: "2 GB packet, policy accept", f: &fake{Answer: huge}, policy: FailAccept, stage: "end of message",
			want: Verdict{Action: Accept, Unfiltered: []string{"m"}}},
		{name: "closes mid-message, policy accept", f: &fake{At: cmdBody, Do: "close"}, policy: FailAccept, stage: "body",
			want: Verdict{Action: Accept, Unfiltered: []string{"m"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, tc.f)
			log, logs := newLog()
			c := chain(t, log, Config{Name: "m", Addr: f.addr, OnFailure: tc.policy})
			v := check(t, c, testMsg)
			if !reflect.DeepEqual(v, tc.want) {
				t.Errorf("verdict\n got %+v\nwant %+v", v, tc.want)
			}
			want := tc.out
			if want == "" {
				want = testMsg
			}
			if got := rewrite(t, testMsg, v.Changes); got != want {
				t.Errorf("rewritten message\n got %q\nwant %q", got, want)
			}
			if tc.stage != "" {
				if l := logs.String(); !strings.Contains(l, "level=WARN msg=\"milter failed\" trace=T1 milter=m") ||
					!strings.Contains(l, "err=\""+tc.stage+":") || !strings.Contains(l, "policy="+tc.policy.String()) {
					t.Errorf("log does not say where milter m failed (%s):\n%s", tc.stage, l)
				}
			} else if l := logs.String(); !strings.Contains(l, "level=DEBUG msg=\"milter checked\" trace=T1 milter=m action="+tc.want.Action.String()) {
				t.Errorf("no debug line for the milter:\n%s", l)
			}
			if tc.check != nil {
				tc.check(t, f.record())
			}
			if n := f.connections(); n != 1 {
				t.Errorf("%d connections to the milter, want 1", n)
			}
		})
	}
}

// TestNeverAnswers: a milter that takes the message and says nothing
// fails after its Timeout (short here, on purpose), at any step.
func TestNeverAnswers(t *testing.T) {
	for _, at := range []byte{cmdOptneg, cmdConnect, cmdHeader, cmdBody, cmdEOB} {
		for _, policy := range []Policy{FailTempfail, FailAccept} {
			t.Run(fmt.Sprintf("%c/%s", at, policy), func(t *testing.T) {
				f := &fake{At: at, Do: "silent"}
				if at == cmdOptneg {
					f.Optneg = []byte{} // answers nothing to the negotiation
					f.At = cmdEOB
				}
				f = startFake(t, f)
				log, logs := newLog()
				c := chain(t, log, Config{Name: "slow", Addr: f.addr, Timeout: 300 * time.Millisecond, OnFailure: policy})
				v := check(t, c, testMsg)
				want := Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "slow"}
				if policy == FailAccept {
					want = Verdict{Action: Accept, Unfiltered: []string{"slow"}}
				}
				if !reflect.DeepEqual(v, want) {
					t.Errorf("verdict %+v, want %+v", v, want)
				}
				if !strings.Contains(logs.String(), "no answer within 300ms") {
					t.Errorf("log: %s", logs.String())
				}
			})
		}
	}
}

// TestUnreachable: nothing listens.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, policy := range []Policy{FailTempfail, FailAccept} {
		log, logs := newLog()
		c := chain(t, log, Config{Name: "down", Addr: "tcp:" + addr, OnFailure: policy},
			Config{Name: "down2", Addr: "unix:/nonexistent/milter.sock", OnFailure: FailAccept})
		v := check(t, c, testMsg)
		want := Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "down"}
		if policy == FailAccept {
			want = Verdict{Action: Accept, Unfiltered: []string{"down", "down2"}}
		}
		if !reflect.DeepEqual(v, want) {
			t.Errorf("%s: verdict %+v, want %+v", policy, v, want)
		}
		if !strings.Contains(logs.String(), "connection refused") {
			t.Errorf("log: %s", logs.String())
		}
	}
}

// TestChainOrder: how milters' answers combine.
func TestChainOrder(t *testing.T) {
	addX := func(v string) *fake { return &fake{Answer: cat(hdrPkt(respAddHeader, 0, "X-"+v, v), pkt(respAccept))} }
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "tcp:" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		name    string
		milters []*fake // nil: down
		policy  Policy
		want    Verdict
	}{
		{"both add", []*fake{addX("a"), addX("b")}, 0, Verdict{Action: Accept,
			Changes: []HeaderChange{{Op: Add, Name: "X-a", Value: "a"}, {Op: Add, Name: "X-b", Value: "b"}}}},
		{"second rejects: the first's changes go", []*fake{addX("a"), {Answer: pkt(respReject)}}, 0,
			Verdict{Action: Reject, Code: 550, Enhanced: "5.7.1", Text: defaultRejectText, By: "m1"}},
		{"first rejects: the second never runs", []*fake{{Answer: pkt(respDiscard)}, addX("b")}, 0,
			Verdict{Action: Discard, By: "m0"}},
		{"first accepts early: the second still runs", []*fake{{At: cmdHelo, Answer: pkt(respAccept)}, addX("b")}, 0,
			Verdict{Action: Accept, Changes: []HeaderChange{{Op: Add, Name: "X-b", Value: "b"}}}},
		{"first quarantines, second adds", []*fake{{Answer: cat(pkt(respQuarantine, "junk\x00"), pkt(respAccept))}, addX("b")}, 0,
			Verdict{Action: Quarantine, By: "m0", Reason: "junk", Changes: []HeaderChange{{Op: Add, Name: "X-b", Value: "b"}}}},
		{"first down, accept policy", []*fake{nil, addX("b")}, FailAccept,
			Verdict{Action: Accept, Unfiltered: []string{"m0"}, Changes: []HeaderChange{{Op: Add, Name: "X-b", Value: "b"}}}},
		{"first down, tempfail policy: the second never runs", []*fake{nil, addX("b")}, FailTempfail,
			Verdict{Action: Tempfail, Code: 451, Enhanced: "4.7.1", Text: failureText, By: "m0"}},
		{"first down and accepted, second rejects", []*fake{nil, {Answer: pkt(respReject)}}, FailAccept,
			Verdict{Action: Reject, Code: 550, Enhanced: "5.7.1", Text: defaultRejectText, By: "m1", Unfiltered: []string{"m0"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cfgs []Config
			var fakes []*fake
			for i, f := range tc.milters {
				addr := down
				if f != nil {
					f = startFake(t, f)
					addr = f.addr
				}
				fakes = append(fakes, f)
				cfgs = append(cfgs, Config{Name: fmt.Sprintf("m%d", i), Addr: addr, OnFailure: tc.policy})
			}
			v := check(t, chain(t, nil, cfgs...), testMsg)
			if !reflect.DeepEqual(v, tc.want) {
				t.Errorf("verdict\n got %+v\nwant %+v", v, tc.want)
			}
			for i, f := range fakes {
				if f == nil {
					continue
				}
				ran := f.connections() > 0
				if stopped := i > 0 && tc.want.By == fmt.Sprintf("m%d", i-1) && tc.want.Action != Quarantine; ran == stopped {
					t.Errorf("milter m%d ran: %v", i, ran)
				}
			}
		})
	}
}

// TestBody: a long body with bare LF line endings reaches the milter in
// chunks of at most 64 KB, with CRLF, whole; a header-only message and
// an empty body send no chunk.
func TestBody(t *testing.T) {
	var body strings.Builder
	for i := 0; body.Len() < 300<<10; i++ {
		fmt.Fprintf(&body, "line %d of a long body, with LF only\n", i)
	}
	body.WriteString("last line without an ending")
	msg := "Subject: long\nFrom: a@b\n\n" + body.String()
	f := startFake(t, &fake{})
	c := chain(t, nil, Config{Name: "m", Addr: f.addr})
	if v := check(t, c, msg); v.Action != Accept {
		t.Fatalf("verdict %+v", v)
	}
	r := f.record()
	want := strings.ReplaceAll(body.String(), "\n", "\r\n")
	if string(r.body) != want {
		t.Errorf("body of %d bytes arrived as %d bytes", len(want), len(r.body))
	}
	if len(r.chunks) < 5 {
		t.Errorf("chunks %v", r.chunks)
	}
	for _, n := range r.chunks {
		if n > maxChunk {
			t.Errorf("chunk of %d bytes", n)
		}
	}
	if !reflect.DeepEqual(r.headers, [][2]string{{"Subject", "long"}, {"From", "a@b"}}) {
		t.Errorf("headers %q", r.headers)
	}

	for _, m := range []string{"Subject: no body\r\n", "Subject: no body, no ending", "Subject: empty body\r\n\r\n", ""} {
		check(t, c, m)
		if r := f.record(); len(r.chunks) != 0 || !strings.HasSuffix(r.cmds, "NDEQ") {
			t.Errorf("%q: commands %q, chunks %v", m, r.cmds, r.chunks)
		}
	}
}

// TestSkipStopsTheBody: SMFIR_SKIP after the first chunk.
func TestSkipStopsTheBody(t *testing.T) {
	msg := "Subject: s\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 20000)
	f := startFake(t, &fake{Protocol: protoSkip, At: cmdBody, Answer: pkt(respSkip)})
	c := chain(t, nil, Config{Name: "m", Addr: f.addr})
	if v := check(t, c, msg); v.Action != Accept {
		t.Fatalf("verdict %+v", v)
	}
	if r := f.record(); len(r.chunks) != 1 || !strings.HasSuffix(r.cmds, "BDEQ") {
		t.Errorf("chunks %v, commands %q", r.chunks, r.cmds)
	}
}

// TestLongHeaderField: a field longer than a chunk is cut for the
// milter, and left whole in the message.
func TestLongHeaderField(t *testing.T) {
	long := "X-Long: " + strings.Repeat("y", 100000) + "\r\n"
	msg := long + "Subject: s\r\n\r\nbody\r\n"
	f := startFake(t, &fake{Answer: cat(hdrPkt(respAddHeader, 0, "X-A", "1"), pkt(respAccept))})
	c := chain(t, nil, Config{Name: "m", Addr: f.addr})
	v := check(t, c, msg)
	r := f.record()
	if len(r.headers) != 2 || len(r.headers[0][1]) != maxChunk-3-len("X-Long") || r.headers[1][0] != "Subject" {
		t.Errorf("headers sent: %d, first of %d bytes", len(r.headers), len(r.headers[0][1]))
	}
	if got := rewrite(t, msg, v.Changes); got != long+"Subject: s\r\nX-A: 1\r\n\r\nbody\r\n" {
		t.Errorf("rewritten %q", truncate(got, 200))
	}
}

// TestContext: the caller's deadline and cancellation are errors, not
// milter failures.
func TestContext(t *testing.T) {
	f := startFake(t, &fake{Do: "silent"})
	c := chain(t, nil, Config{Name: "m", Addr: f.addr, OnFailure: FailAccept})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Check(ctx, "T1", testEnv, strings.NewReader(testMsg))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = c.Check(ctx, "T1", testEnv, strings.NewReader(testMsg))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
}

// TestMessageReadError: a message that cannot be read is the caller's
// error, whatever the policy.
func TestMessageReadError(t *testing.T) {
	f := startFake(t, &fake{})
	c := chain(t, nil, Config{Name: "m", Addr: f.addr, OnFailure: FailAccept})
	_, err := c.Check(context.Background(), "T1", testEnv, &failingReader{strings.NewReader(testMsg), 200})
	var me *msgError
	if !errors.As(err, &me) {
		t.Errorf("err %v", err)
	}
}

type failingReader struct {
	*strings.Reader
	after int64
}

func (r *failingReader) Read(p []byte) (int, error) {
	pos, _ := r.Seek(0, 1)
	if pos >= r.after {
		return 0, errors.New("disk on fire")
	}
	if int64(len(p)) > r.after-pos {
		p = p[:r.after-pos]
	}
	return r.Reader.Read(p)
}

func TestConnectFamilies(t *testing.T) {
	f := startFake(t, &fake{})
	c := chain(t, nil, Config{Name: "m", Addr: f.addr})
	for _, tc := range []struct {
		client netip.AddrPort
		name   string
		want   string
	}{
		{netip.MustParseAddrPort("[2001:db8::7]:2525"), "", "unknown 6 2525 2001:db8::7"},
		{netip.MustParseAddrPort("[::ffff:192.0.2.9]:25"), "h.example", "h.example 4 25 192.0.2.9"},
		{netip.AddrPort{}, "", "unknown U"},
	} {
		env := testEnv
		env.Client, env.ClientName = tc.client, tc.name
		if _, err := c.Check(context.Background(), "T1", env, strings.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		if got := f.record().connect; got != tc.want {
			t.Errorf("connect %q, want %q", got, tc.want)
		}
	}
}

func TestNewChain(t *testing.T) {
	for _, tc := range []struct {
		cfgs []Config
		err  string
	}{
		{[]Config{{Name: "a", Addr: "tcp:127.0.0.1:11332"}, {Name: "b", Addr: "unix:/run/m.sock"},
			{Name: "c", Addr: "inet:11332@127.0.0.1"}, {Name: "d", Addr: "inet:[::1]:11332"}, {Name: "e", Addr: "local:/x"}}, ""},
		{[]Config{{Addr: "tcp:127.0.0.1:1"}}, "without a name"},
		{[]Config{{Name: "a", Addr: "tcp:127.0.0.1:1"}, {Name: "a", Addr: "tcp:127.0.0.1:2"}}, "named twice"},
		{[]Config{{Name: "a", Addr: "127.0.0.1:11332"}}, "want tcp:HOST:PORT"},
		{[]Config{{Name: "a", Addr: "tcp:127.0.0.1"}}, "want tcp:HOST:PORT"},
		{[]Config{{Name: "a", Addr: "unix:relative"}}, "want tcp:HOST:PORT"},
		{[]Config{{Name: "a", Addr: "tcp:h:1", Timeout: -1}}, "negative"},
		{[]Config{{Name: "a", Addr: "tcp:h:1", OnFailure: 7}}, "policy"},
	} {
		_, err := NewChain(tc.cfgs, nil)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: err %v, want %q", tc.cfgs, err, tc.err)
		}
	}
	c, _ := NewChain(nil, nil)
	if v, err := c.Check(context.Background(), "T", testEnv, strings.NewReader(testMsg)); err != nil || v.Action != Accept {
		t.Errorf("empty chain: %+v %v", v, err)
	}
	for s, want := range map[string]Policy{"tempfail": FailTempfail, "accept": FailAccept} {
		if p, err := ParsePolicy(s); err != nil || p != want || p.String() != s {
			t.Errorf("ParsePolicy(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParsePolicy("reject"); err == nil {
		t.Error("ParsePolicy accepted reject")
	}
}
