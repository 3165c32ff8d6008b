package mailstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"correo/src/dirsync"
)

// ErrReadOnly: the folder was opened with Examine.
var ErrReadOnly = errors.New("folder is open read-only (EXAMINE); SELECT it to change it")

// Message is one message as a session sees it.
type Message struct {
	UID     uint32
	ModSeq  uint64
	Size    int64  // RFC822.SIZE: octets with CRLF line ends
	Date    int64  // INTERNALDATE, Unix seconds
	Letters string // Maildir flag letters; Mailbox.Flags turns them into IMAP flags
	Key     string // the Maildir key (file name up to ':'): pop3d's UIDL hashes it
	sub     string // "new" or "cur"
	name    string // file name in sub
}

// InternalDate is the message's IMAP INTERNALDATE.
func (m *Message) InternalDate() time.Time { return time.Unix(m.Date, 0) }

func fromEntry(e *entry) Message {
	return Message{UID: e.uid, ModSeq: e.modseq, Size: e.size, Date: e.date, Letters: infoFlags(e.info),
		Key: e.key, sub: e.sub(), name: e.name()}
}

// Mailbox is a session's view of a selected folder: a fixed list of
// messages with sequence numbers that changes only when the session asks
// (Refresh, or its own Store/Expunge/Move), as IMAP requires. It belongs
// to one session; it holds no lock and no open file between calls.
type Mailbox struct {
	s        *Store
	name     string
	readOnly bool
	validity uint32
	uidNext  uint32
	modseq   uint64
	msgs     []Message
	kw       *keywords
	// recent holds the UIDs this view moved out of new/: \Recent for
	// this session only (IMAP4rev1; IMAP4rev2 dropped it).
	recent map[uint32]bool
}

// Select opens a folder read-write: the scan adopts new mail and moves it
// from new/ to cur/.
func (s *Store) Select(name string) (*Mailbox, error) { return s.open(name, false) }

// Examine opens a folder read-only: nothing on disk is changed except the
// UID list (new messages still need UIDs).
func (s *Store) Examine(name string) (*Mailbox, error) { return s.open(name, true) }

func (s *Store) open(name string, readOnly bool) (*Mailbox, error) {
	// SELECT moves new/ to cur/, so it is a change; EXAMINE only looks.
	ops, err := s.beginMode(readOnly, name)
	if err != nil {
		return nil, err
	}
	o := ops[0]
	if err := o.scan(!readOnly); err != nil {
		finish(ops, false)
		return nil, err
	}
	if err := o.frozenChange(); err != nil {
		finish(ops, false)
		return nil, err
	}
	mb := &Mailbox{s: s, name: o.name, readOnly: readOnly, recent: map[uint32]bool{}}
	mb.noteMoved(o)
	mb.take(o)
	mb.msgs = make([]Message, len(o.l.msgs))
	for i := range o.l.msgs {
		mb.msgs[i] = fromEntry(&o.l.msgs[i])
	}
	if err := finish(ops, true); err != nil {
		return nil, err
	}
	return mb, nil
}

// take copies the folder-wide values of the list into the view.
func (mb *Mailbox) take(o *op) {
	mb.validity, mb.uidNext, mb.modseq = o.l.validity, o.l.uidNext, o.l.modseq
	mb.kw = &keywords{names: append([]string(nil), o.kw.names...)}
}

func (mb *Mailbox) noteMoved(o *op) {
	for _, u := range o.moved {
		mb.recent[u] = true
	}
	o.moved = nil
}

// Recent says whether this view was the first to see the message (it
// moved it out of new/): IMAP4rev1's \Recent.
func (mb *Mailbox) Recent(uid uint32) bool { return mb.recent[uid] }

// RecentCount is the number of messages in the view that are Recent.
func (mb *Mailbox) RecentCount() int {
	n := 0
	for _, m := range mb.msgs {
		if mb.recent[m.UID] {
			n++
		}
	}
	return n
}

// Name is the folder's canonical name.
func (mb *Mailbox) Name() string { return mb.name }

// ReadOnly says whether the folder was opened with Examine.
func (mb *Mailbox) ReadOnly() bool { return mb.readOnly }

// UIDValidity, UIDNext and HighestModSeq are as of the last look.
func (mb *Mailbox) UIDValidity() uint32 { return mb.validity }

func (mb *Mailbox) UIDNext() uint32 { return mb.uidNext }

func (mb *Mailbox) HighestModSeq() uint64 { return mb.modseq }

// Len is the number of messages (EXISTS).
func (mb *Mailbox) Len() int { return len(mb.msgs) }

// Messages returns the view, message n at index n-1. The slice is the
// Mailbox's own: read it, do not keep it across calls that change the
// view.
func (mb *Mailbox) Messages() []Message { return mb.msgs }

// Seq returns the sequence number of uid, 0 when it is not in the view.
func (mb *Mailbox) Seq(uid uint32) int {
	i := sort.Search(len(mb.msgs), func(i int) bool { return mb.msgs[i].UID >= uid })
	if i < len(mb.msgs) && mb.msgs[i].UID == uid {
		return i + 1
	}
	return 0
}

// UIDAt returns the UID of sequence number seq, 0 when out of range.
func (mb *Mailbox) UIDAt(seq int) uint32 {
	if seq < 1 || seq > len(mb.msgs) {
		return 0
	}
	return mb.msgs[seq-1].UID
}

// Flags are a message's IMAP flags (FETCH FLAGS).
func (mb *Mailbox) Flags(m *Message) []string { return flagNames(m.Letters, mb.kw) }

// Keywords are the keywords defined in the folder, for the FLAGS response.
func (mb *Mailbox) Keywords() []string { return append([]string(nil), mb.kw.names...) }

// CanCreateKeywords says whether PERMANENTFLAGS may offer \*.
func (mb *Mailbox) CanCreateKeywords() bool { return !mb.readOnly && len(mb.kw.names) < maxKeywords }

// Expunged is one EXPUNGE to announce: Seq is the number to send at that
// point, earlier ones in the list already applied (EXPUNGE 3, 3, 5 for
// messages 3, 4 and 7).
type Expunged struct {
	Seq int
	UID uint32
}

// Update is what Refresh found since the session last looked.
type Update struct {
	Expunged []Expunged // to announce in this order (or as VANISHED with QRESYNC)
	New      int        // messages added at the end
	Exists   int        // the message count after the update
	Changed  []uint32   // UIDs whose flags or MODSEQ changed (untagged FETCH)
}

// Refresh rescans the folder and applies what changed to the view: for
// NOOP, IDLE, and the end of most commands. With allowExpunge false
// (during FETCH, STORE and SEARCH by sequence number, when RFC 9051
// forbids EXPUNGE responses) vanished messages stay in the view and are
// announced by a later Refresh. ErrUIDValidity means the list was rebuilt:
// the server must end the session (BYE) so the client resyncs.
func (mb *Mailbox) Refresh(allowExpunge bool) (Update, error) {
	// A read: on a frozen folder it works as long as nothing changed, so
	// an IDLE or NOOP racing with the move's start gets a true answer or
	// ErrMoving, never UIDs that exist only in memory.
	ops, err := mb.s.beginRead(mb.name)
	if err != nil {
		return Update{}, err
	}
	o := ops[0]
	if err := o.scan(!mb.readOnly); err != nil {
		finish(ops, false)
		return Update{}, err
	}
	if err := o.frozenChange(); err != nil {
		finish(ops, false)
		return Update{}, err
	}
	mb.noteMoved(o)
	if o.l.validity != mb.validity {
		finish(ops, true)
		return Update{}, fmt.Errorf("folder %q: %w", mb.name, ErrUIDValidity)
	}
	up := mb.merge(o, allowExpunge)
	return up, finish(ops, true)
}

// merge walks the view and the list (both by UID) and makes the view
// match, reporting the differences.
func (mb *Mailbox) merge(o *op, allowExpunge bool) Update {
	var up Update
	state := o.l.msgs
	out := make([]Message, 0, len(state))
	i, j := 0, 0
	for i < len(mb.msgs) || j < len(state) {
		switch {
		case j >= len(state) || i < len(mb.msgs) && mb.msgs[i].UID < state[j].uid:
			if allowExpunge {
				up.Expunged = append(up.Expunged, Expunged{Seq: len(out) + 1, UID: mb.msgs[i].UID})
			} else {
				out = append(out, mb.msgs[i])
			}
			i++
		case i >= len(mb.msgs) || state[j].uid < mb.msgs[i].UID:
			out = append(out, fromEntry(&state[j]))
			up.New++
			j++
		default:
			m := fromEntry(&state[j])
			if m.ModSeq != mb.msgs[i].ModSeq || m.Letters != mb.msgs[i].Letters {
				up.Changed = append(up.Changed, m.UID)
			}
			out = append(out, m)
			i++
			j++
		}
	}
	mb.msgs = out
	mb.take(o)
	up.Exists = len(out)
	return up
}

// FlagUpdate is a message's state after STORE, for the untagged FETCH.
type FlagUpdate struct {
	UID     uint32
	Flags   []string
	ModSeq  uint64
	Changed bool // false when the flags already were so (no new MODSEQ)
}

// StoreResult is what Store did.
type StoreResult struct {
	Updated  []FlagUpdate // by UID; messages expunged meanwhile are left out
	Modified []uint32     // failed UNCHANGEDSINCE: the [MODIFIED] set
}

// Store changes flags (STORE / UID STORE), each message by renaming its
// file in cur/, then fsyncs cur/ once. With unchangedSince > 0
// (CONDSTORE), messages whose MODSEQ is higher are left alone and listed
// in Modified. A client's UNCHANGEDSINCE 0 fails every message (MODSEQs
// start at 1): the server answers that without calling Store. A new
// keyword takes a letter (ErrTooManyKeywords past 26).
func (mb *Mailbox) Store(uids []uint32, op StoreOp, flags []string, unchangedSince uint64) (StoreResult, error) {
	if mb.readOnly {
		return StoreResult{}, ErrReadOnly
	}
	ops, err := mb.s.begin(mb.name)
	if err != nil {
		return StoreResult{}, err
	}
	o := ops[0]
	fail := func(err error) (StoreResult, error) {
		finish(ops, false)
		return StoreResult{}, fmt.Errorf("storing flags in %q: %w", mb.name, err)
	}
	if o.l.validity != mb.validity {
		return fail(ErrUIDValidity)
	}
	letters, added, err := lettersFor(flags, o.kw, op != OpRemove)
	if err != nil {
		return fail(err)
	}
	if added {
		// The table is durable before any file name uses a new letter.
		if err := o.kw.write(o.dir); err != nil {
			return fail(err)
		}
	}
	targets := SetOf(uids).UIDs()
	var res StoreResult
	var changed, missing []uint32
	unchanged := map[uint32]bool{}
	try := func(list []uint32, last bool) error {
		for _, uid := range list {
			i := o.l.find(uid)
			if i < 0 {
				continue // expunged meanwhile: RFC 9051 lets it go silently
			}
			e := &o.l.msgs[i]
			if unchangedSince > 0 && e.modseq > unchangedSince {
				res.Modified = append(res.Modified, uid)
				continue
			}
			old := infoFlags(e.info)
			nl := applyOp(old, letters, op)
			if nl == old {
				unchanged[uid] = true
				continue
			}
			err := o.setInfo(e, nl)
			if errors.Is(err, fs.ErrNotExist) {
				if !last {
					missing = append(missing, uid)
				}
				continue
			}
			if err != nil {
				return err
			}
			changed = append(changed, uid)
		}
		return nil
	}
	if err := try(targets, false); err != nil {
		return fail(err)
	}
	if len(missing) > 0 {
		// Renamed or removed behind the list's back: look again, once.
		if err := o.scan(true); err != nil {
			return fail(err)
		}
		mb.noteMoved(o)
		if err := try(missing, true); err != nil {
			return fail(err)
		}
	}
	if len(changed) > 0 {
		if err := dirsync.Sync(filepath.Join(o.dir, "cur")); err != nil {
			return fail(err)
		}
		m := o.mod()
		for _, uid := range changed {
			if i := o.l.find(uid); i >= 0 {
				o.l.msgs[i].modseq = m
			}
		}
	}
	sort.Slice(res.Modified, func(i, j int) bool { return res.Modified[i] < res.Modified[j] })
	for _, uid := range targets {
		i := o.l.find(uid)
		if i < 0 || !unchanged[uid] && !contains(changed, uid) {
			continue
		}
		e := &o.l.msgs[i]
		m := fromEntry(e)
		res.Updated = append(res.Updated, FlagUpdate{UID: uid, Flags: flagNames(m.Letters, o.kw), ModSeq: e.modseq, Changed: !unchanged[uid]})
		if s := mb.Seq(uid); s > 0 {
			mb.msgs[s-1] = m
		}
	}
	mb.kw = &keywords{names: append([]string(nil), o.kw.names...)}
	if err := finish(ops, true); err != nil {
		return StoreResult{}, fmt.Errorf("storing flags in %q: %w", mb.name, err)
	}
	return res, nil
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Expunge removes the messages flagged \Deleted (EXPUNGE, CLOSE), or only
// those of them in uids (UID EXPUNGE) when uids is not nil. Files are
// unlinked and cur/ fsynced before the list records the expunge with a new
// MODSEQ (for VANISHED). The result is in announcement order.
func (mb *Mailbox) Expunge(uids []uint32) ([]Expunged, error) {
	if mb.readOnly {
		return nil, ErrReadOnly
	}
	ops, err := mb.s.begin(mb.name)
	if err != nil {
		return nil, err
	}
	o := ops[0]
	fail := func(err error) ([]Expunged, error) {
		finish(ops, false)
		return nil, fmt.Errorf("expunging in %q: %w", mb.name, err)
	}
	if o.l.validity != mb.validity {
		return fail(ErrUIDValidity)
	}
	// Flags on disk decide, not the view: another session may have
	// cleared \Deleted a moment ago.
	if err := o.scan(true); err != nil {
		return fail(err)
	}
	mb.noteMoved(o)
	var only UIDSet
	if uids != nil {
		only = SetOf(uids)
	}
	var gone []uint32
	var errs []error
	for i := range o.l.msgs {
		e := &o.l.msgs[i]
		if strings.IndexByte(infoFlags(e.info), 'T') < 0 || uids != nil && !only.Contains(e.uid) {
			continue
		}
		if err := os.Remove(o.path(e)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		gone = append(gone, e.uid)
	}
	if len(gone) > 0 {
		if err := syncDirs(o.dir); err != nil {
			return fail(err)
		}
		o.remove(gone)
	}
	ex := mb.dropFromView(gone)
	mb.modseq = o.l.modseq
	if err := finish(ops, true); err != nil {
		return nil, fmt.Errorf("expunging in %q: %w", mb.name, err)
	}
	if len(errs) > 0 {
		return ex, fmt.Errorf("expunging in %q: %d messages could not be removed and stay: %w", mb.name, len(errs), errors.Join(errs...))
	}
	return ex, nil
}

// dropFromView removes uids (ascending) from the view and returns the
// announcements.
func (mb *Mailbox) dropFromView(uids []uint32) []Expunged {
	if len(uids) == 0 {
		return nil
	}
	set := SetOf(uids)
	var ex []Expunged
	out := mb.msgs[:0]
	for _, m := range mb.msgs {
		if set.Contains(m.UID) {
			ex = append(ex, Expunged{Seq: len(out) + 1, UID: m.UID})
			continue
		}
		out = append(out, m)
	}
	for i := len(out); i < len(mb.msgs); i++ {
		mb.msgs[i] = Message{}
	}
	mb.msgs = out
	return ex
}

func syncDirs(dir string) error {
	for _, sub := range []string{"cur", "new"} {
		if err := dirsync.Sync(filepath.Join(dir, sub)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// CopyUID is the UIDPLUS answer to COPY and MOVE: Src[i] became Dst[i].
type CopyUID struct {
	UIDValidity uint32 // the destination's
	Src, Dst    []uint32
}

// Copy copies messages to another folder (or the same one) by hard link,
// so a copy costs no data; where links are impossible the file is copied
// and fsynced. Flags and keywords go along (keywords get the destination's
// letters) and INTERNALDATE is kept. A missing destination is ErrNoFolder
// ([TRYCREATE]).
func (mb *Mailbox) Copy(uids []uint32, dest string) (CopyUID, error) {
	cu, _, err := mb.transfer(uids, dest, false)
	return cu, err
}

// Move moves messages (RFC 6851): copy, then expunge from this folder,
// with both folders locked throughout so no other session sees a message
// in both or in neither for longer than the two unlinks take. The result
// holds COPYUID data and the EXPUNGE announcements for this view.
func (mb *Mailbox) Move(uids []uint32, dest string) (CopyUID, []Expunged, error) {
	if mb.readOnly {
		return CopyUID{}, nil, ErrReadOnly
	}
	return mb.transfer(uids, dest, true)
}

func (mb *Mailbox) transfer(uids []uint32, dest string, move bool) (CopyUID, []Expunged, error) {
	what := "copying"
	if move {
		what = "moving"
	}
	ops, err := mb.s.begin(mb.name, dest)
	if err != nil {
		return CopyUID{}, nil, fmt.Errorf("%s from %q to %q: %w", what, mb.name, dest, err)
	}
	src, dst := ops[0], ops[1]
	fail := func(err error) (CopyUID, []Expunged, error) {
		finish(ops, false)
		return CopyUID{}, nil, fmt.Errorf("%s from %q to %q: %w", what, mb.name, dst.name, err)
	}
	if src.l.validity != mb.validity {
		return fail(ErrUIDValidity)
	}
	targets := SetOf(uids).UIDs()
	// Map every keyword first: running out of letters half way would
	// leave a partial copy.
	kwAdded := false
	remap := func(letters string) (string, error) {
		names := flagNames(letters, src.kw)
		var keep []byte
		for i := 0; i < len(letters); i++ {
			c := letters[i]
			if _, ours := flagOf[c]; !ours && c >= 'A' && c <= 'Z' {
				keep = append(keep, c)
			}
		}
		l, added, err := lettersFor(names, dst.kw, true)
		kwAdded = kwAdded || added
		return normLetters(l + string(keep)), err
	}
	type job struct {
		e       entry
		letters string
	}
	var jobs []job
	var missing bool
	for _, uid := range targets {
		i := src.l.find(uid)
		if i < 0 {
			continue
		}
		l, err := remap(infoFlags(src.l.msgs[i].info))
		if err != nil {
			return fail(err)
		}
		jobs = append(jobs, job{src.l.msgs[i], l})
	}
	if kwAdded && dst != src {
		if err := dst.kw.write(dst.dir); err != nil {
			return fail(err)
		}
	} else if kwAdded {
		if err := src.kw.write(src.dir); err != nil {
			return fail(err)
		}
	}
	now := time.Now()
	var res CopyUID
	var placed []entry
	var moved []entry
	for k := 0; k < len(jobs); k++ {
		jb := &jobs[k]
		e, err := mb.place(src, dst, &jb.e, jb.letters, move, now)
		if errors.Is(err, fs.ErrNotExist) && !missing {
			// The source file was renamed or removed behind the list:
			// rescan once and redo the remaining jobs from fresh entries.
			missing = true
			if err := src.scan(!mb.readOnly); err != nil {
				return fail(err)
			}
			mb.noteMoved(src)
			rest := jobs[k:]
			jobs = jobs[:k]
			for _, r := range rest {
				if i := src.l.find(r.e.uid); i >= 0 {
					jobs = append(jobs, job{src.l.msgs[i], r.letters})
				}
			}
			k--
			continue
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue // expunged meanwhile
		}
		if err != nil {
			// What was linked so far is durable once dst is synced and
			// a scan will adopt it; report the failure.
			syncDirs(dst.dir)
			return fail(err)
		}
		placed = append(placed, e)
		moved = append(moved, jb.e)
		res.Src = append(res.Src, jb.e.uid)
	}
	if len(placed) > 0 {
		if err := dirsync.Sync(filepath.Join(dst.dir, "cur")); err != nil {
			return fail(err)
		}
	}
	for _, e := range placed {
		uid, err := dst.add(e)
		if err != nil {
			return fail(err)
		}
		res.Dst = append(res.Dst, uid)
	}
	res.UIDValidity = dst.l.validity
	var ex []Expunged
	if move && len(moved) > 0 {
		var gone []uint32
		for i := range moved {
			if err := os.Remove(src.path(&moved[i])); err != nil && !errors.Is(err, fs.ErrNotExist) {
				continue // stays in both: better than in neither
			}
			gone = append(gone, moved[i].uid)
		}
		if err := syncDirs(src.dir); err != nil {
			return fail(err)
		}
		src.remove(gone)
		ex = mb.dropFromView(gone)
	}
	if dst == src {
		// New messages in the selected folder reach the view through the
		// next Refresh, like anyone else's.
		mb.modseq = src.l.modseq
	} else if move {
		mb.modseq = src.l.modseq
	}
	if err := finish(ops, true); err != nil {
		return CopyUID{}, nil, fmt.Errorf("%s from %q to %q: %w", what, mb.name, dst.name, err)
	}
	return res, ex, nil
}

// place puts one message into dst/cur by hard link (or by copying the
// bytes) and returns its new entry, UID not yet assigned. A move keeps
// the key when the destination does not know it, so a message moved out
// of INBOX and back keeps its POP3 UIDL.
func (mb *Mailbox) place(src, dst *op, e *entry, letters string, move bool, now time.Time) (entry, error) {
	from := src.path(e)
	for attempt := 0; attempt < 3; attempt++ {
		key := e.key
		if _, known := dst.byKey[key]; !move || known || attempt > 0 {
			base, err := uniqueBase(now)
			if err != nil {
				return entry{}, err
			}
			key = base + sizeFields(e.key)
		}
		ne := entry{size: e.size, date: e.date, info: ":2," + letters, key: key}
		to := filepath.Join(dst.dir, "cur", ne.name())
		err := os.Link(from, to)
		if err != nil && linkImpossible(err) {
			err = copyFile(from, to, e.date)
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return ne, err
	}
	return entry{}, fmt.Errorf("no unique name for a copy of %s", from)
}

func linkImpossible(err error) bool {
	return errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) ||
		errors.Is(err, syscall.EMLINK) || errors.Is(err, syscall.ENOTSUP)
}

// copyFile copies from → to through a tmp/ file beside to's cur/, durable
// before it appears, with the INTERNALDATE as mtime.
func copyFile(from, to string, date int64) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := filepath.Join(filepath.Dir(filepath.Dir(to)), "tmp", filepath.Base(to))
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		t := time.Unix(date, 0)
		err = os.Chtimes(tmp, t, t)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, to)
	}
	os.Remove(tmp)
	return err
}

// Changes answers CONDSTORE's CHANGEDSINCE and QRESYNC: the messages of
// the view whose MODSEQ is above since, and the UIDs expunged since then.
// When the expunge log no longer reaches back to since, vanished is every
// UID below UIDNEXT that is not in the view (QRESYNC allows reporting
// UIDs that never existed). Call it after Refresh.
func (mb *Mailbox) Changes(since uint64) (changed []Message, vanished UIDSet, err error) {
	for _, m := range mb.msgs {
		if m.ModSeq > since {
			changed = append(changed, m)
		}
	}
	ops, err := mb.s.beginRead(mb.name)
	if err != nil {
		return nil, nil, err
	}
	o := ops[0]
	if o.l.validity != mb.validity {
		finish(ops, true)
		return nil, nil, fmt.Errorf("folder %q: %w", mb.name, ErrUIDValidity)
	}
	if since >= o.l.floor {
		var uids []uint32
		for _, x := range o.l.vanished {
			if x.modseq > since {
				uids = append(uids, x.uids.UIDs()...)
			}
		}
		vanished = SetOf(uids)
	} else {
		vanished = mb.Missing()
	}
	return changed, vanished, finish(ops, true)
}

// Missing is every UID below UIDNEXT that is not in the view: expunged,
// or never given out (the view's UIDs are ascending).
func (mb *Mailbox) Missing() UIDSet {
	var out UIDSet
	next := uint32(1)
	for _, m := range mb.msgs {
		if m.UID > next {
			out = append(out, UIDRange{next, m.UID - 1})
		}
		next = m.UID + 1
	}
	if next < mb.uidNext {
		out = append(out, UIDRange{next, mb.uidNext - 1})
	}
	return out
}

// Path is where the message's file was last seen; it may have been
// renamed since (use Open, which looks again).
func (mb *Mailbox) Path(uid uint32) (string, error) {
	s := mb.Seq(uid)
	if s == 0 {
		return "", fmt.Errorf("UID %d in %q: %w", uid, mb.name, ErrExpunged)
	}
	m := &mb.msgs[s-1]
	dir, err := folderPath(mb.s.root, mb.name)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, m.sub, m.name), nil
}

// Open opens a message for FETCH. A file renamed by another session's
// STORE is found again by a scan; one that is gone is ErrExpunged (the
// server answers NO [EXPUNGEISSUED] or omits it, as RFC 9051 allows).
func (mb *Mailbox) Open(uid uint32) (*os.File, error) {
	p, err := mb.Path(uid)
	if err != nil {
		return nil, err
	}
	f, err := openMessage(p)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	ops, err := mb.s.beginRead(mb.name)
	if err != nil {
		return nil, err
	}
	o := ops[0]
	if err := o.scan(!mb.readOnly); err != nil {
		finish(ops, false)
		return nil, err
	}
	if err := o.frozenChange(); err != nil {
		finish(ops, false)
		return nil, err
	}
	mb.noteMoved(o)
	i := o.l.find(uid)
	if i < 0 || o.l.validity != mb.validity {
		finish(ops, true)
		return nil, fmt.Errorf("UID %d in %q: %w", uid, mb.name, ErrExpunged)
	}
	e := o.l.msgs[i]
	s := mb.Seq(uid)
	mb.msgs[s-1].sub, mb.msgs[s-1].name = e.sub(), e.name()
	path := o.path(&e)
	if err := finish(ops, true); err != nil {
		return nil, err
	}
	return openMessage(path)
}
