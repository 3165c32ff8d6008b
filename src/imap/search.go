package imap

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"correo/src/imapmsg"
	"correo/src/imapwire"
	"correo/src/mailstore"
)

// maxSearchDepth bounds NOT/OR/parentheses in SEARCH.
const maxSearchDepth = 32

// searchMsg is one message under evaluation; its file is parsed only when
// a key needs the header or the body, and once.
type searchMsg struct {
	ss     *session
	m      *mailstore.Message
	seq    int
	flags  []string
	loaded bool
	msg    *imapmsg.Message
}

func (sm *searchMsg) load() *imapmsg.Message {
	if sm.loaded {
		return sm.msg
	}
	sm.loaded = true
	f, err := sm.ss.mb.Open(sm.m.UID)
	if err != nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil
	}
	msg, err := imapmsg.Parse(f, fi.Size())
	if err != nil {
		f.Close()
		return nil
	}
	sm.ss.searchFiles = append(sm.ss.searchFiles, f)
	sm.msg = msg
	return msg
}

func containsFold(hay, needle string) bool {
	return strings.Contains(strings.ToLower(hay), strings.ToLower(needle))
}

// day is the calendar day of t in its own zone (RFC 9051 allows the
// server's; the parsed day is midnight UTC).
func day(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func (sm *searchMsg) sentDate() (time.Time, bool) {
	msg := sm.load()
	if msg == nil {
		return time.Time{}, false
	}
	return msg.Date()
}

func (sm *searchMsg) eval(k imapwire.SearchKey) bool {
	switch k.Op {
	case imapwire.SearchAll:
		return true
	case imapwire.SearchAnd:
		for _, sub := range k.Keys {
			if !sm.eval(sub) {
				return false
			}
		}
		return true
	case imapwire.SearchOr:
		return sm.eval(k.Keys[0]) || sm.eval(k.Keys[1])
	case imapwire.SearchNot:
		return !sm.eval(k.Keys[0])
	case imapwire.SearchFlag:
		return hasFlag(sm.flags, k.Value)
	case imapwire.SearchHeader:
		msg := sm.load()
		if msg == nil {
			return false
		}
		// Decoded (RFC 2047) values: "Año" finds =?UTF-8?Q?A=C3=B1o?=.
		for _, v := range msg.HeaderValues(k.Field) {
			if containsFold(v, k.Value) {
				return true
			}
		}
		return false
	case imapwire.SearchBody, imapwire.SearchText:
		msg := sm.load()
		return msg != nil && msg.Contains(k.Value, k.Op == imapwire.SearchText)
	case imapwire.SearchBefore:
		return day(sm.m.InternalDate()).Before(k.Date)
	case imapwire.SearchOn:
		return day(sm.m.InternalDate()).Equal(k.Date)
	case imapwire.SearchSince:
		return !day(sm.m.InternalDate()).Before(k.Date)
	case imapwire.SearchSentBefore, imapwire.SearchSentOn, imapwire.SearchSentSince:
		t, ok := sm.sentDate()
		if !ok {
			return false
		}
		d := day(t)
		switch k.Op {
		case imapwire.SearchSentBefore:
			return d.Before(k.Date)
		case imapwire.SearchSentOn:
			return d.Equal(k.Date)
		}
		return !d.Before(k.Date)
	case imapwire.SearchLarger:
		return uint64(sm.m.Size) > k.Num
	case imapwire.SearchSmaller:
		return uint64(sm.m.Size) < k.Num
	case imapwire.SearchUID:
		set := k.Set
		if set.Saved {
			set = sm.ss.saved
		}
		max := uint32(0)
		if msgs := sm.ss.mb.Messages(); len(msgs) > 0 {
			max = msgs[len(msgs)-1].UID
		}
		return set.Contains(sm.m.UID, max)
	case imapwire.SearchSeq:
		if k.Set.Saved {
			return sm.eval(imapwire.SearchKey{Op: imapwire.SearchUID, Set: k.Set})
		}
		return k.Set.Contains(uint32(sm.seq), uint32(sm.ss.mb.Len()))
	case imapwire.SearchModSeq:
		return sm.m.ModSeq >= k.Num
	}
	return false
}

func (ss *session) search(cmd *imapwire.Command) bool {
	req, err := imapwire.ParseSearch(cmd.Args, maxSearchDepth)
	if err != nil {
		// An unknown charset is NO, not BAD (RFC 9051 6.4.4).
		if we, ok := err.(*imapwire.Error); ok && strings.HasPrefix(we.Code, "BADCHARSET") {
			ss.w.Tagged(cmd.Tag, "NO", we.Code, capitalize(we.Text))
			return false
		}
		return ss.bad1(cmd, capitalize(err.Error())+".")
	}
	msgs := ss.mb.Messages()
	var hits []uint32 // UIDs or sequence numbers, as asked
	var maxModSeq uint64
	usesModSeq := usesModSeqKey(req.Key)
	defer ss.closeSearchFiles()
	for i := range msgs {
		sm := &searchMsg{ss: ss, m: &msgs[i], seq: i + 1, flags: ss.flags(&msgs[i])}
		matched := sm.eval(req.Key)
		ss.closeSearchFiles()
		if !matched {
			continue
		}
		if cmd.UID {
			hits = append(hits, msgs[i].UID)
		} else {
			hits = append(hits, uint32(i+1))
		}
		maxModSeq = max(maxModSeq, msgs[i].ModSeq)
	}
	if req.Return&imapwire.ReturnSave != 0 {
		// "$" holds UIDs or sequence numbers as the SEARCH did; keep it
		// as UIDs so it survives expunges, per RFC 5182.
		var uids []uint32
		for _, h := range hits {
			if cmd.UID {
				uids = append(uids, h)
			} else {
				uids = append(uids, msgs[h-1].UID)
			}
		}
		ss.saved = uidSeqSet(uids)
	}
	if !req.ESearch {
		line := "SEARCH"
		for _, h := range hits {
			line += " " + strconv.FormatUint(uint64(h), 10)
		}
		if usesModSeq && len(hits) > 0 {
			line += fmt.Sprintf(" (MODSEQ %d)", maxModSeq)
		}
		ss.w.Untagged(line)
	} else {
		line := "ESEARCH (TAG " + imapwire.Quote(cmd.Tag) + ")"
		if cmd.UID {
			line += " UID"
		}
		r := req.Return
		if len(hits) > 0 {
			if r&imapwire.ReturnMin != 0 {
				line += " MIN " + strconv.FormatUint(uint64(hits[0]), 10)
			}
			if r&imapwire.ReturnMax != 0 {
				line += " MAX " + strconv.FormatUint(uint64(hits[len(hits)-1]), 10)
			}
			if r&imapwire.ReturnAll != 0 {
				line += " ALL " + mailstore.SetOf(hits).String()
			}
		}
		if r&imapwire.ReturnCount != 0 {
			line += " COUNT " + strconv.Itoa(len(hits))
		}
		if usesModSeq && len(hits) > 0 {
			line += fmt.Sprintf(" MODSEQ %d", maxModSeq)
		}
		ss.w.Untagged(line)
	}
	if done := ss.announce(cmd.UID); done {
		return true
	}
	ss.w.Tagged(cmd.Tag, "OK", "", cmd.Name+" completed.")
	return false
}

func (ss *session) closeSearchFiles() {
	for _, f := range ss.searchFiles {
		f.Close()
	}
	ss.searchFiles = ss.searchFiles[:0]
}

func usesModSeqKey(k imapwire.SearchKey) bool {
	if k.Op == imapwire.SearchModSeq {
		return true
	}
	for _, sub := range k.Keys {
		if usesModSeqKey(sub) {
			return true
		}
	}
	return false
}

// uidSeqSet is SEARCH SAVE's result as a set; ParseSeqSet of its text
// cannot fail, since SetOf writes valid ranges.
func uidSeqSet(uids []uint32) imapwire.SeqSet {
	if len(uids) == 0 {
		return imapwire.SeqSet{}
	}
	s, _ := imapwire.ParseSeqSet(mailstore.SetOf(uids).String())
	return s
}
