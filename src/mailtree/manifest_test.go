package mailtree

import (
	"bytes"
	"fmt"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestValidPath(t *testing.T) {
	tests := []struct {
		p    string
		want string // "" for valid
	}{
		{"cur", ""},
		{"cur/1733212345.M123456P789.host,S=1234,W=1260:2,FS", ""},
		{".Archive.2024/cur/x", ""},
		{".Mr%2E Smith/maildirfolder", ""},
		{"caf\xe9", ""}, // Latin-1: not UTF-8, still a valid name
		{strings.Repeat("a", 255), ""},
		{"", "empty path"},
		{"/etc/passwd", "absolute"},
		{"../x", `".." component`},
		{"a/../../x", `".." component`},
		{"a/..", `".." component`},
		{".", `"." component`},
		{"a/./b", `"." component`},
		{"a//b", "empty component"},
		{"a/", "empty component"},
		{"cur/\x00", "NUL"},
		{strings.Repeat("a", 256), "256 bytes"},
		{strings.Repeat("a/", 2048) + "a", "more than 4095"},
	}
	for _, tt := range tests {
		err := ValidPath(tt.p)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ValidPath(%.50q) = %v, want nil", tt.p, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("ValidPath(%.50q) = %v, want an error containing %q", tt.p, err, tt.want)
		}
	}
}

func TestManifestCheck(t *testing.T) {
	d := func(p string) Entry { return Entry{Path: p, Dir: true, Mode: 0o700} }
	f := func(p string) Entry { return Entry{Path: p, Size: 1, Mode: 0o600} }
	tests := []struct {
		name    string
		entries []Entry
		want    string
	}{
		{"valid", []Entry{d(".Sent"), d(".Sent/cur"), f(".Sent/cur/m"), f("correo-uidlist"), d("cur"), f("cur/m"), d("tmp")}, ""},
		{"empty", nil, ""},
		{"unsorted", []Entry{f("b"), f("a")}, `"a" comes after "b"`},
		{"duplicate", []Entry{f("a"), f("a")}, `"a" is listed twice`},
		{"missing parent", []Entry{f("cur/m")}, `without its parent directory "cur"`},
		{"parent is a file", []Entry{f("cur"), f("cur/m")}, "without its parent"},
		{"traversal", []Entry{f("../x")}, `entry 0: path "../x"`},
		{"negative size", []Entry{{Path: "a", Size: -1}}, "negative size"},
		{"directory with size", []Entry{{Path: "a", Dir: true, Size: 3}}, "directory with size 3"},
		{"file type bits", []Entry{{Path: "a", Mode: 0o100600}}, "bits other than permissions"},
		{"move marker", []Entry{f("correo-moving")}, "never copied"},
		{"lock", []Entry{d("cur"), f("cur/correo-pop3.lock")}, "never copied"},
		{"stage temporary", []Entry{f(".mailtree-1.1")}, "never copied"},
		{"inside tmp", []Entry{d("tmp"), f("tmp/m")}, "tmp/ directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&Manifest{Entries: tt.entries}).Check()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Check = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Check = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	d := func(p string, mode uint32, mt int64) Entry { return Entry{Path: p, Dir: true, Mode: mode, MTime: mt} }
	f := func(p string, size, mt int64, mode uint32) Entry {
		return Entry{Path: p, Size: size, MTime: mt, Mode: mode}
	}
	tests := []struct {
		name          string
		src, dst      []Entry
		fetch, remove []string
	}{
		{"equal", []Entry{d("a", 0o700, 1), f("a/x", 1, 1, 0o600)}, []Entry{d("a", 0o700, 1), f("a/x", 1, 1, 0o600)}, nil, nil},
		{"into empty", []Entry{d("a", 0o700, 1), f("a/x", 1, 1, 0o600)}, nil, []string{"a", "a/x"}, nil},
		{"size", []Entry{f("x", 2, 1, 0o600)}, []Entry{f("x", 1, 1, 0o600)}, []string{"x"}, nil},
		{"mtime", []Entry{f("x", 1, 2, 0o600)}, []Entry{f("x", 1, 1, 0o600)}, []string{"x"}, nil},
		{"mode", []Entry{f("x", 1, 1, 0o640)}, []Entry{f("x", 1, 1, 0o600)}, []string{"x"}, nil},
		{"dir mode", []Entry{d("a", 0o750, 1)}, []Entry{d("a", 0o700, 1)}, []string{"a"}, nil},
		{"dir mtime", []Entry{d("a", 0o700, 2)}, []Entry{d("a", 0o700, 1)}, []string{"a"}, nil},
		{"removed tree deepest first",
			nil,
			[]Entry{d("a", 0o700, 1), d("a/b", 0o700, 1), f("a/b/x", 1, 1, 0o600), f("a/y", 1, 1, 0o600), f("z", 1, 1, 0o600)},
			nil, []string{"z", "a/y", "a/b/x", "a/b", "a"}},
		{"file became directory", []Entry{d("x", 0o700, 1), f("x/y", 1, 1, 0o600)}, []Entry{f("x", 1, 1, 0o600)}, []string{"x", "x/y"}, []string{"x"}},
		{"directory became file", []Entry{f("x", 1, 1, 0o600)}, []Entry{d("x", 0o700, 1), f("x/y", 1, 1, 0o600)}, []string{"x"}, []string{"x/y", "x"}},
		{"flag rename", []Entry{d("cur", 0o700, 2), f("cur/k:2,ST", 5, 1, 0o600)}, []Entry{d("cur", 0o700, 1), f("cur/k:2,S", 5, 1, 0o600)},
			[]string{"cur", "cur/k:2,ST"}, []string{"cur/k:2,S"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fetch, remove := Diff(&Manifest{Entries: tt.src}, &Manifest{Entries: tt.dst})
			if got := pathsOf(fetch); !slices.Equal(got, tt.fetch) {
				t.Errorf("fetch %v, want %v", got, tt.fetch)
			}
			if got := pathsOf(remove); !slices.Equal(got, tt.remove) {
				t.Errorf("remove %v, want %v", got, tt.remove)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	src := &Manifest{Entries: []Entry{
		{Path: "a", Dir: true, Mode: 0o700, MTime: 1},
		{Path: "a/1", Size: 1, MTime: 1, Mode: 0o600},
		{Path: "a/2", Size: 1, MTime: 1, Mode: 0o600},
		{Path: "a/3", Size: 1, MTime: 1, Mode: 0o600},
		{Path: "a/4", Size: 1, MTime: 1, Mode: 0o600},
		{Path: "a/5", Size: 1, MTime: 1, Mode: 0o600},
		{Path: "a/6", Size: 1, MTime: 1, Mode: 0o600},
	}}
	same := &Manifest{Entries: slices.Clone(src.Entries)}
	same.Entries[0].MTime = 99 // directory mtimes are not verified
	if err := Verify(src, same); err != nil {
		t.Fatalf("Verify of equal trees: %v", err)
	}
	dst := &Manifest{Entries: []Entry{
		{Path: "a", Dir: true, Mode: 0o700, MTime: 1},
		{Path: "a/1", Size: 2, MTime: 1, Mode: 0o600},
		{Path: "a/2", Size: 1, MTime: 2, Mode: 0o600},
		{Path: "a/3", Size: 1, MTime: 1, Mode: 0o644},
		{Path: "a/4", Dir: true, Mode: 0o700},
		{Path: "a/6", Size: 1, MTime: 1, Mode: 0o600},
		{Path: "a/7", Size: 1, MTime: 1, Mode: 0o600},
	}}
	err := Verify(src, dst)
	if err == nil {
		t.Fatal("Verify of different trees passed")
	}
	for _, want := range []string{"6 of 7 paths differ", `"a/1" has size 1 on source, 2 on target`, `"a/2" has mtime`, `"a/3" has mode 0600 on source, 0644`,
		`"a/4" is a file on source, a directory on target`, `"a/5" missing on target`, "and 1 more"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Verify error %q lacks %q", err, want)
		}
	}
}

func TestEncodeDecode(t *testing.T) {
	m := &Manifest{Entries: []Entry{
		{Path: ".Caf\xe9", Dir: true, Mode: 0o700, MTime: 1}, // Latin-1 folder name from other software
		{Path: ".Caf\xe9/m", Size: 12, MTime: -5, Mode: 0o600},
		{Path: "cur", Dir: true, Mode: 0o2750, MTime: 1733212345123456789},
		{Path: "cur/1733212345.M1P2.h,S=3:2,\"\\\u00e9", Size: 3, MTime: 1733212345123456789, Mode: 0o600},
	}}
	var buf bytes.Buffer
	if err := m.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	wire := buf.String()
	got, err := DecodeManifest(&buf, 10)
	if err != nil {
		t.Fatalf("%v\n%s", err, wire)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip\n%+v\nwant\n%+v\nwire %s", got, m, wire)
	}
	buf.Reset()
	(&Manifest{}).Encode(&buf)
	if buf.String() != "{\"e\":[]}\n" {
		t.Errorf("empty manifest encodes as %q", buf.String())
	}
	if got, err := DecodeManifest(&buf, 0); err != nil || len(got.Entries) != 0 {
		t.Errorf("decoding the empty manifest: %v, %v", got, err)
	}
}

func TestDecodeRefuses(t *testing.T) {
	many := &Manifest{}
	for i := range 20 {
		many.Entries = append(many.Entries, Entry{Path: fmt.Sprintf("m%02d", i), Mode: 0o600})
	}
	var manyWire bytes.Buffer
	many.Encode(&manyWire)
	long := `{"e":[{"p":"` + strings.Repeat("a", 200000) + `","m":0,"o":384}]}`
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"too many", manyWire.String(), 19, "more than 19 entries"},
		{"too many bytes", long, 1, "more than 73728 bytes"},
		{"traversal", `{"e":[{"p":"../x","m":0,"o":384}]}`, 10, `".." component`},
		{"unsorted", `{"e":[{"p":"b","m":0,"o":384},{"p":"a","m":0,"o":384}]}`, 10, "must be sorted"},
		{"huge size", `{"e":[{"p":"a","s":99999999999999999999,"m":0,"o":384}]}`, 10, "entry 0"},
		{"negative size", `{"e":[{"p":"a","s":-1,"m":0,"o":384}]}`, 10, "negative size"},
		{"no path", `{"e":[{"m":0,"o":384}]}`, 10, "no path"},
		{"two paths", `{"e":[{"p":"a","b":"YQ==","m":0,"o":384}]}`, 10, "both"},
		{"garbage", "\x00\xffnot json", 10, "decoding manifest"},
		{"truncated", `{"e":[{"p":"a","m":0,"o":384}`, 10, "unexpected EOF"},
		{"no list", `{}`, 10, `no "e" list`},
		{"list twice", `{"e":[],"e":[]}`, 10, "twice"},
		{"not an object", `[]`, 10, "expected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeManifest(strings.NewReader(tt.in), tt.max)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DecodeManifest = %v, %v; want an error containing %q", m, err, tt.want)
			}
		})
	}
}

func FuzzValidPath(f *testing.F) {
	for _, s := range []string{"cur/x:2,S", ".Sent/cur/m", "../x", "a/../../x", "/etc/passwd", "cur/\x00", "", ".", "a//b", "a/", "caf\xe9", strings.Repeat("b", 256)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidPath(p) != nil {
			return
		}
		// A valid path stays inside the root lexically: what the stage's
		// no-follow walk relies on.
		if !filepath.IsLocal(p) || path.Clean(p) != p || strings.ContainsRune(p, 0) || len(p) > MaxPathLen {
			t.Fatalf("ValidPath accepted %q", p)
		}
		for c := range strings.SplitSeq(p, "/") {
			if c == "" || c == "." || c == ".." || len(c) > MaxNameLen {
				t.Fatalf("ValidPath accepted %q with component %q", p, c)
			}
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte(`{"e":[{"d":true,"p":"cur","m":1,"o":448},{"p":"cur/m:2,S","s":3,"m":2,"o":384}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(bytes.NewReader(data), 100)
		if err != nil {
			return
		}
		if err := m.Check(); err != nil {
			t.Fatalf("decoded manifest fails Check: %v", err)
		}
		var buf bytes.Buffer
		if err := m.Encode(&buf); err != nil {
			t.Fatal(err)
		}
		again, err := DecodeManifest(&buf, 100)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", buf.String(), err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("round trip changed the manifest:\n%+v\n%+v", m, again)
		}
	})
}
