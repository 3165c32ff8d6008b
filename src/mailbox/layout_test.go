package mailbox

import (
	"hash/fnv"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSchemeDir(t *testing.T) {
	cases := []struct {
		scheme Scheme
		name   string
		want   string
	}{
		{First3, "juan", "j/u/a/juan"},
		{First3, "Juan", "j/u/a/juan"},
		{First3, "ju", "j/u/_/ju"},
		{First3, "j", "j/_/_/j"},
		{First3, "j.perez", "j/_/p/j.perez"},
		{First3, "a-b", "a/_/b/a-b"},
		{First3, "maria", "m/a/r/maria"},
		{First2Last1, "juan", "j/u/n/juan"},
		{First2Last1, "ju", "j/u/_/ju"},
		{First2Last1, "j", "j/_/_/j"},
		{First2Last1, "jua", "j/u/a/jua"},
		{First2Last1, "ana-", "a/n/_/ana-"},
		{First1Last2, "juan", "j/a/n/juan"},
		{First1Last2, "jperez", "j/e/z/jperez"},
		{First1Last2, "ju", "j/u/_/ju"},
		{First1Last2, "j", "j/_/_/j"},
		{First1Last2, "jua", "j/u/a/jua"},
		{First1Last2, "a.b", "a/_/b/a.b"},
		{Hash2, "juan", hash2Want("juan")},
		{Hash2, "JUAN", hash2Want("juan")},
		{Hash2, "j", hash2Want("j")},
	}
	for _, c := range cases {
		got, err := c.scheme.Dir(c.name)
		if err != nil || got != c.want {
			t.Errorf("%s.Dir(%q) = %q, %v; want %q", c.scheme, c.name, got, err, c.want)
		}
	}
}

// hash2Want recomputes the documented hash independently of Dir.
func hash2Want(n string) string {
	h := fnv.New32a()
	h.Write([]byte(n))
	v := h.Sum32()
	const hexd = "0123456789abcdef"
	b1, b2 := byte(v>>8), byte(v)
	return string([]byte{hexd[b1>>4], hexd[b1&15], '/', hexd[b2>>4], hexd[b2&15], '/'}) + n
}

// A fixed value guards the hash against silent change: moving every mailbox
// because a library changed would be a disaster.
func TestHash2Stable(t *testing.T) {
	got, err := Hash2.Dir("juan")
	if err != nil {
		t.Fatal(err)
	}
	// The golden value was computed once by the loop below, the textbook
	// FNV-1a (offset basis 2166136261, prime 16777619).
	if got != "59/8f/juan" {
		t.Fatalf("Hash2.Dir(juan) = %q, want the golden 59/8f/juan", got)
	}
	var h uint32 = 2166136261
	for _, c := range []byte("juan") {
		h ^= uint32(c)
		h *= 16777619
	}
	want := hash2Want("juan")
	if got != want || !strings.HasPrefix(got, hexByte(byte(h>>8))+"/"+hexByte(byte(h))+"/") {
		t.Fatalf("Hash2.Dir(juan) = %q, want %q (h=%#x)", got, want, h)
	}
}

func hexByte(b byte) string {
	const hexd = "0123456789abcdef"
	return string([]byte{hexd[b>>4], hexd[b&15]})
}

func TestSchemeHostile(t *testing.T) {
	root := "/srv/mail"
	hostile := []string{"", ".", "..", "../x", "a/b", "/abs", "x\x00", "..\x00", "-rf", ".hidden", "a..b", "x.", "a\nb", "é", strings.Repeat("a", 65)}
	for _, sc := range Schemes() {
		for _, n := range hostile {
			if d, err := sc.Dir(n); err == nil {
				t.Errorf("%s.Dir(%q) = %q, want error", sc, n, d)
			}
			if h, err := sc.Home(root, n); err == nil {
				t.Errorf("%s.Home(%q) = %q, want error", sc, n, h)
			}
			if m, err := sc.MaildirPath(root, n); err == nil {
				t.Errorf("%s.MaildirPath(%q) = %q, want error", sc, n, m)
			}
		}
	}
}

func TestSchemeHome(t *testing.T) {
	h, err := First3.Home("/srv/mail", "Juan")
	if err != nil || h != filepath.FromSlash("/srv/mail/j/u/a/juan") {
		t.Fatalf("Home = %q, %v", h, err)
	}
	m, err := First3.MaildirPath("/srv/mail", "juan")
	if err != nil || m != filepath.FromSlash("/srv/mail/j/u/a/juan/Maildir") {
		t.Fatalf("MaildirPath = %q, %v", m, err)
	}
	if _, err := First3.Home("", "juan"); err == nil {
		t.Fatal("Home with empty root succeeded")
	}
	if _, err := Scheme("bogus").Dir("juan"); err == nil || !strings.Contains(err.Error(), "first3") {
		t.Fatalf("bogus scheme: %v", err)
	}
}

func TestParseScheme(t *testing.T) {
	for _, sc := range Schemes() {
		got, err := ParseScheme(string(sc))
		if err != nil || got != sc {
			t.Errorf("ParseScheme(%q) = %q, %v", sc, got, err)
		}
	}
	_, err := ParseScheme("first4")
	if err == nil {
		t.Fatal("ParseScheme(first4) succeeded")
	}
	for _, sc := range Schemes() {
		if !strings.Contains(err.Error(), string(sc)) {
			t.Errorf("error %q does not list %q", err, sc)
		}
	}
	if !slices.Equal(Schemes(), []Scheme{First3, First2Last1, First1Last2, Hash2}) {
		t.Errorf("Schemes() = %v", Schemes())
	}
	s := Schemes()
	s[0] = "mutated"
	if Schemes()[0] != First3 {
		t.Error("Schemes returns the package's own slice")
	}
}

func FuzzSchemeDir(f *testing.F) {
	for _, s := range []string{"juan", "j", "ju", "a.b", "..", "a/b", "-x", "J.PEREZ"} {
		f.Add(s)
	}
	root := filepath.FromSlash("/srv/mail")
	f.Fuzz(func(t *testing.T, name string) {
		for _, sc := range Schemes() {
			d, err := sc.Dir(name)
			if err != nil {
				continue
			}
			d2, err := sc.Dir(name)
			if err != nil || d2 != d {
				t.Fatalf("%s.Dir(%q) not deterministic: %q then %q, %v", sc, name, d, d2, err)
			}
			parts := strings.Split(d, "/")
			levels := 3
			if sc == Hash2 {
				levels = 2
			}
			if len(parts) != levels+1 {
				t.Fatalf("%s.Dir(%q) = %q: want %d levels and the name", sc, name, d, levels)
			}
			for _, p := range parts {
				if p == "" || p == "." || p == ".." || strings.HasPrefix(p, "-") {
					t.Fatalf("%s.Dir(%q) = %q: bad component %q", sc, name, d, p)
				}
			}
			h, err := sc.Home(root, name)
			if err != nil {
				t.Fatalf("%s.Home(%q) failed after Dir succeeded: %v", sc, name, err)
			}
			rel, err := filepath.Rel(root, h)
			if err != nil || rel != filepath.FromSlash(d) || strings.HasPrefix(rel, "..") {
				t.Fatalf("%s.Home(%q) = %q escapes %q", sc, name, h, root)
			}
		}
	})
}
