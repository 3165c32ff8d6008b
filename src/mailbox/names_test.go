package mailbox

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeName(t *testing.T) {
	ok := []struct{ in, want string }{
		{"juan", "juan"},
		{"Juan", "juan"},
		{"JPEREZ", "jperez"},
		{"juan.perez", "juan.perez"},
		{"juan_perez", "juan_perez"},
		{"juan-perez", "juan-perez"},
		{"j", "j"},
		{"0", "0"},
		{"_", "_"},
		{"a.b.c", "a.b.c"},
		{"juan72", "juan72"},
		{"x-", "x-"},
		{strings.Repeat("a", 64), strings.Repeat("a", 64)},
	}
	for _, c := range ok {
		got, err := NormalizeName(c.in)
		if err != nil || got != c.want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	bad := []struct{ in, reason string }{
		{"", "empty"},
		{".", "relative"},
		{"..", "relative"},
		{"../etc", "'/'"},
		{"..hidden", "starts with '.'"},
		{".profile", "starts with '.'"},
		{"juan.", "ends with '.'"},
		{"ju..an", `".."`},
		{"a/b", "'/'"},
		{"/etc/passwd", "'/'"},
		{"juan\x00", "NUL"},
		{"\x00", "NUL"},
		{"juan\n", "control"},
		{"juan\r", "control"},
		{"ju\tan", "control"},
		{"\x1b[31mred", "control"},
		{"juan\x7f", "control"},
		{"juan perez", "space"},
		{" juan", "space"},
		{"juán", "non-ASCII"},
		{"ЈUAN", "non-ASCII"}, // Cyrillic Je: a look-alike
		{"\xff", "non-ASCII"},
		{"-rf", "starts with '-'"},
		{"--help", "starts with '-'"},
		{"juan@example.com", "'@'"},
		{"juan+tag", "'+'"},
		{"a:b", "':'"},
		{`a\b`, `'\\'`},
		{"*", "'*'"},
		{"$(reboot)", "'$'"},
		{strings.Repeat("a", 65), "more than 64"},
	}
	for _, c := range bad {
		got, err := NormalizeName(c.in)
		if err == nil {
			t.Errorf("NormalizeName(%q) = %q, want error", c.in, got)
			continue
		}
		var ne *NameError
		if !errors.As(err, &ne) || ne.Name != c.in {
			t.Errorf("NormalizeName(%q): error %v is not a *NameError for that name", c.in, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.reason) {
			t.Errorf("NormalizeName(%q) error %q does not mention %q", c.in, msg, c.reason)
		}
		if !strings.Contains(msg, "allowed") {
			t.Errorf("NormalizeName(%q) error %q does not say what is allowed", c.in, msg)
		}
		// The quoted name must make control bytes visible in logs.
		if strings.ContainsAny(msg, "\x00\n\r\t\x1b\x7f") || !utf8.ValidString(msg) {
			t.Errorf("NormalizeName(%q) error message carries raw control or invalid bytes: %q", c.in, msg)
		}
	}
}

func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"juan", "Juan.Perez", "..", "a/../b", "-x", "j\x00", strings.Repeat("z", 64)} {
		f.Add(s)
	}
	root := filepath.FromSlash("/srv/mail")
	f.Fuzz(func(t *testing.T, s string) {
		out, err := NormalizeName(s)
		if err != nil {
			if out != "" {
				t.Fatalf("NormalizeName(%q) returned %q with error %v", s, out, err)
			}
			return
		}
		again, err := NormalizeName(out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q → %q → %q, %v", s, out, again, err)
		}
		if len(out) == 0 || len(out) > MaxNameLen {
			t.Fatalf("NormalizeName(%q) = %q: length %d", s, out, len(out))
		}
		if strings.Contains(out, "/") || strings.Contains(out, "..") || strings.ContainsRune(out, 0) {
			t.Fatalf("NormalizeName(%q) = %q: contains / or .. or NUL", s, out)
		}
		if !strings.EqualFold(s, out) {
			t.Fatalf("NormalizeName(%q) = %q: not a case fold of the input", s, out)
		}
		p := filepath.Join(root, out)
		if filepath.Dir(p) != root || filepath.Base(p) != out {
			t.Fatalf("filepath.Join(%q, %q) = %q escapes or is not a direct child", root, out, p)
		}
	})
}
