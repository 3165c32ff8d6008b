package smtpd

import (
	"strings"
	"testing"

	"correo/src/cluster"
	"correo/src/delivery"
)

func devProfile(t testing.TB) *cluster.Profile {
	p, err := cluster.LoadDefault(cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The strings go-smtp hands over for each trick (checked against its
// parser: brackets and source routes removed, quoted local parts
// unquoted).
var classifyCases = []struct {
	addr string
	dest Destination
	code int
}{
	{"ana@correo.test", Local, 0},
	{"Ana+news@CORREO.TEST", Local, 0},
	{"victim@example.com", Remote, 0},
	{"user%other@correo.test", Refused, 554},
	{"user%other.example@correo.test", Refused, 554},
	{"user@other@correo.test", Refused, 554}, // "user@other"@correo.test
	{"other!user@correo.test", Refused, 554},
	{"victim@example.com", Remote, 0}, // @correo.test:victim@example.com
	{"victim@[192.0.2.1]", Refused, 501},
	{"no-at-sign", Refused, 501},
	{"a b@correo.test", Refused, 501}, // "a b"@correo.test
	{"@correo.test", Refused, 501},
	{"ana@", Refused, 501},
	{"ana@correo.test.", Refused, 501},
	{strings.Repeat("a", 300) + "@correo.test", Refused, 501},
}

func TestClassify(t *testing.T) {
	p := devProfile(t)
	for _, c := range classifyCases {
		d, r := Classify(p, c.addr)
		if d != c.dest {
			t.Errorf("Classify(%q) = %v %+v, want %v", c.addr, d, r, c.dest)
			continue
		}
		if d == Refused && r.Code != c.code {
			t.Errorf("Classify(%q) code %d, want %d", c.addr, r.Code, c.code)
		}
	}
}

// FuzzClassify: never panics; whatever it lets through as Local or Remote
// is a plain local@domain with no routing characters, which
// delivery.CheckPath accepts; Local ones have a cluster domain.
func FuzzClassify(f *testing.F) {
	for _, c := range classifyCases {
		f.Add(c.addr)
	}
	p := devProfile(f)
	f.Fuzz(func(t *testing.T, addr string) {
		d, r := Classify(p, addr)
		if d == Refused {
			if r == nil || (r.Code != 554 && r.Code != 501 && r.Code != 550) {
				t.Fatalf("Classify(%q): refused without a proper reply: %+v", addr, r)
			}
			return
		}
		if err := delivery.CheckPath(addr, false); err != nil {
			t.Fatalf("Classify(%q) = %v but CheckPath says %v", addr, d, err)
		}
		at := strings.LastIndexByte(addr, '@')
		if strings.ContainsAny(addr[:at], "@%!") {
			t.Fatalf("Classify(%q) let a routing character through", addr)
		}
		if (d == Local) != p.IsLocalDomain(addr[at+1:]) {
			t.Fatalf("Classify(%q) = %v for domain %q", addr, d, addr[at+1:])
		}
		if d == Local {
			// Whatever passes must also be safe for the lookup key.
			if _, err := delivery.ParseLocal(p, addr); err != nil {
				if ae := err.(*delivery.AddrError); ae.Code != 550 {
					t.Fatalf("Local %q refused by ParseLocal with %v", addr, err)
				}
			}
		}
	})
}
