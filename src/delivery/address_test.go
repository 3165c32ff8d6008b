package delivery

import (
	"fmt"
	"strings"
	"testing"

	"correo/src/cluster"
	"correo/src/mailbox"
)

func testProfile(t testing.TB) *cluster.Profile {
	p, err := cluster.LoadDefault(cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseLocal(t *testing.T) {
	p := testProfile(t)
	for _, tc := range []struct {
		in, user, detail, code string
	}{
		{"juan@correo.test", "juan", "", ""},
		{"Juan.Perez+Lists@CORREO.TEST", "juan.perez", "Lists", ""},
		{"juan+@correo.test", "juan", "", ""},
		{"+x@correo.test", "", "", "550 5.1.1"},
		{"juan@other.test", "", "", "550 5.1.2"},
		{"../x@correo.test", "", "", "550 5.1.1"},
		{"a/b@correo.test", "", "", "550 5.1.1"},
		{"juan", "", "", "501 5.1.3"},
		{"juan@", "", "", "501 5.1.3"},
		{"@correo.test", "", "", "501 5.1.3"},
		{"a@b@correo.test", "", "", "501 5.1.3"},
		{"juan@correo..test", "", "", "501 5.1.3"},
		{"ju an@correo.test", "", "", "501 5.1.3"},
		{"juan\x00@correo.test", "", "", "501 5.1.3"},
		{strings.Repeat("a", 250) + "@correo.test", "", "", "501 5.1.3"},
	} {
		l, err := ParseLocal(p, tc.in)
		if tc.code == "" {
			if err != nil || l.User != tc.user || l.Detail != tc.detail || l.Domain != "correo.test" {
				t.Errorf("ParseLocal(%q) = %+v, %v", tc.in, l, err)
			}
			continue
		}
		ae, ok := err.(*AddrError)
		if !ok || tc.code != fmt.Sprintf("%d %s", ae.Code, ae.Enhanced) {
			t.Errorf("ParseLocal(%q) = %+v, %v; want %s", tc.in, l, err, tc.code)
		}
	}
}

func TestStoredElsewhere(t *testing.T) {
	txt := StoredElsewhere("juan", "st2")
	if h, ok := ParseStoredElsewhere("<juan@correo.test> " + txt); !ok || h != "st2" {
		t.Errorf("ParseStoredElsewhere(%q) = %q, %v", txt, h, ok)
	}
	for _, s := range []string{"", "stored on st2", "<x> is stored on , not here", "<x> is stored on a b, not here"} {
		if h, ok := ParseStoredElsewhere(s); ok {
			t.Errorf("ParseStoredElsewhere(%q) = %q", s, h)
		}
	}
}

// FuzzParseLocal: whatever the address, a recipient that parses has a user
// name that is safe in a path, and errors carry a sendable reply.
func FuzzParseLocal(f *testing.F) {
	p := testProfile(f)
	for _, s := range []string{"juan@correo.test", "J+x@Correo.Test", "../../etc/passwd@correo.test", "a@b@c",
		"\"q\"@correo.test", "x@correo.test.", "", "@", "a/b@correo.test", "juan@[127.0.0.1]", "é@correo.test"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		l, err := ParseLocal(p, addr)
		if err != nil {
			ae, ok := err.(*AddrError)
			if !ok || (ae.Code != 501 && ae.Code != 550) || strings.ContainsAny(ae.Text, "\r\n") {
				t.Fatalf("ParseLocal(%q): %v", addr, err)
			}
			return
		}
		if n, err := mailbox.NormalizeName(l.User); err != nil || n != l.User {
			t.Fatalf("ParseLocal(%q) gave user %q, which NormalizeName refuses: %v", addr, l.User, err)
		}
		if CheckPath(l.Key(), false) != nil || !p.IsLocalDomain(l.Domain) {
			t.Fatalf("ParseLocal(%q) = %+v: key not a valid local address", addr, l)
		}
	})
}

// FuzzCheckPath: an accepted path can go into "MAIL FROM:<%s>" and a
// header without breaking either.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"a@b.c", "", "a b@c", "a@b>c", "x@y\r\nRCPT TO:<z@w>", "a\"b@c.d"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, addr string, null bool) {
		if CheckPath(addr, null) != nil {
			return
		}
		if addr == "" {
			if !null {
				t.Fatal("empty path accepted")
			}
			return
		}
		if strings.ContainsAny(addr, "<> \t\r\n\x00\"") || len(addr) > MaxPathLen || !strings.Contains(addr, "@") {
			t.Fatalf("CheckPath accepted %q", addr)
		}
	})
}
