package lmtpclient

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// FuzzReply: whatever a server sends back never panics the reader, and a
// reply it accepts has a valid code and no line breaks in its text.
func FuzzReply(f *testing.F) {
	for _, s := range []string{"250 2.1.5 ok\r\n", "451-4.3.0 a\r\n451 4.3.0 b\r\n", "250\r\n", "2", "250-x\r\n",
		"550 5.1.1234 x\r\n", "220 " + strings.Repeat("y", 3000) + "\r\n", "\r\n", "abc def\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Client{r: bufio.NewReader(bytes.NewReader(data))}
		for range 3 {
			r, lines, err := c.read()
			if err != nil {
				return
			}
			if r.Code < 200 || r.Code > 599 || len(lines) == 0 || len(lines) > maxReplyLines {
				t.Fatalf("accepted %+v from %q", r, data)
			}
			if strings.ContainsAny(r.Text, "\r\n") || (r.Enhanced != "" && !isEnhanced(r.Enhanced)) {
				t.Fatalf("reply %+v from %q", r, data)
			}
		}
	})
}
