package milter

import (
	"bufio"
	"reflect"
	"strings"
	"testing"
)

func TestRewrite(t *testing.T) {
	add := func(name, value string) HeaderChange { return HeaderChange{Op: Add, Name: name, Value: value} }
	tests := []struct {
		name    string
		msg     string
		changes []HeaderChange
		want    string
	}{
		{"no changes: byte for byte", "A: 1\nweird\r\n\r\nbody", nil, "A: 1\nweird\r\n\r\nbody"},
		{"add, CRLF", "A: 1\r\nB: 2\r\n\r\nbody\r\n", []HeaderChange{add("C", "3")}, "A: 1\r\nB: 2\r\nC: 3\r\n\r\nbody\r\n"},
		{"add, LF message keeps LF", "A: 1\nB: 2\n\nbody\n", []HeaderChange{add("C", "x\n\ty")}, "A: 1\nB: 2\nC: x\n\ty\n\nbody\n"},
		{"folded value gets the message's CRLF", "A: 1\r\n\r\n", []HeaderChange{add("C", "x\n y")}, "A: 1\r\nC: x\r\n y\r\n\r\n"},
		{"empty value", "A: 1\r\n\r\n", []HeaderChange{add("C", "")}, "A: 1\r\nC: \r\n\r\n"},
		{"insert at 0, 1, past the end", "A: 1\r\nB: 2\r\n\r\n", []HeaderChange{
			{Op: Insert, Index: 0, Name: "X", Value: "top"}, {Op: Insert, Index: 2, Name: "Y", Value: "after A"},
			{Op: Insert, Index: 99, Name: "Z", Value: "end"}},
			"X: top\r\nA: 1\r\nY: after A\r\nB: 2\r\nZ: end\r\n\r\n"},
		{"change the second of a name, whole folded field", "R: 1\r\nR: 2\r\n two\r\nR: 3\r\n\r\nb", []HeaderChange{
			{Op: Change, Index: 2, Name: "r", Value: "new"}}, "R: 1\r\nr: new\r\nR: 3\r\n\r\nb"},
		{"change index 0 means the first", "R: 1\r\nR: 2\r\n\r\n", []HeaderChange{{Op: Change, Index: 0, Name: "R", Value: "n"}},
			"R: n\r\nR: 2\r\n\r\n"},
		{"change a missing field adds it", "A: 1\r\n\r\n", []HeaderChange{{Op: Change, Index: 1, Name: "S", Value: "n"}},
			"A: 1\r\nS: n\r\n\r\n"},
		{"delete from the end, as rspamd does", "X-Spam: a\r\nA: 1\r\nX-Spam: b\r\n\r\n", []HeaderChange{
			{Op: Delete, Index: 2, Name: "X-Spam"}, {Op: Delete, Index: 1, Name: "X-Spam"}}, "A: 1\r\n\r\n"},
		{"delete a missing field", "A: 1\r\n\r\n", []HeaderChange{{Op: Delete, Index: 1, Name: "B"}}, "A: 1\r\n\r\n"},
		{"header only, no final line ending", "A: 1\r\nB: 2", []HeaderChange{add("C", "3")}, "A: 1\r\nB: 2\r\nC: 3\r\n"},
		{"empty message", "", []HeaderChange{add("C", "3")}, "C: 3\r\n"},
		{"a non-field line starts the body", "A: 1\r\nnot a field\r\nB: 2\r\n", []HeaderChange{add("C", "3")},
			"A: 1\r\nC: 3\r\nnot a field\r\nB: 2\r\n"},
		{"obsolete space before the colon", "A : 1\r\n\r\n", []HeaderChange{{Op: Change, Index: 1, Name: "A", Value: "2"}},
			"A: 2\r\n\r\n"},
		{"body starting with a space-line is not a header", " indented\r\nA: 1\r\n", []HeaderChange{add("C", "3")},
			"C: 3\r\n indented\r\nA: 1\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := rewrite(t, tc.msg, tc.changes); got != tc.want {
				t.Errorf("\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestRewriteRefusesBadChanges(t *testing.T) {
	for _, c := range []HeaderChange{
		{Op: Add, Name: "X", Value: "a\n\nbody"},
		{Op: Add, Name: "X", Value: "a\nB: injected"},
		{Op: Add, Name: "X", Value: "a\r\n b"}, // not normalized
		{Op: Add, Name: "X:Y", Value: "a"},
		{Op: Add, Name: "", Value: "a"},
		{Op: 0, Name: "X", Value: "a"},
	} {
		var b strings.Builder
		if err := Rewrite(&b, strings.NewReader("A: 1\r\n\r\n"), []HeaderChange{c}); err == nil {
			t.Errorf("%+v accepted: %q", c, b.String())
		}
	}
}

func TestReadHeader(t *testing.T) {
	msg := "From: a\r\nSubject:  two\r\n\tlines\r\nEmpty:\r\nX:\r\n folded only\r\n\r\nbody"
	h, err := readHeader(bufio.NewReader(strings.NewReader(msg)))
	if err != nil {
		t.Fatal(err)
	}
	var got [][2]string
	for _, f := range h.fields {
		got = append(got, [2]string{f.name, f.value()})
	}
	want := [][2]string{{"From", "a"}, {"Subject", "two\n\tlines"}, {"Empty", ""}, {"X", "\n folded only"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("fields %q", got)
	}
	if h.bodyOff != int64(strings.Index(msg, "body")) || string(h.sep) != "\r\n" || h.eol != "\r\n" {
		t.Errorf("body at %d, sep %q", h.bodyOff, h.sep)
	}

	// A header block past the limit: the rest is body.
	big := strings.Repeat("X-Filler: "+strings.Repeat("f", 1000)+"\r\n", maxHeaderBytes/1000+10) + "\r\nbody"
	h, err = readHeader(bufio.NewReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.fields); n == 0 || n > maxHeaderBytes/1000 || h.bodyOff != int64(n*1012) {
		t.Errorf("%d fields, body at %d", n, h.bodyOff)
	}
	out := rewrite(t, big, []HeaderChange{{Op: Insert, Name: "X-First", Value: "1"}})
	if out != "X-First: 1\r\n"+big {
		t.Errorf("rewritten past the limit: %q...", truncate(out, 100))
	}
}
