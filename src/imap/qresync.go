package imap

import (
	"fmt"
	"strconv"
	"strings"

	"correo/src/imapwire"
	"correo/src/mailstore"
)

// resync is SELECT's QRESYNC parameter (RFC 7162 3.2.5): what the client
// remembers of the folder. The sequence match data is parsed and not
// used: it only helps a server that forgets expunges, and correo answers
// exactly from the UID list (see Mailbox.Changes).
type resync struct {
	validity uint32
	modseq   uint64
	known    *imapwire.SeqSet // nil: every UID
}

// selectParams parses SELECT/EXAMINE's parameter list: CONDSTORE
// (RFC 7162 3.1.8) and QRESYNC (uidvalidity modseq [known-uids
// [(seqs uids)]]), which needs ENABLE QRESYNC first.
func (ss *session) selectParams(p imapwire.Arg) (*resync, string) {
	if p.Kind != imapwire.KindList || len(p.List) == 0 {
		return nil, "SELECT's parameters are a list: (CONDSTORE) or (QRESYNC (uidvalidity modseq [known-uids])."
	}
	var rs *resync
	for i := 0; i < len(p.List); i++ {
		a := p.List[i]
		if a.Kind != imapwire.KindAtom {
			return nil, "SELECT's parameters are CONDSTORE and QRESYNC."
		}
		switch strings.ToUpper(a.Str) {
		case "CONDSTORE":
			ss.enabled["CONDSTORE"] = true
		case "QRESYNC":
			if !ss.enabled["QRESYNC"] {
				return nil, "QRESYNC needs ENABLE QRESYNC first."
			}
			if i+1 >= len(p.List) || p.List[i+1].Kind != imapwire.KindList || rs != nil {
				return nil, "QRESYNC takes (uidvalidity modseq [known-uids])."
			}
			i++
			var bad string
			if rs, bad = parseResync(p.List[i].List); bad != "" {
				return nil, bad
			}
		default:
			return nil, "Unknown SELECT parameter " + a.Str + "."
		}
	}
	return rs, ""
}

func parseResync(l []imapwire.Arg) (*resync, string) {
	const usage = "QRESYNC takes (uidvalidity modseq [known-uids [(known-seqs known-uids)]])."
	if len(l) < 2 || len(l) > 4 || l[0].Kind != imapwire.KindAtom || l[1].Kind != imapwire.KindAtom {
		return nil, usage
	}
	v, err := strconv.ParseUint(l[0].Str, 10, 32)
	if err != nil || v == 0 {
		return nil, "QRESYNC's UIDVALIDITY must be a number from 1 to 4294967295."
	}
	ms, err := imapwire.ParseModSeq(l[1].Str)
	if err != nil {
		return nil, "QRESYNC's MODSEQ must be a positive 63-bit number."
	}
	rs := &resync{validity: uint32(v), modseq: ms}
	rest := l[2:]
	if len(rest) > 0 && rest[0].Kind == imapwire.KindAtom {
		set, err := imapwire.ParseSeqSet(rest[0].Str)
		if err != nil {
			return nil, "QRESYNC's known UIDs: " + err.Error() + "."
		}
		rs.known = &set
		rest = rest[1:]
	}
	if len(rest) > 0 {
		// (known-seqs known-uids): checked for form only.
		m := rest[0]
		if m.Kind != imapwire.KindList || len(m.List) != 2 || m.List[0].Kind != imapwire.KindAtom || m.List[1].Kind != imapwire.KindAtom {
			return nil, usage
		}
		for _, x := range m.List {
			if _, err := imapwire.ParseSeqSet(x.Str); err != nil {
				return nil, "QRESYNC's sequence match data: " + err.Error() + "."
			}
		}
		rest = rest[1:]
	}
	if len(rest) > 0 {
		return nil, usage
	}
	return rs, ""
}

// resync sends, after SELECT's own responses, what changed since the
// client's MODSEQ: VANISHED (EARLIER) for the UIDs expunged and a FETCH
// for each message whose flags changed, both limited to the client's
// known UIDs (RFC 7162 3.2.5.1).
func (ss *session) resync(rs *resync) error {
	changed, vanished, err := ss.mb.Changes(rs.modseq)
	if err != nil {
		return err
	}
	next := ss.mb.UIDNext()
	below := mailstore.UIDSet{{Lo: 1, Hi: next - 1}}
	if next <= 1 {
		below = nil
	}
	gone := vanished.Intersect(below)
	if rs.known != nil {
		// Exact whatever the expunge log remembers: a known UID that is
		// not in the folder has vanished.
		gone = knownSet(*rs.known, next-1).Intersect(ss.mb.Missing())
	}
	if len(gone) > 0 {
		ss.w.Untagged("VANISHED (EARLIER) " + gone.String())
	}
	for i := range changed {
		m := &changed[i]
		if rs.known != nil && !rs.known.Contains(m.UID, next-1) {
			continue
		}
		seq := ss.mb.Seq(m.UID)
		if seq == 0 {
			continue
		}
		ss.w.Untagged(fmt.Sprintf("%d FETCH (%s)", seq, ss.flagsData(m)))
	}
	return nil
}

// knownSet is a client's UID set as a UIDSet, "*" standing for max.
func knownSet(set imapwire.SeqSet, top uint32) mailstore.UIDSet {
	var out mailstore.UIDSet
	for _, r := range set.Ranges(top) {
		if n := len(out); n > 0 && uint64(r.Start) <= uint64(out[n-1].Hi)+1 {
			out[n-1].Hi = max(out[n-1].Hi, r.Stop)
			continue
		}
		out = append(out, mailstore.UIDRange{Lo: r.Start, Hi: r.Stop})
	}
	return out
}
