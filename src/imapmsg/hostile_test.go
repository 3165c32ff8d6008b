package imapmsg

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// TestHostile: messages built to exhaust a parser stay within the limits, in
// structure and in memory (total allocation, which also bounds time).
func TestHostile(t *testing.T) {
	var many strings.Builder
	many.WriteString("Content-Type: multipart/mixed; boundary=m\n\n")
	for i := 0; i < 100000; i++ {
		many.WriteString("--m\n\nx\n")
	}
	var deep strings.Builder
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&deep, "Content-Type: multipart/mixed; boundary=\"d%dx\"\n\n--d%dx\n", i, i)
	}
	var rfc822 strings.Builder
	for i := 0; i < 10000; i++ {
		rfc822.WriteString("Content-Type: message/rfc822\n\n")
	}
	addrs := "To: " + strings.Repeat("a@b, ", 200000) + "\n\n"
	cases := map[string]string{
		"100000 parts":        many.String(),
		"depth 10000":         deep.String(),
		"rfc822 depth 10000":  rfc822.String(),
		"4 MB header line":    "Subject: " + strings.Repeat("x", 4<<20) + "\n\nbody\n",
		"4 MB without LF":     strings.Repeat("y", 4<<20),
		"200000 addresses":    addrs,
		"4 MB of blank lines": strings.Repeat("\n", 4<<20),
		"unterminated quotes": "From: \"" + strings.Repeat("(", 100000) + "\n\n",
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			m, err := Parse(strings.NewReader(msg), int64(len(msg)))
			if err != nil {
				t.Fatal(err)
			}
			env := AppendEnvelope(nil, m.Envelope(), true)
			st := m.BodyStructure()
			out := AppendBodyStructure(nil, st, true, true)
			r, n := m.Section(nil, "", nil, false)
			got, _ := io.Copy(io.Discard, r)
			m.Contains("needle", true)
			runtime.ReadMemStats(&after)
			if got != n || n != m.Size() {
				t.Errorf("BODY[] %d bytes, size %d, Size %d", got, n, m.Size())
			}
			if parts := strings.Count(string(out), `"text" "plain"`); parts > DefaultLimits.MaxParts+1 {
				t.Errorf("%d parts written", parts)
			}
			if d := strings.Count(string(out), "(("); d > 2*DefaultLimits.MaxDepth+4 {
				t.Errorf("nesting %d", d)
			}
			if len(env) > 10*DefaultLimits.MaxHeaderBytes {
				t.Errorf("envelope of %d bytes", len(env))
			}
			// The file itself is a few MB; everything else must stay small.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("allocated %d MB", alloc>>20)
			}
		})
	}
}
