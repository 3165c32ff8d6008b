package imap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"correo/src/imapmsg"
	"correo/src/imapwire"
	"correo/src/mailstore"
)

// maxFetchMessage bounds the section a FETCH reads into memory; larger
// ones are served by BODY[]<partial> a piece at a time by every real
// client, and refused whole.
const maxFetchMessage = 64 << 20

// fetch is FETCH / UID FETCH set items [(CHANGEDSINCE n [VANISHED])].
func (ss *session) fetch(cmd *imapwire.Command) bool {
	args := cmd.Args
	if len(args) != 2 && len(args) != 3 {
		return ss.bad1(cmd, "FETCH takes a set and data items.")
	}
	atts, err := imapwire.ParseFetchAtts(args[1])
	if err != nil {
		return ss.bad1(cmd, capitalize(err.Error())+".")
	}
	var mods imapwire.FetchModifiers
	if len(args) == 3 {
		if mods, err = imapwire.ParseFetchModifiers(args[2]); err != nil {
			return ss.bad1(cmd, capitalize(err.Error())+".")
		}
		if mods.Vanished && !cmd.UID {
			return ss.bad1(cmd, "VANISHED needs UID FETCH.")
		}
		if mods.Vanished && !ss.enabled["QRESYNC"] {
			return ss.bad1(cmd, "VANISHED needs ENABLE QRESYNC first.")
		}
	}
	for _, a := range atts {
		if !fetchSupported(a) {
			return ss.bad1(cmd, "FETCH item "+a.Name+" is not supported.")
		}
	}
	uids, bad := ss.uids(cmd, args[0])
	if bad != "" {
		return ss.bad1(cmd, bad)
	}
	if mods.Vanished {
		_, vanished, err := ss.mb.Changes(mods.ChangedSince)
		if err != nil {
			return ss.no(cmd, err)
		}
		// Only UIDs the client asked about (RFC 7162 3.2.6); "$" (a saved
		// search) names existing messages only, so it reports none.
		set, _ := imapwire.ParseSeqSet(args[0].Str)
		if gone := knownSet(set, ss.mb.UIDNext()-1).Intersect(vanished); len(gone) > 0 {
			ss.w.Untagged("VANISHED (EARLIER) " + gone.String())
		}
	}
	// Setting \Seen is part of the FETCH: collect first, store once.
	var seen []uint32
	for _, uid := range uids {
		seq := ss.mb.Seq(uid)
		if seq == 0 {
			continue
		}
		m := &ss.mb.Messages()[seq-1]
		if mods.ChangedSince > 0 && m.ModSeq <= mods.ChangedSince {
			continue
		}
		data, setSeen, err := ss.fetchOne(cmd, m, atts, mods.ChangedSince > 0)
		if errors.Is(err, errUnknownCTE) {
			ss.w.Tagged(cmd.Tag, "NO", "UNKNOWN-CTE", "A part's content-transfer-encoding is unknown: fetch it with BODY instead of BINARY.")
			return false
		}
		if err != nil {
			// Expunged by another session meanwhile: RFC 9051 allows
			// leaving it out.
			ss.s.log.Info("FETCH of a message that could not be read", "trace", ss.trace, "user", ss.user.Name, "uid", uid, "err", err)
			continue
		}
		if setSeen {
			seen = append(seen, uid)
			continue
		}
		ss.w.Untagged(fmt.Sprintf("%d FETCH (%s)", seq, data))
	}
	if len(seen) > 0 {
		// Mark then answer, so the FLAGS sent include \Seen.
		if _, err := ss.mb.Store(seen, mailstore.OpAdd, []string{mailstore.FlagSeen}, 0); err != nil {
			return ss.no(cmd, err)
		}
		for _, uid := range seen {
			seq := ss.mb.Seq(uid)
			if seq == 0 {
				continue
			}
			m := &ss.mb.Messages()[seq-1]
			data, _, err := ss.fetchOne(cmd, m, atts, mods.ChangedSince > 0 || ss.enabled["CONDSTORE"])
			if err != nil {
				continue
			}
			// The flags changed: say so (RFC 9051 6.4.5).
			if !asked(atts, "FLAGS") {
				data += " FLAGS (" + strings.Join(ss.flags(m), " ") + ")"
			}
			ss.w.Untagged(fmt.Sprintf("%d FETCH (%s)", seq, data))
		}
	}
	// No EXPUNGE during FETCH by sequence number (RFC 9051 7.5.1).
	if done := ss.announce(cmd.UID); done {
		return true
	}
	ss.w.Tagged(cmd.Tag, "OK", "", cmd.Name+" completed.")
	return false
}

func asked(atts []imapwire.FetchAtt, name string) bool {
	for _, a := range atts {
		if a.Name == name {
			return true
		}
	}
	return false
}

func fetchSupported(a imapwire.FetchAtt) bool {
	switch a.Name {
	case "UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "RFC822", "RFC822.HEADER", "RFC822.TEXT",
		"ENVELOPE", "BODYSTRUCTURE", "BODY", "BINARY", "BINARY.SIZE":
		return true
	}
	return false
}

// parsed is one message file opened for FETCH: the parse is lazy (ENVELOPE
// reads the header only) and shared by every item of the message.
type parsed struct {
	f   *os.File
	msg *imapmsg.Message
}

func (p *parsed) close() {
	if p.f != nil {
		p.f.Close()
	}
}

// fetchOne renders one message's items; setSeen: a non-peek body item on
// a message without \Seen in a writable folder (render again after the
// flag is set).
func (ss *session) fetchOne(cmd *imapwire.Command, m *mailstore.Message, atts []imapwire.FetchAtt, modseq bool) (string, bool, error) {
	var parts []string
	hasUID, hasModSeq := false, false
	var pm parsed
	defer pm.close()
	load := func() (*imapmsg.Message, error) {
		if pm.msg != nil {
			return pm.msg, nil
		}
		f, err := ss.mb.Open(m.UID)
		if err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		msg, err := imapmsg.Parse(f, fi.Size())
		if err != nil {
			f.Close()
			return nil, err
		}
		pm = parsed{f: f, msg: msg}
		return msg, nil
	}
	flags := ss.flags(m)
	for _, a := range atts {
		switch a.Name {
		case "UID":
			hasUID = true
			parts = append(parts, "UID "+strconv.FormatUint(uint64(m.UID), 10))
		case "FLAGS":
			parts = append(parts, "FLAGS ("+strings.Join(flags, " ")+")")
		case "INTERNALDATE":
			parts = append(parts, "INTERNALDATE "+imapwire.Quote(imapwire.FormatDateTime(m.InternalDate())))
		case "RFC822.SIZE":
			parts = append(parts, "RFC822.SIZE "+strconv.FormatInt(m.Size, 10))
		case "MODSEQ":
			hasModSeq = true
			parts = append(parts, fmt.Sprintf("MODSEQ (%d)", m.ModSeq))
		case "ENVELOPE":
			v, err := ss.rendered("E", m, load, func(msg *imapmsg.Message) []byte {
				return imapmsg.AppendEnvelope(nil, msg.Envelope(), ss.utf8)
			})
			if err != nil {
				return "", false, err
			}
			parts = append(parts, "ENVELOPE "+v)
		case "BODYSTRUCTURE", "BODY":
			if a.Name == "BODY" && a.Section != nil {
				if done, err := ss.bodyItem(a, flags, load, &parts); err != nil || done {
					return "", done, err
				}
				continue
			}
			ext := a.Name == "BODYSTRUCTURE"
			v, err := ss.rendered(a.Name[:1]+a.Name[len(a.Name)-1:], m, load, func(msg *imapmsg.Message) []byte {
				return imapmsg.AppendBodyStructure(nil, msg.BodyStructure(), ext, ss.utf8)
			})
			if err != nil {
				return "", false, err
			}
			parts = append(parts, a.Name+" "+v)
		default:
			if done, err := ss.bodyItem(a, flags, load, &parts); err != nil || done {
				return "", done, err
			}
		}
	}
	if (cmd.UID || ss.enabled["QRESYNC"]) && !hasUID {
		parts = append([]string{"UID " + strconv.FormatUint(uint64(m.UID), 10)}, parts...)
	}
	if modseq && !hasModSeq {
		parts = append(parts, fmt.Sprintf("MODSEQ (%d)", m.ModSeq))
	}
	return strings.Join(parts, " "), false, nil
}

// rendered answers a message's ENVELOPE or BODY[STRUCTURE] from the
// server's render cache, parsing the file only on a miss. The key holds
// the mailbox, the file's key (its content never changes) and how the
// session renders (UTF8=ACCEPT).
func (ss *session) rendered(kind string, m *mailstore.Message, load func() (*imapmsg.Message, error), render func(*imapmsg.Message) []byte) (string, error) {
	key := kind + strconv.FormatBool(ss.utf8) + "\x00" + ss.root + "\x00" + m.Key
	if v, ok := ss.s.render.get(key); ok {
		return v, nil
	}
	msg, err := load()
	if err != nil {
		return "", err
	}
	v := string(render(msg))
	ss.s.render.put(key, v)
	return v, nil
}

// errUnknownCTE is BINARY of a part whose encoding correo cannot undo:
// NO [UNKNOWN-CTE] (RFC 3516).
var errUnknownCTE = imapmsg.ErrUnknownCTE

// bodyItem renders the items that carry message octets: BODY[...],
// BINARY[...], BINARY.SIZE[...] and RFC822(.HEADER/.TEXT). setSeen is
// true when the item would set \Seen first.
func (ss *session) bodyItem(a imapwire.FetchAtt, flags []string, load func() (*imapmsg.Message, error), parts *[]string) (setSeen bool, err error) {
	peek := a.Peek || a.Name == "RFC822.HEADER" || a.Name == "BINARY.SIZE"
	if !peek && !ss.mb.ReadOnly() && !hasFlag(flags, mailstore.FlagSeen) {
		return true, nil
	}
	msg, err := load()
	if err != nil {
		return false, err
	}
	var path []int
	spec, fieldsNot := "", false
	var fields []string
	name := a.Name
	switch a.Name {
	case "RFC822":
	case "RFC822.HEADER":
		spec = "HEADER"
	case "RFC822.TEXT":
		spec = "TEXT"
	default:
		sec := a.Section
		for _, n := range sec.Part {
			path = append(path, int(n))
		}
		spec, fields = sec.Specifier, sec.Fields
		if spec == "HEADER.FIELDS.NOT" {
			spec, fieldsNot = "HEADER.FIELDS", true
		}
		name += "[" + sectionText(sec) + "]"
	}
	if a.Name == "BINARY.SIZE" {
		n, err := msg.BinarySize(path)
		if err != nil {
			return false, err
		}
		*parts = append(*parts, name+" "+strconv.FormatInt(n, 10))
		return false, nil
	}
	var r io.Reader
	var size int64
	if a.Name == "BINARY" {
		if r, size, err = msg.Binary(path); err != nil {
			return false, err
		}
	} else {
		r, size = msg.Section(path, spec, fields, fieldsNot)
	}
	if p := a.Partial; p != nil {
		name += "<" + strconv.FormatUint(uint64(p.Offset), 10) + ">"
		r, size = imapmsg.Partial(r, size, int64(p.Offset), int64(p.Count))
	}
	if size > maxFetchMessage {
		return false, fmt.Errorf("section of %d octets is larger than FETCH serves at once; fetch it in partials", size)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return false, err
	}
	lit := imapwire.Literal(string(b))
	if a.Name == "BINARY" && bytes.IndexByte(b, 0) >= 0 {
		lit = "~" + lit // literal8: the octets hold NUL (RFC 3516)
	}
	*parts = append(*parts, name+" "+lit)
	return false, nil
}

// sectionText writes a section back as the client asked for it.
func sectionText(sec *imapwire.Section) string {
	var b strings.Builder
	for i, n := range sec.Part {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(uint64(n), 10))
	}
	if sec.Specifier != "" {
		if len(sec.Part) > 0 {
			b.WriteByte('.')
		}
		b.WriteString(sec.Specifier)
	}
	if len(sec.Fields) > 0 {
		b.WriteString(" (" + strings.Join(sec.Fields, " ") + ")")
	}
	return b.String()
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}
