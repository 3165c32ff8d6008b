package imapmsg

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/msg/*.golden from the current output")

// fetchItem is one FETCH data item the tests compare, in the form a client
// would send it, with what this package answers for it.
type fetchItem struct {
	name string
	get  func(m *Message) (string, error)
}

func sec(path []int, spec string, fields []string) func(*Message) (string, error) {
	return func(m *Message) (string, error) {
		r, n := m.Section(path, spec, fields, false)
		b, err := io.ReadAll(r)
		if err != nil {
			return "", err
		}
		if int64(len(b)) != n {
			return "", fmt.Errorf("size %d but %d bytes", n, len(b))
		}
		return literal(b), nil
	}
}

// literal is how a server sends section data: never quoted, so NUL and
// 8-bit bytes go through unchanged.
func literal(b []byte) string { return "{" + strconv.Itoa(len(b)) + "}\r\n" + string(b) }

// partial cuts a literal answer to <off.count>.
func partial(get func(*Message) (string, error), off, count int) func(*Message) (string, error) {
	return func(m *Message) (string, error) {
		v, err := get(m)
		if err != nil {
			return "", err
		}
		data := v[strings.Index(v, "\r\n")+2:]
		r, n := Partial(strings.NewReader(data), int64(len(data)), int64(off), int64(count))
		b, _ := io.ReadAll(r)
		if int64(len(b)) != n {
			return "", fmt.Errorf("partial size %d, %d bytes", n, len(b))
		}
		return literal(b), nil
	}
}

func binSize(path []int) func(*Message) (string, error) {
	return func(m *Message) (string, error) {
		n, err := m.BinarySize(path)
		return strconv.FormatInt(n, 10), err
	}
}

func bin(path []int) func(*Message) (string, error) {
	return func(m *Message) (string, error) {
		r, n, err := m.Binary(path)
		if err != nil {
			return "", err
		}
		b, _ := io.ReadAll(r)
		if int64(len(b)) != n {
			return "", fmt.Errorf("size %d but %d bytes", n, len(b))
		}
		return literal(b), nil
	}
}

// fetchItems is what every test message is asked, here and from Dovecot.
var fetchItems = []fetchItem{
	{"RFC822.SIZE", func(m *Message) (string, error) { return strconv.FormatInt(m.Size(), 10), nil }},
	{"ENVELOPE", func(m *Message) (string, error) { return string(AppendEnvelope(nil, m.Envelope(), false)), nil }},
	{"BODY", func(m *Message) (string, error) {
		return string(AppendBodyStructure(nil, m.BodyStructure(), false, false)), nil
	}},
	{"BODYSTRUCTURE", func(m *Message) (string, error) {
		return string(AppendBodyStructure(nil, m.BodyStructure(), true, false)), nil
	}},
	{"BODY[HEADER]", sec(nil, "HEADER", nil)},
	{"BODY[TEXT]", sec(nil, "TEXT", nil)},
	{"BODY[1]", sec([]int{1}, "", nil)},
	{"BODY[1.MIME]", sec([]int{1}, "MIME", nil)},
	{"BODY[2]", sec([]int{2}, "", nil)},
	{"BODY[2.MIME]", sec([]int{2}, "MIME", nil)},
	{"BODY[2.HEADER]", sec([]int{2}, "HEADER", nil)},
	{"BODY[2.TEXT]", sec([]int{2}, "TEXT", nil)},
	{"BODY[2.1]", sec([]int{2, 1}, "", nil)},
	{"BODY[2.2.MIME]", sec([]int{2, 2}, "MIME", nil)},
	{"BODY[3]", sec([]int{3}, "", nil)},
	{"BODY[HEADER.FIELDS (FROM SUBJECT)]", sec(nil, "HEADER.FIELDS", []string{"FROM", "SUBJECT"})},
	{"BODY[HEADER.FIELDS.NOT (FROM SUBJECT RECEIVED)]", sec(nil, "HEADER.FIELDS.NOT", []string{"FROM", "SUBJECT", "RECEIVED"})},
	{"BODY[2.HEADER.FIELDS (SUBJECT)]", sec([]int{2}, "HEADER.FIELDS", []string{"SUBJECT"})},
	{"BODY[TEXT]<5.10>", partial(sec(nil, "TEXT", nil), 5, 10)},
	{"BODY[1]<0.3>", partial(sec([]int{1}, "", nil), 0, 3)},
	{"BODY[]<100000.5>", partial(sec(nil, "", nil), 100000, 5)},
	{"BINARY.SIZE[1]", binSize([]int{1})},
	{"BINARY.SIZE[2]", binSize([]int{2})},
	{"BINARY[1]", bin([]int{1})},
	{"BINARY[2]", bin([]int{2})},
}

func testMessages(t testing.TB) []string {
	names, err := filepath.Glob("testdata/msg/*.eml")
	if err != nil || len(names) == 0 {
		t.Fatalf("no test messages: %v", err)
	}
	sort.Strings(names)
	return names
}

func parseFile(t testing.TB, name string) *Message {
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// render answers every fetchItem, one "NAME value" line each (errors as
// "NAME NO error").
func render(m *Message) string {
	var b strings.Builder
	for _, it := range fetchItems {
		v, err := it.get(m)
		if err != nil {
			v = "NO " + err.Error()
		}
		v = strings.NewReplacer("\r\n", "\\r\\n", "\n", "\\n", "\x00", "\\0").Replace(v)
		fmt.Fprintf(&b, "%s %s\n", it.name, v)
	}
	return b.String()
}

// TestGolden compares every answer with testdata/msg/*.golden. The golden
// files were written by -update and then checked by hand against RFC 9051's
// grammar and against Dovecot 2.3 (TestAgainstDovecot), item by item.
func TestGolden(t *testing.T) {
	for _, name := range testMessages(t) {
		t.Run(filepath.Base(name), func(t *testing.T) {
			got := render(parseFile(t, name))
			gold := strings.TrimSuffix(name, ".eml") + ".golden"
			if *update {
				os.WriteFile(gold, []byte(got), 0o644)
				return
			}
			want, err := os.ReadFile(gold)
			if err != nil {
				t.Fatal(err)
			}
			gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
			for i := 0; i < len(gl) || i < len(wl); i++ {
				var g, w string
				if i < len(gl) {
					g = gl[i]
				}
				if i < len(wl) {
					w = wl[i]
				}
				if g != w {
					t.Errorf("line %d\n got: %.400s\nwant: %.400s", i+1, g, w)
				}
			}
		})
	}
}
