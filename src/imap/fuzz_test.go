package imap

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"correo/src/imapwire"
	"correo/src/mailstore"
)

// FuzzSelectParams feeds SELECT/EXAMINE parameter lists, as the wire layer
// parses them from a client, to the QRESYNC parser: it must answer every
// one with a parameter set or a BAD text, and what it accepts must be in
// range, whatever the known-UID sets hold.
func FuzzSelectParams(f *testing.F) {
	for _, s := range []string{
		"(CONDSTORE)",
		"(QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
		"(QRESYNC (1 1 1:* (1:5 1:5)))",
		"(QRESYNC (4294967295 9223372036854775807 4294967295))",
		"(QRESYNC (0 1))", "(QRESYNC (1 0))", "(QRESYNC)", "()", "(QRESYNC (1 1) QRESYNC (1 1))",
		"(CONDSTORE QRESYNC (2 3 $))", "(QRESYNC (1 1 1:3 (1:3)))", "(QRESYNC (4294967296 1))",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, param string) {
		if strings.ContainsAny(param, "\r\n{") {
			return // one line, no literals: what a parameter list is
		}
		r := imapwire.NewReader(bufio.NewReader(bytes.NewReader([]byte("a SELECT INBOX "+param+"\r\n"))), imapwire.Limits{}, nil)
		cmd, err := r.ReadCommand()
		if err != nil || len(cmd.Args) != 2 {
			return
		}
		ss := &session{enabled: map[string]bool{"QRESYNC": true}}
		rs, bad := ss.selectParams(cmd.Args[1])
		switch {
		case bad != "" && rs != nil:
			t.Fatalf("%q: both a resync and BAD %q", param, bad)
		case bad != "":
			if !strings.HasSuffix(bad, ".") {
				t.Fatalf("%q: BAD text %q is not a sentence", param, bad)
			}
		case rs != nil:
			if rs.validity == 0 || rs.modseq == 0 {
				t.Fatalf("%q: accepted UIDVALIDITY %d MODSEQ %d", param, rs.validity, rs.modseq)
			}
			if rs.known != nil {
				// Whatever the set, turning it into ranges is bounded by
				// its length, not by the UIDs it names.
				set := knownSet(*rs.known, 4294967295)
				if len(set) > len(rs.known.Set) {
					t.Fatalf("%q: %d ranges from %d", param, len(set), len(rs.known.Set))
				}
				_ = set.Intersect(mailstore.UIDSet{{Lo: 1, Hi: 4294967295}})
			}
		}
	})
}
