package mailstore

import (
	"bytes"
	"testing"
)

// FuzzParseUIDList: the list is read from a directory the user's own
// tools (and a crash, and a full disk) can damage. Whatever it holds, the
// parser must not panic, and what it accepts must keep the invariants the
// rest of the package relies on and survive a write and a re-read.
func FuzzParseUIDList(f *testing.F) {
	for _, s := range []string{
		"correo-uidlist 1 V1700000000 N1 M1 G1 F0\nend 0\n",
		"correo-uidlist 1 V1700000000 N4 M9 G7 F2\nx 5 2\nx 8 3\n1 4 120 1700000000 c :2,S 1700000000.M1P2Q3R00ff.host,S=118,W=120\nend 1\n",
		"correo-uidlist 1 V7 N3 M3 G2 F0\n1 2 10 5 n - 5.a.h,S=9,W=10\n2 3 0 -1 c :2,abcFS 6.b.h\nend 2\n",
		"correo-uidlist 1 V7 N3 M3 G2 F0\n1 2 10 5 n - k\n1 2 10 5 n - k\nend 2\n",
		"correo-uidlist 1 V7 N3 M3 G2 F0\nx 1 1:2,4\nend 0\n",
		"correo-uidlist 1 V0 N0 M0 G0 F0\nend 0\n",
		"correo-uidlist 1 V1 N1 M1 G1 F0\nend 0",
		"garbage\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseUIDList(data)
		if err != nil {
			return
		}
		prev := uint32(0)
		keys := map[string]bool{}
		for _, e := range l.msgs {
			if e.uid <= prev || e.uid >= l.uidNext || e.modseq == 0 || e.modseq > l.modseq || e.size < 0 {
				t.Fatalf("accepted an entry breaking the invariants: %+v in %q", e, data)
			}
			if !validKey(e.key) || keys[e.key] {
				t.Fatalf("accepted key %q", e.key)
			}
			keys[e.key] = true
			prev = e.uid
		}
		for _, x := range l.vanished {
			if x.modseq <= l.floor || x.modseq > l.modseq || len(x.uids) == 0 {
				t.Fatalf("accepted expunge record %+v", x)
			}
		}
		out := l.marshal()
		l2, err := parseUIDList(out)
		if err != nil {
			t.Fatalf("re-reading what marshal wrote: %v\n%s", err, out)
		}
		if !bytes.Equal(l2.marshal(), out) {
			t.Fatalf("not stable through marshal:\n%s\n%s", out, l2.marshal())
		}
	})
}
