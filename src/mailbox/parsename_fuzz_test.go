package mailbox

import (
	"strings"
	"testing"
)

// FuzzParseName feeds parseName the file names a Maildir may hold: other
// MDAs and users with shell access can put anything there, and List must
// neither panic nor invent sizes.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{
		"1700000000.M1P2Q3R00ff.host,S=10,W=12",
		"1700000000.M1P2Q3R00ff.host,S=10,W=12:2,SR",
		"100.plain.h:2,",
		"x,S=-1,W=abc:2,",
		":",
		",S=99999999999999999999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for _, dir := range []string{"new", "cur"} {
			m := parseName(dir, name)
			if m.Size < -1 || m.WireSize < -1 {
				t.Fatalf("negative size from %q: %+v", name, m)
			}
			if !strings.HasPrefix(name, m.Key) {
				t.Fatalf("key %q is not a prefix of %q", m.Key, name)
			}
			if m.Name != name || m.Dir != dir {
				t.Fatalf("name or dir changed: %+v", m)
			}
		}
	})
}
