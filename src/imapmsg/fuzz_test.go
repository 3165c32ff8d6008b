package imapmsg

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzMessage feeds arbitrary bytes through everything FETCH and SEARCH use
// and checks what must hold for any input: no panic, sizes that match the
// bytes streamed, BODY[] equal to the file in CRLF form, HEADER + TEXT equal
// to BODY[], and BODY/BODYSTRUCTURE that parse back as one balanced IMAP
// value. Small limits keep each run quick and exercise the limit paths.
func FuzzMessage(f *testing.F) {
	f.Add([]byte("Subject: x\n\nbody\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\n\n--a\n\nx\n--a--\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lim := range []Limits{{MaxParts: 8, MaxDepth: 3, MaxHeaderBytes: 512}, DefaultLimits} {
			checkMessage(t, data, lim)
		}
	})
}

func checkMessage(t *testing.T, data []byte, lim Limits) {
	m, err := ParseLimits(bytes.NewReader(data), int64(len(data)), lim)
	if err != nil {
		t.Fatal(err)
	}
	env := AppendEnvelope(nil, m.Envelope(), false)
	checkBalanced(t, env)
	st := m.BodyStructure()
	for _, ext := range []bool{false, true} {
		checkBalanced(t, AppendBodyStructure(nil, st, ext, true))
	}
	all := readSection(t, m, nil, "")
	want := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	if !bytes.Equal(all, toCRLF(data)) {
		t.Fatalf("BODY[] is not the file in CRLF form:\n%q\n%q", all, want)
	}
	if int64(len(all)) != m.Size() {
		t.Fatalf("Size %d, BODY[] %d bytes", m.Size(), len(all))
	}
	h, x := readSection(t, m, nil, "HEADER"), readSection(t, m, nil, "TEXT")
	if !bytes.Equal(append(h, x...), all) {
		t.Fatalf("HEADER+TEXT != BODY[]")
	}
	for _, p := range [][]int{{1}, {2}, {1, 1}, {2, 1}, {1, 2, 1}, {3, 1, 1}} {
		for _, spec := range []string{"", "MIME", "HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT"} {
			readSection(t, m, p, spec)
		}
		if r, n, err := m.Binary(p); err == nil {
			b, _ := io.ReadAll(r)
			if int64(len(b)) != n {
				t.Fatalf("BINARY%v: size %d, %d bytes", p, n, len(b))
			}
		}
	}
	m.Contains("needle", true)
	m.HeaderValues("subject")
	m.Date()
}

func readSection(t *testing.T, m *Message, path []int, spec string) []byte {
	r, n := m.Section(path, spec, []string{"From", "Subject"}, false)
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != n {
		t.Fatalf("%v %s: size %d, %d bytes", path, spec, n, len(b))
	}
	return b
}

func toCRLF(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// checkBalanced parses b as exactly one IMAP value (literals included).
func checkBalanced(t *testing.T, b []byte) {
	depth, i := 0, 0
	for i < len(b) {
		switch c := b[i]; c {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				t.Fatalf("unbalanced: %q", b)
			}
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
				if i < len(b) && (b[i] == '\r' || b[i] == '\n' || b[i] == 0) {
					t.Fatalf("CR, LF or NUL in a quoted string: %q", b)
				}
			}
		case '{':
			j := bytes.IndexByte(b[i:], '}')
			var n int
			for _, d := range b[i+1 : i+j] {
				n = n*10 + int(d-'0')
			}
			if j < 0 || !strings.HasPrefix(string(b[i+j+1:]), "\r\n") || i+j+3+n > len(b) {
				t.Fatalf("bad literal in %q", b)
			}
			i += j + 3 + n
			continue
		}
		i++
	}
	if depth != 0 {
		t.Fatalf("unbalanced: %q", b)
	}
}

// FuzzAddressList: any header value gives a list that writes as balanced
// IMAP, with groups closed, and no more than maxAddresses+1 entries.
func FuzzAddressList(f *testing.F) {
	for _, s := range []string{
		`"Joe" <j@x>, a@b (C), g: x@y, z@w;, <@r:m@h>`, `broken <`, `\"x\" <a@b>`, "a\x00b", `undisclosed-recipients:;`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l := ParseAddressList(s)
		if len(l) > maxAddresses+1 {
			t.Fatalf("%d addresses", len(l))
		}
		checkBalanced(t, appendAddrs(nil, l, false))
		open := 0
		for _, a := range l {
			switch {
			case a.Mailbox.Valid && !a.Host.Valid:
				open++
			case !a.Mailbox.Valid:
				open--
			}
		}
		if open != 0 {
			t.Fatalf("unbalanced group markers in %q", s)
		}
	})
}
