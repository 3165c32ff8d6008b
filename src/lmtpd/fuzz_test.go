package lmtpd

import (
	"bytes"
	"testing"
)

// FuzzCRLFToLF: converting in chunks, split anywhere, equals converting
// the whole input at once with the obvious rule.
func FuzzCRLFToLF(f *testing.F) {
	for _, s := range []string{"", "a\r\nb", "\r", "\r\r\n", "\n\r", "x\ry\r\n\r\n", ".\r\n.\r\n"} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		want := bytes.ReplaceAll(in, []byte("\r\n"), []byte("\n"))
		n := int(chunk)%17 + 1
		var got []byte
		pending := false
		for i := 0; i < len(in); i += n {
			got = crlfToLF(got, in[i:min(i+n, len(in))], &pending)
		}
		if pending {
			got = append(got, '\r')
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("chunk %d: %q → %q, want %q", n, in, got, want)
		}
	})
}

// FuzzTraceFromHeader: whatever the header section, the id found is one
// that is safe in a header and a log line.
func FuzzTraceFromHeader(f *testing.F) {
	for _, s := range []string{
		"X-Correo-Trace: abc\n\nbody",
		"Subject: x\nx-correo-trace:   k7f2\n",
		"\nX-Correo-Trace: late\n",
		"X-Correo-Trace: a b\n",
		"X-Correo-Trace:\n\tfolded\n",
		"X-Correo-Trace: " + string(bytes.Repeat([]byte("a"), 65)) + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		id, _ := traceFromHeader(head)
		if id != "" && !validTrace(id) {
			t.Fatalf("unsafe id %q from %q", id, head)
		}
	})
}

func TestFolderOnlyRightBeforeTheFirstTrace(t *testing.T) {
	for _, tc := range []struct {
		head string
		junk bool
	}{
		{"Received: x\nX-Correo-Folder: Junk\nX-Correo-Trace: t1\nSubject: s\n\n", true},
		{"Received: x\nX-Correo-Trace: t1\nX-Correo-Folder: Junk\nX-Correo-Trace: t2\n\n", false}, // forged below smtpd's
		{"Received: x\nX-Correo-Folder: Sent\nX-Correo-Trace: t1\n\n", false},                     // only Junk
		{"X-Correo-Folder: Junk\n\nX-Correo-Trace: t1\n", false},                                  // in the body
		{"Received: x\nX-Correo-Trace: t1\n\n", false},
	} {
		if _, junk := traceFromHeader([]byte(tc.head)); junk != tc.junk {
			t.Errorf("%q: junk %v, want %v", tc.head, junk, tc.junk)
		}
	}
}
