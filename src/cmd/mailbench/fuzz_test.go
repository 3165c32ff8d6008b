package main

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// The servers' answers are untrusted input: whatever they send, the
// parsers return an answer or an error, never panic, never read past
// their limits. Seeds are in testdata/fuzz.

func FuzzReadReply(f *testing.F) {
	f.Add([]byte("250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for i := 0; i < 50; i++ {
			code, lines, err := readReply(r)
			if err != nil {
				return
			}
			if code < 100 || code > 599 || len(lines) == 0 || len(lines) > maxReplyLines {
				t.Fatalf("reply %d with %d lines from %q", code, len(lines), b)
			}
		}
	})
}

func FuzzPOP3(f *testing.F) {
	f.Add([]byte("+OK 2 messages\r\n1 120\r\n2 300\r\n.\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		line, err := readLine(r, maxReplyLine)
		if err != nil {
			return
		}
		if ok, text, err := parsePOPStatus(line); err == nil && (ok != strings.HasPrefix(line, "+OK") || len(text) > len(line)) {
			t.Fatalf("status %q read as %v %q", line, ok, text)
		}
		n, err := readMultiline(r, func(l string) error {
			parseListLine(l)
			return nil
		})
		// Lines are counted as CRLF-ended: a bare LF's line counts one
		// more byte than it had, never more than twice the input.
		if n > 2*int64(len(b)) {
			t.Fatalf("counted %d bytes of %d", n, len(b))
		}
		_ = err
	})
}

func FuzzIMAP(f *testing.F) {
	f.Add([]byte("* 1 FETCH (BODY[] {5}\r\nhello)\r\nm1 OK done\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		var total int64
		for i := 0; i < 50; i++ {
			resp, err := readIMAP(r)
			if err != nil {
				return
			}
			total += resp.Bytes
			if total > int64(len(b)) {
				t.Fatalf("counted %d literal bytes of %d", total, len(b))
			}
			if resp.Tag != "*" && resp.Tag != "+" && resp.Status == "" {
				t.Fatalf("tagged response without a status from %q", b)
			}
			exists(resp.Text)
		}
	})
}
