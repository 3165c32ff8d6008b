package mailstore

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	uidlistFile  = "correo-uidlist"
	uidlistMagic = "correo-uidlist 1"
)

// MaxVanished bounds the UIDs the expunge log remembers for QRESYNC. At
// ~10 bytes a UID in the worst case (no ranges) the log stays under
// 100 KB; older expunges are summarised by the floor MODSEQ.
var MaxVanished = 10000

// entry is one message of the list.
type entry struct {
	uid    uint32
	modseq uint64
	size   int64 // RFC822.SIZE
	date   int64 // INTERNALDATE, Unix seconds
	inNew  bool
	info   string // the file name after the key: ":2,FS", or ""
	key    string
}

func (e *entry) name() string { return e.key + e.info }

func (e *entry) sub() string {
	if e.inNew {
		return "new"
	}
	return "cur"
}

// expungeRec is one line of the expunge log.
type expungeRec struct {
	modseq uint64
	uids   UIDSet
}

// uidList is the parsed correo-uidlist of one folder.
type uidList struct {
	validity uint32
	uidNext  uint32
	modseq   uint64 // HIGHESTMODSEQ
	gen      uint64
	floor    uint64 // expunges at or below this MODSEQ are forgotten
	vanished []expungeRec
	msgs     []entry // by UID
}

func (l *uidList) header() string {
	return fmt.Sprintf("%s V%d N%d M%d G%d F%d", uidlistMagic, l.validity, l.uidNext, l.modseq, l.gen, l.floor)
}

// marshal writes the list. Keys go last on their line so nothing in them
// (they come from file names) can shift the other fields.
func (l *uidList) marshal() []byte {
	var b bytes.Buffer
	b.Grow(64 + len(l.msgs)*96)
	b.WriteString(l.header())
	b.WriteByte('\n')
	for _, x := range l.vanished {
		b.WriteString("x ")
		b.WriteString(strconv.FormatUint(x.modseq, 10))
		b.WriteByte(' ')
		b.WriteString(x.uids.String())
		b.WriteByte('\n')
	}
	var num [20]byte
	for i := range l.msgs {
		e := &l.msgs[i]
		b.Write(strconv.AppendUint(num[:0], uint64(e.uid), 10))
		b.WriteByte(' ')
		b.Write(strconv.AppendUint(num[:0], e.modseq, 10))
		b.WriteByte(' ')
		b.Write(strconv.AppendInt(num[:0], e.size, 10))
		b.WriteByte(' ')
		b.Write(strconv.AppendInt(num[:0], e.date, 10))
		if e.inNew {
			b.WriteString(" n ")
		} else {
			b.WriteString(" c ")
		}
		if e.info == "" {
			b.WriteByte('-')
		} else {
			b.WriteString(e.info)
		}
		b.WriteByte(' ')
		b.WriteString(e.key)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "end %d\n", len(l.msgs))
	return b.Bytes()
}

// validKey says whether a file name's key can be a message of ours: what
// could escape the directory, break a line of the list, or be a dot file
// is not a message.
func validKey(k string) bool {
	if k == "" || k[0] == '.' || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c == '/' || c == ':' || c == 0x7f {
			return false
		}
	}
	return true
}

func validInfo(s string) bool {
	if s == "" || s[0] != ':' || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '/' || c == 0x7f {
			return false
		}
	}
	return true
}

// errCorrupt marks a list that must be rebuilt.
var errCorrupt = errors.New("corrupt UID list")

// parseHeader reads the first line; the rest of the file is checked by
// parseUIDList.
func parseHeader(line string) (*uidList, error) {
	rest, ok := strings.CutPrefix(line, uidlistMagic+" ")
	if !ok {
		return nil, fmt.Errorf("%w: header %.40q is not %q", errCorrupt, line, uidlistMagic)
	}
	f := strings.Split(rest, " ")
	if len(f) != 5 {
		return nil, fmt.Errorf("%w: header has %d fields, want 5", errCorrupt, len(f))
	}
	l := &uidList{}
	for i, want := range []byte{'V', 'N', 'M', 'G', 'F'} {
		if len(f[i]) < 2 || f[i][0] != want {
			return nil, fmt.Errorf("%w: header field %d is %.20q, want %c<number>", errCorrupt, i+1, f[i], want)
		}
		bits := 64
		if want == 'V' || want == 'N' {
			bits = 32
		}
		n, err := strconv.ParseUint(f[i][1:], 10, bits)
		if err != nil {
			return nil, fmt.Errorf("%w: header field %c: %v", errCorrupt, want, err)
		}
		switch want {
		case 'V':
			l.validity = uint32(n)
		case 'N':
			l.uidNext = uint32(n)
		case 'M':
			l.modseq = n
		case 'G':
			l.gen = n
		case 'F':
			l.floor = n
		}
	}
	if l.validity == 0 || l.uidNext == 0 || l.modseq == 0 || l.floor > l.modseq {
		return nil, fmt.Errorf("%w: header values out of range: %q", errCorrupt, line)
	}
	return l, nil
}

// parseUIDList parses and validates a whole list. Anything it accepts
// satisfies the invariants the rest of the package relies on: UIDs
// ascending below UIDNEXT, MODSEQs within HIGHESTMODSEQ, keys unique and
// safe as file names.
func parseUIDList(data []byte) (*uidList, error) {
	bad := func(lineNo int, format string, a ...any) (*uidList, error) {
		return nil, fmt.Errorf("%w: line %d: %s", errCorrupt, lineNo, fmt.Sprintf(format, a...))
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil, fmt.Errorf("%w: empty or not ending in a newline (truncated?)", errCorrupt)
	}
	lines := strings.Split(string(data[:len(data)-1]), "\n")
	l, err := parseHeader(lines[0])
	if err != nil {
		return nil, err
	}
	last := lines[len(lines)-1]
	if len(lines) < 2 || !strings.HasPrefix(last, "end ") {
		return nil, fmt.Errorf("%w: no end line (truncated?)", errCorrupt)
	}
	count, err := strconv.Atoi(last[4:])
	if err != nil || count < 0 || count > len(lines)-2 {
		return bad(len(lines), "bad end line %.30q", last)
	}
	body := lines[1 : len(lines)-1]
	l.msgs = make([]entry, 0, count)
	keys := make(map[string]struct{}, count)
	var lastMod uint64
	for i, line := range body {
		no := i + 2
		if rest, ok := strings.CutPrefix(line, "x "); ok {
			if len(l.msgs) > 0 {
				return bad(no, "expunge record after the messages")
			}
			ms, set, ok := strings.Cut(rest, " ")
			if !ok {
				return bad(no, "expunge record without a UID set")
			}
			m, err := strconv.ParseUint(ms, 10, 64)
			if err != nil || m <= l.floor || m > l.modseq || m <= lastMod {
				return bad(no, "expunge MODSEQ %.20q out of order or range", ms)
			}
			lastMod = m
			uids, err := parseUIDSet(set)
			if err != nil {
				return bad(no, "%v", err)
			}
			if uids[len(uids)-1].Hi >= l.uidNext {
				return bad(no, "expunged UID at or above UIDNEXT %d", l.uidNext)
			}
			l.vanished = append(l.vanished, expungeRec{modseq: m, uids: uids})
			continue
		}
		f := strings.SplitN(line, " ", 7)
		if len(f) != 7 {
			return bad(no, "want 7 fields, got %d", len(f))
		}
		var e entry
		uid, err1 := strconv.ParseUint(f[0], 10, 32)
		ms, err2 := strconv.ParseUint(f[1], 10, 64)
		size, err3 := strconv.ParseInt(f[2], 10, 64)
		date, err4 := strconv.ParseInt(f[3], 10, 64)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return bad(no, "%v", err)
		}
		e.uid, e.modseq, e.size, e.date = uint32(uid), ms, size, date
		if e.uid == 0 || e.uid >= l.uidNext {
			return bad(no, "UID %d not in 1..%d", e.uid, l.uidNext-1)
		}
		if n := len(l.msgs); n > 0 && e.uid <= l.msgs[n-1].uid {
			return bad(no, "UID %d not above the previous one", e.uid)
		}
		if e.modseq == 0 || e.modseq > l.modseq {
			return bad(no, "MODSEQ %d not in 1..%d", e.modseq, l.modseq)
		}
		if e.size < 0 {
			return bad(no, "negative size")
		}
		switch f[4] {
		case "n":
			e.inNew = true
		case "c":
		default:
			return bad(no, "location %.10q is neither n nor c", f[4])
		}
		if f[5] != "-" {
			if !validInfo(f[5]) {
				return bad(no, "bad info %.40q", f[5])
			}
			e.info = f[5]
		}
		if !validKey(f[6]) {
			return bad(no, "bad key %.60q", f[6])
		}
		e.key = f[6]
		if _, dup := keys[e.key]; dup {
			return bad(no, "key %.60q listed twice", e.key)
		}
		keys[e.key] = struct{}{}
		l.msgs = append(l.msgs, e)
	}
	if len(l.msgs) != count {
		return nil, fmt.Errorf("%w: end line says %d messages, found %d", errCorrupt, count, len(l.msgs))
	}
	return l, nil
}

// find returns the index of uid in msgs, or -1.
func (l *uidList) find(uid uint32) int {
	lo, hi := 0, len(l.msgs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l.msgs[m].uid < uid {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(l.msgs) && l.msgs[lo].uid == uid {
		return lo
	}
	return -1
}

// trimVanished drops the oldest expunge records beyond MaxVanished UIDs,
// raising the floor so Changes knows it can no longer be exact below it.
func (l *uidList) trimVanished() {
	total := 0
	for _, x := range l.vanished {
		total += x.uids.size()
	}
	drop := 0
	for drop < len(l.vanished) && total > MaxVanished {
		total -= l.vanished[drop].uids.size()
		l.floor = l.vanished[drop].modseq
		drop++
	}
	if drop > 0 {
		l.vanished = append([]expungeRec(nil), l.vanished[drop:]...)
	}
}
