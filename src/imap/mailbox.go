package imap

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"correo/src/imapwire"
	"correo/src/mailstore"
)

// noCode maps a store error to the tagged NO's response code (RFC 5530).
func noCode(err error) string {
	var ne *mailstore.NameError
	switch {
	case errors.As(err, &ne):
		return "CANNOT"
	case errors.Is(err, mailstore.ErrNoFolder):
		return "NONEXISTENT"
	case errors.Is(err, mailstore.ErrExists):
		return "ALREADYEXISTS"
	case errors.Is(err, mailstore.ErrHasChildren):
		return "INUSE"
	case errors.Is(err, mailstore.ErrInbox), errors.Is(err, mailstore.ErrUnderItself):
		return "CANNOT"
	case errors.Is(err, mailstore.ErrExpunged):
		return "EXPUNGEISSUED"
	case errors.Is(err, mailstore.ErrSpecialInUse):
		return "USEATTR"
	case errors.Is(err, mailstore.ErrReadOnly):
		return "CANNOT"
	case errors.Is(err, mailstore.ErrTooManyKeywords):
		return "LIMIT"
	}
	return "SERVERBUG"
}

// no answers a failed store operation; unexpected errors are logged with
// the user, since the client only sees a code.
func (ss *session) no(cmd *imapwire.Command, err error) bool {
	if errors.Is(err, mailstore.ErrMoving) {
		// Not a NO: nothing this session tries can work any more, and the
		// client should reconnect (to the new host) rather than retry.
		return ss.byeMoved()
	}
	code := noCode(err)
	if code == "SERVERBUG" {
		ss.s.log.Error("mailbox operation failed", "trace", ss.trace, "user", ss.user.Name, "command", cmd.Name, "err", err)
		ss.w.Tagged(cmd.Tag, "NO", code, cmd.Name+" failed on the server; try again later.")
		return false
	}
	if errors.Is(err, mailstore.ErrUIDValidity) {
		ss.w.Tagged("*", "BYE", "", "The folder was rebuilt; select it again.")
		ss.result = "uidvalidity changed"
		return true
	}
	ss.w.Tagged(cmd.Tag, "NO", code, capitalize(err.Error())+".")
	return false
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// folderArg reads a mailbox name argument in the session's encoding.
func (ss *session) folderArg(a imapwire.Arg) (string, bool) {
	raw, ok := a.AString()
	if !ok {
		return "", false
	}
	name, err := imapwire.MailboxFromWire(raw, ss.utf8)
	if err != nil {
		return "", false
	}
	return name, true
}

func (ss *session) wireName(name string) string { return imapwire.MailboxToWire(name, ss.utf8) }

// openStore is the first thing after login: the user's folders, with the
// special-use defaults created once.
func (ss *session) openStore() error {
	st, err := mailstore.Open(ss.root)
	if err != nil {
		return err
	}
	if err := st.EnsureDefaults(); err != nil {
		return err
	}
	ss.store = st
	return nil
}

// authCommand runs the commands of the authenticated and selected states;
// ok false: not one of them.
func (ss *session) authCommand(cmd *imapwire.Command) (done, ok bool) {
	switch cmd.Name {
	case "LIST":
		return ss.list(cmd, "LIST"), true
	case "LSUB":
		// Every folder counts as subscribed: Maildir++ keeps no
		// subscription list that pdeliveryd or pop3d would honour.
		return ss.list(cmd, "LSUB"), true
	case "SUBSCRIBE", "UNSUBSCRIBE":
		if len(cmd.Args) != 1 {
			return ss.bad1(cmd, cmd.Name+" takes a mailbox name."), true
		}
		ss.w.Tagged(cmd.Tag, "OK", "", cmd.Name+" completed (every folder is subscribed).")
		return false, true
	case "CREATE":
		return ss.create(cmd), true
	case "DELETE":
		return ss.deleteFolder(cmd), true
	case "RENAME":
		return ss.rename(cmd), true
	case "STATUS":
		return ss.status(cmd), true
	case "SELECT", "EXAMINE":
		return ss.selectCmd(cmd), true
	case "APPEND":
		return ss.appendCmd(cmd), true
	case "IDLE":
		return ss.idle(cmd), true
	case "GETQUOTAROOT":
		return ss.getQuotaRoot(cmd), true
	case "GETQUOTA":
		return ss.getQuota(cmd), true
	case "SETQUOTA":
		ss.w.Tagged(cmd.Tag, "NO", "NOPERM", "Quotas are set in the directory by the operator (correoctl), not over IMAP.")
		return false, true
	case "CHECK":
		if ss.state != stateSelected {
			return ss.bad1(cmd, "CHECK needs a selected folder."), true
		}
		return ss.refreshAndTag(cmd, true), true
	}
	if ss.state != stateSelected {
		switch cmd.Name {
		case "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE":
			return ss.bad1(cmd, cmd.Name+" needs a selected folder."), true
		}
		return false, false
	}
	switch cmd.Name {
	case "CLOSE", "UNSELECT":
		if len(cmd.Args) != 0 {
			return ss.bad1(cmd, cmd.Name+" takes no arguments."), true
		}
		// CLOSE expunges silently (no EXPUNGE responses); UNSELECT not.
		if cmd.Name == "CLOSE" && !ss.mb.ReadOnly() {
			if _, err := ss.mb.Expunge(nil); errors.Is(err, mailstore.ErrMoving) {
				return ss.byeMoved(), true
			} else if err != nil && !errors.Is(err, mailstore.ErrUIDValidity) {
				ss.s.log.Warn("expunge at CLOSE failed", "trace", ss.trace, "user", ss.user.Name, "err", err)
			}
		}
		ss.unselect()
		ss.w.Tagged(cmd.Tag, "OK", "", cmd.Name+" completed.")
		return false, true
	case "EXPUNGE":
		return ss.expunge(cmd), true
	case "FETCH":
		return ss.fetch(cmd), true
	case "STORE":
		return ss.storeCmd(cmd), true
	case "COPY", "MOVE":
		return ss.copyMove(cmd), true
	case "SEARCH":
		return ss.search(cmd), true
	}
	return false, false
}

func (ss *session) unselect() {
	ss.mb = nil
	ss.state = stateAuth
}

// refreshAndTag sends what changed in the selected folder (NOOP, CHECK)
// and the tagged OK.
func (ss *session) refreshAndTag(cmd *imapwire.Command, allowExpunge bool) bool {
	if ss.state == stateSelected {
		if done := ss.announce(allowExpunge); done {
			return true
		}
	}
	ss.w.Tagged(cmd.Tag, "OK", "", cmd.Name+" completed.")
	return false
}

// announce rescans the selected folder and sends EXPUNGE, EXISTS and
// FETCH FLAGS for what other sessions, pop3d and pdeliveryd changed.
func (ss *session) announce(allowExpunge bool) bool {
	up, err := ss.mb.Refresh(allowExpunge)
	if errors.Is(err, mailstore.ErrMoving) {
		return ss.byeMoved()
	}
	if errors.Is(err, mailstore.ErrUIDValidity) {
		ss.w.Tagged("*", "BYE", "", "The folder was rebuilt; select it again.")
		ss.result = "uidvalidity changed"
		return true
	}
	if err != nil {
		ss.s.log.Warn("refreshing the folder failed", "trace", ss.trace, "user", ss.user.Name, "err", err)
		return false
	}
	ss.sendExpunged(up.Expunged)
	if up.New > 0 || len(up.Expunged) > 0 {
		ss.w.Untagged(fmt.Sprintf("%d EXISTS", up.Exists))
	}
	if up.New > 0 && !ss.enabled["IMAP4REV2"] {
		ss.w.Untagged(fmt.Sprintf("%d RECENT", ss.mb.RecentCount()))
	}
	for _, uid := range up.Changed {
		if seq := ss.mb.Seq(uid); seq > 0 {
			m := &ss.mb.Messages()[seq-1]
			ss.w.Untagged(fmt.Sprintf("%d FETCH (%s)", seq, ss.flagsData(m)))
		}
	}
	return false
}

// flags is a message's flags as this session shows them: IMAP4rev1
// clients also get \Recent on the messages this session was the first to
// see (RFC 3501 2.3.2; IMAP4rev2 dropped it).
func (ss *session) flags(m *mailstore.Message) []string {
	f := ss.mb.Flags(m)
	if ss.mb.Recent(m.UID) && !ss.enabled["IMAP4REV2"] {
		f = append(f, `\Recent`)
	}
	return f
}

// flagsData is an unsolicited FETCH's data: the UID (which QRESYNC
// requires and every client uses), the flags, and the MODSEQ once
// CONDSTORE is on (RFC 7162 3.1.4).
func (ss *session) flagsData(m *mailstore.Message) string {
	d := fmt.Sprintf("UID %d FLAGS (%s)", m.UID, strings.Join(ss.flags(m), " "))
	if ss.enabled["CONDSTORE"] {
		d += fmt.Sprintf(" MODSEQ (%d)", m.ModSeq)
	}
	return d
}

// sendExpunged reports expunged messages: EXPUNGE by sequence number, or
// once QRESYNC is on one VANISHED with their UIDs (RFC 7162 3.2.10).
func (ss *session) sendExpunged(gone []mailstore.Expunged) {
	if len(gone) == 0 {
		return
	}
	if ss.enabled["QRESYNC"] {
		uids := make([]uint32, len(gone))
		for i, x := range gone {
			uids[i] = x.UID
		}
		ss.w.Untagged("VANISHED " + mailstore.SetOf(uids).String())
		return
	}
	for _, x := range gone {
		ss.w.Untagged(fmt.Sprintf("%d EXPUNGE", x.Seq))
	}
}

// match is LIST's pattern matching: '*' any run, '%' any run without the
// hierarchy delimiter.
func match(pattern, name string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*', '%':
			wild := pattern[0]
			rest := pattern[1:]
			for i := 0; i <= len(name); i++ {
				if match(rest, name[i:]) {
					return true
				}
				if i < len(name) && wild == '%' && name[i] == '/' {
					return false
				}
			}
			return false
		default:
			if len(name) == 0 || name[0] != pattern[0] {
				return false
			}
			pattern, name = pattern[1:], name[1:]
		}
	}
	return len(name) == 0
}

func (ss *session) list(cmd *imapwire.Command, verb string) bool {
	args := cmd.Args
	// LIST-EXTENDED selection options are not offered; RETURN (SPECIAL-USE
	// STATUS (...)) is (LIST-STATUS, RFC 5819; SPECIAL-USE, RFC 6154).
	if len(args) < 2 {
		return ss.bad1(cmd, verb+" takes a reference and a pattern.")
	}
	ref, ok1 := ss.folderArg(args[0])
	pat, ok2 := ss.folderArg(args[1])
	if !ok1 || !ok2 {
		return ss.bad1(cmd, verb+" takes a reference and a pattern.")
	}
	var statusItems []string
	if verb == "LIST" && len(args) > 2 {
		if len(args) != 4 || args[2].Kind != imapwire.KindAtom || !strings.EqualFold(args[2].Str, "RETURN") || args[3].Kind != imapwire.KindList {
			return ss.bad1(cmd, "LIST takes a reference, a pattern and RETURN (...).")
		}
		opts := args[3].List
		for i := 0; i < len(opts); i++ {
			switch strings.ToUpper(opts[i].Str) {
			case "SPECIAL-USE", "CHILDREN", "SUBSCRIBED":
			case "STATUS":
				if i+1 >= len(opts) || opts[i+1].Kind != imapwire.KindList {
					return ss.bad1(cmd, "RETURN STATUS takes a list of items.")
				}
				for _, it := range opts[i+1].List {
					statusItems = append(statusItems, strings.ToUpper(it.Str))
				}
				i++
			default:
				return ss.bad1(cmd, "Unknown LIST return option "+opts[i].Str+".")
			}
		}
	} else if len(args) != 2 {
		return ss.bad1(cmd, verb+" takes a reference and a pattern.")
	}
	if pat == "" {
		// RFC 9051: the hierarchy delimiter and the root.
		ss.w.Untagged(verb + ` (\Noselect) "/" ""`)
		ss.w.Tagged(cmd.Tag, "OK", "", verb+" completed.")
		return false
	}
	full := pat
	if ref != "" && !strings.HasPrefix(pat, "/") {
		full = strings.TrimSuffix(ref, "/") + "/" + pat
	}
	folders, err := ss.store.List()
	if err != nil {
		return ss.no(cmd, err)
	}
	for _, f := range folders {
		name := f.Name
		cmp := full
		// INBOX matches in any case.
		if strings.EqualFold(name, "INBOX") || strings.HasPrefix(strings.ToUpper(name), "INBOX/") {
			if strings.HasPrefix(strings.ToUpper(cmp), "INBOX") {
				cmp = "INBOX" + cmp[5:]
			}
		}
		if !match(cmp, name) {
			continue
		}
		ss.w.Untagged(fmt.Sprintf(`%s (%s) "/" %s`, verb, strings.Join(f.Attrs, " "), ss.wireName(name)))
		if statusItems != nil && !contains(f.Attrs, `\Noselect`) && !contains(f.Attrs, `\NonExistent`) {
			if st, err := ss.store.Status(name); err == nil {
				line, _ := statusLine(st, statusItems)
				ss.w.Untagged("STATUS " + ss.wireName(name) + " (" + line + ")")
			} else if errors.Is(err, mailstore.ErrMoving) {
				return ss.byeMoved()
			}
		}
	}
	ss.w.Tagged(cmd.Tag, "OK", "", verb+" completed.")
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func (ss *session) create(cmd *imapwire.Command) bool {
	if len(cmd.Args) != 1 && len(cmd.Args) != 2 {
		return ss.bad1(cmd, "CREATE takes a mailbox name and optional (USE (...)).")
	}
	name, ok := ss.folderArg(cmd.Args[0])
	if !ok {
		return ss.bad1(cmd, "CREATE takes a mailbox name.")
	}
	name = strings.TrimSuffix(name, "/")
	var use string
	if len(cmd.Args) == 2 {
		// CREATE-SPECIAL-USE (RFC 6154): (USE (\Sent)).
		l := cmd.Args[1]
		if l.Kind != imapwire.KindList || len(l.List) != 2 || !strings.EqualFold(l.List[0].Str, "USE") ||
			l.List[1].Kind != imapwire.KindList || len(l.List[1].List) != 1 {
			return ss.bad1(cmd, "CREATE's parameter must be (USE (\\Attribute)).")
		}
		use = l.List[1].List[0].Str
		switch strings.ToLower(use) {
		case `\sent`, `\drafts`, `\trash`, `\junk`:
		default:
			ss.w.Tagged(cmd.Tag, "NO", "USEATTR", "Special use "+use+" is not supported.")
			return false
		}
	}
	if err := ss.store.Create(name); err != nil {
		return ss.no(cmd, err)
	}
	if use != "" {
		if err := ss.store.SetSpecialUse(name, use); err != nil {
			ss.store.Delete(name)
			return ss.no(cmd, err)
		}
	}
	ss.w.Tagged(cmd.Tag, "OK", "", "CREATE completed.")
	return false
}

func (ss *session) deleteFolder(cmd *imapwire.Command) bool {
	if len(cmd.Args) != 1 {
		return ss.bad1(cmd, "DELETE takes a mailbox name.")
	}
	name, ok := ss.folderArg(cmd.Args[0])
	if !ok {
		return ss.bad1(cmd, "DELETE takes a mailbox name.")
	}
	if ss.mb != nil && strings.EqualFold(ss.mb.Name(), name) {
		ss.unselect()
	}
	if err := ss.store.Delete(name); err != nil {
		return ss.no(cmd, err)
	}
	ss.w.Tagged(cmd.Tag, "OK", "", "DELETE completed.")
	return false
}

func (ss *session) rename(cmd *imapwire.Command) bool {
	if len(cmd.Args) != 2 {
		return ss.bad1(cmd, "RENAME takes two mailbox names.")
	}
	from, ok1 := ss.folderArg(cmd.Args[0])
	to, ok2 := ss.folderArg(cmd.Args[1])
	if !ok1 || !ok2 {
		return ss.bad1(cmd, "RENAME takes two mailbox names.")
	}
	if err := ss.store.Rename(from, strings.TrimSuffix(to, "/")); err != nil {
		return ss.no(cmd, err)
	}
	ss.w.Tagged(cmd.Tag, "OK", "", "RENAME completed.")
	return false
}

// statusLine renders STATUS items; false when one is unknown.
func statusLine(st mailstore.Status, items []string) (string, bool) {
	var out []string
	for _, it := range items {
		switch it {
		case "MESSAGES":
			out = append(out, "MESSAGES "+strconv.Itoa(st.Messages))
		case "UIDNEXT":
			out = append(out, "UIDNEXT "+strconv.FormatUint(uint64(st.UIDNext), 10))
		case "UIDVALIDITY":
			out = append(out, "UIDVALIDITY "+strconv.FormatUint(uint64(st.UIDValidity), 10))
		case "UNSEEN":
			out = append(out, "UNSEEN "+strconv.Itoa(st.Unseen))
		case "DELETED":
			out = append(out, "DELETED "+strconv.Itoa(st.Deleted))
		case "SIZE":
			out = append(out, "SIZE "+strconv.FormatInt(st.Size, 10))
		case "DELETED-STORAGE":
			// RFC 9208 4.2: what EXPUNGE would free, in 1024-octet units.
			out = append(out, "DELETED-STORAGE "+strconv.FormatInt((st.DeletedSize+1023)/1024, 10))
		case "RECENT":
			// Messages no IMAP session has seen yet (still in new/).
			out = append(out, "RECENT "+strconv.Itoa(st.Recent))
		case "HIGHESTMODSEQ":
			out = append(out, "HIGHESTMODSEQ "+strconv.FormatUint(st.HighestModSeq, 10))
		default:
			return "", false
		}
	}
	return strings.Join(out, " "), true
}

func (ss *session) status(cmd *imapwire.Command) bool {
	if len(cmd.Args) != 2 || cmd.Args[1].Kind != imapwire.KindList || len(cmd.Args[1].List) == 0 {
		return ss.bad1(cmd, "STATUS takes a mailbox name and a list of items.")
	}
	name, ok := ss.folderArg(cmd.Args[0])
	if !ok {
		return ss.bad1(cmd, "STATUS takes a mailbox name.")
	}
	var items []string
	for _, it := range cmd.Args[1].List {
		if it.Kind != imapwire.KindAtom {
			return ss.bad1(cmd, "STATUS items are atoms.")
		}
		items = append(items, strings.ToUpper(it.Str))
	}
	if _, ok := statusLine(mailstore.Status{}, items); !ok {
		return ss.bad1(cmd, "Unknown STATUS item.")
	}
	st, err := ss.store.Status(name)
	if err != nil {
		return ss.no(cmd, err)
	}
	line, _ := statusLine(st, items)
	ss.w.Untagged("STATUS " + ss.wireName(name) + " (" + line + ")")
	ss.w.Tagged(cmd.Tag, "OK", "", "STATUS completed.")
	return false
}

func (ss *session) selectCmd(cmd *imapwire.Command) bool {
	if len(cmd.Args) != 1 && len(cmd.Args) != 2 {
		return ss.bad1(cmd, cmd.Name+" takes a mailbox name.")
	}
	var rs *resync
	if len(cmd.Args) == 2 {
		var bad string
		if rs, bad = ss.selectParams(cmd.Args[1]); bad != "" {
			return ss.bad1(cmd, bad)
		}
	}
	name, ok := ss.folderArg(cmd.Args[0])
	if !ok {
		return ss.bad1(cmd, cmd.Name+" takes a mailbox name.")
	}
	// A failed SELECT leaves no folder selected (RFC 9051 6.3.2).
	if ss.mb != nil {
		ss.unselect()
		ss.w.Tagged("*", "OK", "CLOSED", "Previous folder closed.")
	}
	var mb *mailstore.Mailbox
	var err error
	if cmd.Name == "EXAMINE" {
		mb, err = ss.store.Examine(name)
	} else {
		mb, err = ss.store.Select(name)
	}
	if err != nil {
		return ss.no(cmd, err)
	}
	flags := append(append([]string(nil), mailstore.SystemFlags...), mb.Keywords()...)
	perm := append([]string(nil), flags...)
	if mb.CanCreateKeywords() {
		perm = append(perm, `\*`)
	}
	if mb.ReadOnly() {
		perm = nil
	}
	ss.w.Untagged(fmt.Sprintf("%d EXISTS", mb.Len()))
	if !ss.enabled["IMAP4REV2"] {
		ss.w.Untagged(fmt.Sprintf("%d RECENT", mb.RecentCount()))
	}
	ss.w.Untagged("FLAGS (" + strings.Join(flags, " ") + ")")
	ss.w.Tagged("*", "OK", "PERMANENTFLAGS ("+strings.Join(perm, " ")+")", "Flags permitted.")
	ss.w.Tagged("*", "OK", fmt.Sprintf("UIDVALIDITY %d", mb.UIDValidity()), "UIDs valid.")
	ss.w.Tagged("*", "OK", fmt.Sprintf("UIDNEXT %d", mb.UIDNext()), "Predicted next UID.")
	ss.w.Tagged("*", "OK", fmt.Sprintf("HIGHESTMODSEQ %d", mb.HighestModSeq()), "Highest.")
	ss.w.Untagged(`LIST () "/" ` + ss.wireName(mb.Name()))
	ss.mb = mb
	ss.state = stateSelected
	if rs != nil && rs.validity == mb.UIDValidity() {
		if err := ss.resync(rs); err != nil {
			ss.s.log.Warn("QRESYNC of a selected folder failed", "trace", ss.trace, "user", ss.user.Name, "err", err)
		}
	}
	code := "READ-WRITE"
	if mb.ReadOnly() {
		code = "READ-ONLY"
	}
	ss.w.Tagged(cmd.Tag, "OK", code, cmd.Name+" completed.")
	return false
}

// appendCmd is APPEND mailbox [(flags)] [date-time] literal.
func (ss *session) appendCmd(cmd *imapwire.Command) bool {
	args := cmd.Args
	if len(args) < 2 || len(args) > 4 {
		return ss.bad1(cmd, "APPEND takes a mailbox, optional flags and date, and a message literal.")
	}
	name, ok := ss.folderArg(args[0])
	if !ok {
		return ss.bad1(cmd, "APPEND takes a mailbox name.")
	}
	msg := args[len(args)-1]
	if msg.Kind != imapwire.KindLiteral {
		return ss.bad1(cmd, "APPEND's message must be a literal.")
	}
	var flags []string
	var date time.Time
	for _, a := range args[1 : len(args)-1] {
		switch {
		case a.Kind == imapwire.KindList && flags == nil:
			for _, f := range a.List {
				if f.Kind != imapwire.KindAtom || strings.EqualFold(f.Str, `\Recent`) {
					return ss.bad1(cmd, "APPEND's flags are flag atoms.")
				}
				flags = append(flags, f.Str)
			}
			if flags == nil {
				flags = []string{}
			}
		case a.Kind == imapwire.KindQuoted && date.IsZero():
			d, err := imapwire.ParseDateTime(a.Str)
			if err != nil {
				return ss.bad1(cmd, "APPEND's date-time is malformed.")
			}
			date = d
		default:
			return ss.bad1(cmd, "APPEND takes a mailbox, optional flags and date, and a message literal.")
		}
	}
	if len(msg.Str) == 0 {
		ss.w.Tagged(cmd.Tag, "NO", "", "An empty message is not stored.")
		return false
	}
	if over, err := ss.overQuota(int64(len(msg.Str))); err != nil {
		return ss.no(cmd, err)
	} else if over {
		return ss.refuseOverQuota(cmd)
	}
	uid, validity, err := ss.store.Append(name, flags, date, strings.NewReader(msg.Str))
	if err != nil {
		if errors.Is(err, mailstore.ErrNoFolder) {
			ss.w.Tagged(cmd.Tag, "NO", "TRYCREATE", "No such folder; create it first.")
			return false
		}
		return ss.no(cmd, err)
	}
	if ss.state == stateSelected {
		if done := ss.announce(true); done {
			return true
		}
	}
	ss.w.Tagged(cmd.Tag, "OK", fmt.Sprintf("APPENDUID %d %d", validity, uid), "APPEND completed.")
	return false
}

// uids resolves a sequence set (or UID set with UID) to UIDs present in
// the view, in ascending order. bad is the BAD text for a sequence number
// beyond the folder (RFC 9051 6.4).
func (ss *session) uids(cmd *imapwire.Command, a imapwire.Arg) (uids []uint32, bad string) {
	if a.Kind != imapwire.KindAtom {
		return nil, "A sequence set is expected."
	}
	set, err := imapwire.ParseSeqSet(a.Str)
	if err != nil {
		return nil, capitalize(err.Error()) + "."
	}
	byUID := cmd.UID
	if set.Saved {
		// "$" is kept as UIDs, so it names the same messages after
		// expunges whatever the command (RFC 5182).
		set, byUID = ss.saved, true
	}
	msgs := ss.mb.Messages()
	if byUID {
		max := uint32(0)
		if len(msgs) > 0 {
			max = msgs[len(msgs)-1].UID
		}
		for _, r := range set.Ranges(max) {
			// Only UIDs present: walk the view, not the numbers (a range
			// may span four billion).
			i := sort.Search(len(msgs), func(i int) bool { return msgs[i].UID >= r.Start })
			for ; i < len(msgs) && msgs[i].UID <= r.Stop; i++ {
				uids = append(uids, msgs[i].UID)
			}
		}
		return uids, ""
	}
	if err := set.CheckSeq(uint32(len(msgs))); err != nil {
		return nil, capitalize(err.Error()) + "."
	}
	for _, r := range set.Ranges(uint32(len(msgs))) {
		for n := r.Start; n <= r.Stop && int(n) <= len(msgs); n++ {
			uids = append(uids, msgs[n-1].UID)
		}
	}
	return uids, ""
}

func (ss *session) expunge(cmd *imapwire.Command) bool {
	var uids []uint32
	if cmd.UID {
		if len(cmd.Args) != 1 {
			return ss.bad1(cmd, "UID EXPUNGE takes a UID set.")
		}
		var bad string
		if uids, bad = ss.uids(cmd, cmd.Args[0]); bad != "" {
			return ss.bad1(cmd, bad)
		}
		if len(uids) == 0 {
			ss.w.Tagged(cmd.Tag, "OK", "", "UID EXPUNGE completed.")
			return false
		}
	} else if len(cmd.Args) != 0 {
		return ss.bad1(cmd, "EXPUNGE takes no arguments.")
	}
	if ss.mb.ReadOnly() {
		ss.w.Tagged(cmd.Tag, "NO", "READ-ONLY", "The folder was opened with EXAMINE.")
		return false
	}
	gone, err := ss.mb.Expunge(uids)
	if err != nil {
		return ss.no(cmd, err)
	}
	ss.sendExpunged(gone)
	ss.w.Tagged(cmd.Tag, "OK", "", cmd.Name+" completed.")
	return false
}

// storeCmd is STORE set [(UNCHANGEDSINCE n)] (+|-)FLAGS[.SILENT] flags.
func (ss *session) storeCmd(cmd *imapwire.Command) bool {
	args := cmd.Args
	if len(args) < 3 {
		return ss.bad1(cmd, "STORE takes a set, an item and flags.")
	}
	var unchangedSince uint64
	hasUnchanged := false
	if args[1].Kind == imapwire.KindList {
		l := args[1].List
		if len(l) != 2 || !strings.EqualFold(l[0].Str, "UNCHANGEDSINCE") {
			return ss.bad1(cmd, "STORE's modifier must be (UNCHANGEDSINCE n).")
		}
		n, err := imapwire.ParseModSeqZero(l[1].Str)
		if err != nil {
			return ss.bad1(cmd, "UNCHANGEDSINCE takes a mod-sequence.")
		}
		unchangedSince, hasUnchanged = n, true
		args = append([]imapwire.Arg{args[0]}, args[2:]...)
	}
	if len(args) != 3 || args[1].Kind != imapwire.KindAtom {
		return ss.bad1(cmd, "STORE takes a set, an item and flags.")
	}
	item := strings.ToUpper(args[1].Str)
	silent := strings.HasSuffix(item, ".SILENT")
	item = strings.TrimSuffix(item, ".SILENT")
	var op mailstore.StoreOp
	switch item {
	case "FLAGS":
		op = mailstore.OpReplace
	case "+FLAGS":
		op = mailstore.OpAdd
	case "-FLAGS":
		op = mailstore.OpRemove
	default:
		return ss.bad1(cmd, "STORE's item is FLAGS, +FLAGS or -FLAGS, optionally .SILENT.")
	}
	var flags []string
	fl := []imapwire.Arg{args[2]}
	if args[2].Kind == imapwire.KindList {
		fl = args[2].List
	}
	for _, f := range fl {
		if f.Kind != imapwire.KindAtom || strings.EqualFold(f.Str, `\Recent`) {
			return ss.bad1(cmd, "STORE's flags are flag atoms.")
		}
		flags = append(flags, f.Str)
	}
	uids, bad := ss.uids(cmd, args[0])
	if bad != "" {
		return ss.bad1(cmd, bad)
	}
	if ss.mb.ReadOnly() {
		ss.w.Tagged(cmd.Tag, "NO", "READ-ONLY", "The folder was opened with EXAMINE.")
		return false
	}
	var failed []uint32
	if hasUnchanged && unchangedSince == 0 {
		// MODSEQs start at 1: nothing is unchanged since 0 (RFC 7162).
		failed, uids = uids, nil
	}
	var res mailstore.StoreResult
	if len(uids) > 0 {
		var err error
		if res, err = ss.mb.Store(uids, op, flags, unchangedSince); err != nil {
			return ss.no(cmd, err)
		}
	}
	failed = append(failed, res.Modified...)
	for _, u := range res.Updated {
		// .SILENT still reports flags another session changed meanwhile;
		// here it suppresses the echo of this session's own change.
		if silent && !hasUnchanged {
			continue
		}
		seq := ss.mb.Seq(u.UID)
		if seq == 0 {
			continue
		}
		parts := []string{}
		if cmd.UID || ss.enabled["QRESYNC"] {
			parts = append(parts, fmt.Sprintf("UID %d", u.UID))
		}
		if !silent {
			f := u.Flags
			if ss.mb.Recent(u.UID) && !ss.enabled["IMAP4REV2"] {
				f = append(f, `\Recent`)
			}
			parts = append(parts, "FLAGS ("+strings.Join(f, " ")+")")
		}
		if hasUnchanged || ss.enabled["CONDSTORE"] {
			parts = append(parts, fmt.Sprintf("MODSEQ (%d)", u.ModSeq))
		}
		ss.w.Untagged(fmt.Sprintf("%d FETCH (%s)", seq, strings.Join(parts, " ")))
	}
	if len(failed) > 0 {
		set := mailstore.SetOf(failed)
		ss.w.Tagged(cmd.Tag, "OK", "MODIFIED "+set.String(), "Conditional STORE failed for some messages.")
		return false
	}
	ss.w.Tagged(cmd.Tag, "OK", "", "STORE completed.")
	return false
}

func (ss *session) copyMove(cmd *imapwire.Command) bool {
	if len(cmd.Args) != 2 {
		return ss.bad1(cmd, cmd.Name+" takes a set and a mailbox name.")
	}
	uids, bad := ss.uids(cmd, cmd.Args[0])
	if bad != "" {
		return ss.bad1(cmd, bad)
	}
	dest, ok := ss.folderArg(cmd.Args[1])
	if !ok {
		return ss.bad1(cmd, cmd.Name+" takes a mailbox name.")
	}
	if len(uids) == 0 {
		ss.w.Tagged(cmd.Tag, "OK", "", cmd.Name+" completed: nothing to do.")
		return false
	}
	var cu mailstore.CopyUID
	var gone []mailstore.Expunged
	var err error
	if cmd.Name == "MOVE" {
		if ss.mb.ReadOnly() {
			ss.w.Tagged(cmd.Tag, "NO", "READ-ONLY", "The folder was opened with EXAMINE.")
			return false
		}
		cu, gone, err = ss.mb.Move(uids, dest)
	} else {
		over, qerr := ss.overQuota(copySize(ss.mb, uids))
		if qerr != nil {
			return ss.no(cmd, qerr)
		}
		if over {
			return ss.refuseOverQuota(cmd)
		}
		cu, err = ss.mb.Copy(uids, dest)
	}
	if err != nil {
		if errors.Is(err, mailstore.ErrNoFolder) {
			ss.w.Tagged(cmd.Tag, "NO", "TRYCREATE", "No such folder; create it first.")
			return false
		}
		return ss.no(cmd, err)
	}
	code := fmt.Sprintf("COPYUID %d %s %s", cu.UIDValidity, mailstore.SetOf(cu.Src).String(), mailstore.SetOf(cu.Dst).String())
	if cmd.Name == "MOVE" {
		// RFC 6851: COPYUID in an untagged OK before the expunges.
		ss.w.Tagged("*", "OK", code, "Moved.")
		ss.sendExpunged(gone)
		ss.w.Tagged(cmd.Tag, "OK", "", "MOVE completed.")
		return false
	}
	ss.w.Tagged(cmd.Tag, "OK", code, "COPY completed.")
	return false
}
