package mailproxy

import (
	"bytes"
	"strings"
	"testing"
)

func TestTraceScanner(t *testing.T) {
	msg := "+OK 120 octets\r\nReturn-Path: <a@b>\r\nX-Correo-Trace: abc123def456ghij\r\nSubject: x\r\n\r\nbody\r\n.\r\n" +
		"+OK\r\nX-Correo-Trace: second0000000001\r\n\r\n.\r\n"
	// Every way of cutting the stream into two writes finds both ids, once.
	for cut := 0; cut <= len(msg); cut++ {
		var out bytes.Buffer
		var ids []string
		s := &traceScanner{w: &out, found: func(id string) { ids = append(ids, id) }}
		s.Write([]byte(msg[:cut]))
		s.Write([]byte(msg[cut:]))
		if out.String() != msg {
			t.Fatalf("cut %d: bytes changed", cut)
		}
		if strings.Join(ids, ",") != "abc123def456ghij,second0000000001" {
			t.Fatalf("cut %d: ids %v", cut, ids)
		}
	}
	// Byte by byte, a repeated message, and lookalikes.
	var ids []string
	s := &traceScanner{w: &bytes.Buffer{}, found: func(id string) { ids = append(ids, id) }}
	for _, c := range []byte(msg + msg + "notX-Correo-Trace: nolinestart\r\n\nX-Correo-Trace: bad id\r\n\nX-Correo-Trace: \r\n") {
		s.Write([]byte{c})
	}
	if strings.Join(ids, ",") != "abc123def456ghij,second0000000001" {
		t.Fatalf("byte by byte: ids %v", ids)
	}
}

func FuzzTraceScanner(f *testing.F) {
	f.Add([]byte("a\nX-Correo-Trace: abc\r\n"), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		var out bytes.Buffer
		s := &traceScanner{w: &out, found: func(id string) {
			if id == "" || len(id) > maxTraceID+1 {
				t.Fatalf("bad id %q", id)
			}
		}}
		c := int(cut) % (len(data) + 1)
		s.Write(data[:c])
		s.Write(data[c:])
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatal("bytes changed")
		}
	})
}
