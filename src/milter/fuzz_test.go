package milter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// checkVerdict holds what any verdict must satisfy, whatever a milter
// said: a reply code of the action's class, header changes that Rewrite
// takes, and a body that comes out byte for byte.
func checkVerdict(t *testing.T, v Verdict, msg string) {
	t.Helper()
	switch v.Action {
	case Reject:
		if v.Code < 500 || v.Code > 599 || v.Enhanced[0] != '5' || v.Text == "" {
			t.Fatalf("reject %+v", v)
		}
	case Tempfail:
		if v.Code < 400 || v.Code > 499 || v.Enhanced[0] != '4' || v.Text == "" {
			t.Fatalf("tempfail %+v", v)
		}
	case Accept, Discard, Quarantine:
		if v.Code != 0 {
			t.Fatalf("%v with code %d", v.Action, v.Code)
		}
	default:
		t.Fatalf("action %d", v.Action)
	}
	for _, line := range strings.Split(v.Text, "\n") {
		if strings.ContainsFunc(line, func(r rune) bool { return r < 32 || r == 127 }) {
			t.Fatalf("control character in the reply text %q", v.Text)
		}
	}
	if len(v.Changes) > 0 && v.Action != Accept && v.Action != Quarantine {
		t.Fatalf("changes with %v", v.Action)
	}
	var out bytes.Buffer
	if err := Rewrite(&out, strings.NewReader(msg), v.Changes); err != nil {
		t.Fatalf("Rewrite refuses the verdict's changes %+v: %v", v.Changes, err)
	}
	h, err := readHeader(bufio.NewReader(strings.NewReader(msg)))
	if err != nil {
		t.Fatal(err)
	}
	body := msg[h.bodyOff:]
	if !strings.HasSuffix(out.String(), body) {
		t.Fatalf("body changed: %q", out.String())
	}
}

// FuzzConversation: a milter that answers anything at all. Check never
// panics, never hangs past the timeout, and every verdict is sound.
func FuzzConversation(f *testing.F) {
	optneg := func(version, actions, protocol uint32) []byte {
		var d [12]byte
		binary.BigEndian.PutUint32(d[0:], version)
		binary.BigEndian.PutUint32(d[4:], actions)
		binary.BigEndian.PutUint32(d[8:], protocol)
		return appendPacket(nil, respOptneg, d[:])
	}
	nr := uint32(protoNRConn | protoNRHelo | protoNRMail | protoNRRcpt | protoNRData | protoNRHeader | protoNREOH | protoNRBody)
	cont := pkt(respContinue)
	many := bytes.Repeat(cont, 20)
	f.Add(cat(optneg(6, 0x1ff, nr), hdrPkt(respAddHeader, 0, "X-Spam", "No"), pkt(respAccept)))
	f.Add(cat(optneg(6, 0x1ff, nr), hdrPkt(respInsHeader, 1, "X-A", "b\n\tc"), hdrPkt(respChgHeader, 1, "Subject", ""),
		pkt(respQuarantine, "why\x00"), pkt(respContinue)))
	f.Add(cat(optneg(6, 0x1ff, nr), pkt(respReplyCode, "554 5.7.1 Spam message rejected\x00")))
	f.Add(cat(optneg(2, 0x3f, 0), many, pkt(respTempfail)))
	f.Add(cat(optneg(6, 0x1ff, protoSkip), many[:5*4], pkt(respSkip), pkt(respDiscard)))
	f.Add(cat(optneg(6, 0, 0), cont, cont, pkt(respReject)))
	f.Add(cat(optneg(6, 0x1ff, nr), pkt(respProgress), pkt(respReplBody, "x"), pkt(respAccept)))
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, 'h'})
	f.Add(cat(optneg(6, 0x1ff, nr), []byte{0, 0, 0, 0}))
	f.Add(cat(optneg(9, 0, 0)))
	msg := "Received: from a\r\n\tby b; x\r\nSubject: fuzz\r\nX-Spam: maybe\r\n\r\nbody\r\n"
	f.Fuzz(func(t *testing.T, answers []byte) {
		for _, policy := range []Policy{FailTempfail, FailAccept} {
			c, err := NewChain([]Config{{Name: "fuzz", Addr: "tcp:127.0.0.1:1", Timeout: 2 * time.Second, OnFailure: policy}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			c.milters[0].dial = func(context.Context) (net.Conn, error) {
				client, server := net.Pipe()
				go io.Copy(io.Discard, server)
				go func() {
					server.Write(answers)
					server.Close()
				}()
				return client, nil
			}
			start := time.Now()
			v, err := c.Check(context.Background(), "T", testEnv, strings.NewReader(msg))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("Check took %v", d)
			}
			checkVerdict(t, v, msg)
		}
	})
}

// FuzzParseResponse: one response packet, any bytes.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("y550 5.7.1 go away\x00"))
	f.Add([]byte("y451-4.7.1 one\r\n451 4.7.1 two\x00"))
	f.Add([]byte("y550"))
	f.Add([]byte("y5x0 text"))
	f.Add(hdrPkt(respAddHeader, 0, "X-Spamd-Result", "default: False [0.00 / 15.00];\n\tSYM(0.00)[]")[4:])
	f.Add(hdrPkt(respInsHeader, 3, "DKIM-Signature", "v=1;\r\n\tb=x")[4:])
	f.Add(hdrPkt(respChgHeader, 1, "X-Spam", "")[4:])
	f.Add([]byte("m\x00\x00"))
	f.Add([]byte("q\x00"))
	f.Add([]byte("h\x00\x00"))
	f.Add([]byte("hX\x00a\n\nb\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		r, err := parseResponse(packet{code: data[0], data: data[1:]})
		if err != nil {
			return
		}
		switch r.code {
		case respReplyCode:
			v := decision(outcome{final: respReplyCode, reply: r.reply})
			checkVerdict(t, v, testMsg)
		case respAddHeader, respInsHeader, respChgHeader:
			checkVerdict(t, Verdict{Action: Accept, Changes: []HeaderChange{r.change}}, testMsg)
		case respQuarantine:
			if strings.ContainsFunc(r.reason, func(r rune) bool { return r < 32 }) {
				t.Fatalf("reason %q", r.reason)
			}
		}
	})
}

// FuzzRewrite: any message, through the header parser and Rewrite: the
// body is never touched and the fields come out in order.
func FuzzRewrite(f *testing.F) {
	f.Add([]byte(testMsg))
	f.Add([]byte("A: 1\nB: 2\n\nbody\n"))
	f.Add([]byte("A: 1\r\nnot a field\r\nB: 2\r\n"))
	f.Add([]byte("A : 1\r\n \r\n\tx\r\n\r\n"))
	f.Add([]byte("X-Spam: a\r\nX-Spam: b\r\nSubject: s"))
	f.Add([]byte(" leading\r\n"))
	f.Add([]byte("\r\n\r\n"))
	changes := []HeaderChange{
		{Op: Insert, Index: 0, Name: "X-Top", Value: "1"},
		{Op: Delete, Index: 1, Name: "X-Spam"},
		{Op: Change, Index: 1, Name: "subject", Value: "new\n\tfolded"},
		{Op: Add, Name: "X-Spamd-Result", Value: "default: False"},
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var same bytes.Buffer
		if err := Rewrite(&same, bytes.NewReader(msg), nil); err != nil || !bytes.Equal(same.Bytes(), msg) {
			t.Fatalf("no changes: %v", err)
		}
		checkVerdict(t, Verdict{Action: Accept, Changes: changes}, string(msg))
		var out bytes.Buffer
		if err := Rewrite(&out, bytes.NewReader(msg), changes); err != nil {
			t.Fatal(err)
		}
		h, err := readHeader(bufio.NewReader(bytes.NewReader(out.Bytes())))
		if err != nil {
			t.Fatal(err)
		}
		if len(h.fields) == 0 || h.fields[0].name != "X-Top" {
			t.Fatalf("rewritten header does not start with the inserted field: %q", out.String())
		}
	})
}

// FuzzCRLFChunks: the body as milters get it is the message's body with
// bare LFs made CRLF, whatever the reads' sizes, in chunks of at most
// 64 KB.
func FuzzCRLFChunks(f *testing.F) {
	f.Add([]byte("a\nb\r\nc\rd\n\n"), uint16(0))
	f.Add(bytes.Repeat([]byte("x\n"), 40000), uint16(1))
	f.Add(append(bytes.Repeat([]byte("y"), maxChunk-1), '\n'), uint16(0))
	f.Add(append(bytes.Repeat([]byte("y"), maxChunk-1), '\r', '\n'), uint16(3))
	f.Fuzz(func(t *testing.T, body []byte, readSize uint16) {
		// readSize 0: a body longer than a chunk, from a short input, read
		// in large pieces; else reads of readSize bytes, on at most 128 KB.
		n := int(readSize)
		if n == 0 {
			n = 32 << 10
			body = bytes.Repeat(body, 1+maxChunk/(len(body)+1))
		}
		body = body[:min(len(body), 128<<10)]
		var want []byte
		prev := byte(0)
		for _, b := range body {
			if b == '\n' && prev != '\r' {
				want = append(want, '\r')
			}
			want = append(want, b)
			prev = b
		}
		var got []byte
		err := crlfChunks(&smallReader{body, n}, func(c []byte) (bool, error) {
			if len(c) == 0 || len(c) > maxChunk {
				t.Fatalf("chunk of %d bytes", len(c))
			}
			got = append(got, c...)
			return false, nil
		})
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("err %v; %d bytes, want %d", err, len(got), len(want))
		}
	})
}

// smallReader reads at most n bytes at a time.
type smallReader struct {
	b []byte
	n int
}

func (r *smallReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[k:]
	return k, nil
}
