package imap

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"correo/src/imapwire"
	"correo/src/mailstore"
)

// maxFetchMessage bounds the message a FETCH of a body section reads
// into memory; larger ones are served by BODY[]<partial> a piece at a
// time by every real client, and refused whole.
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
		var inSet []uint32
		for _, u := range vanished.UIDs() {
			if u < ss.mb.UIDNext() {
				inSet = append(inSet, u)
			}
		}
		if len(inSet) > 0 {
			ss.w.Untagged("VANISHED (EARLIER) " + mailstore.SetOf(inSet).String())
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
			data, _, err := ss.fetchOne(cmd, m, atts, mods.ChangedSince > 0)
			if err != nil {
				continue
			}
			// The flags changed: say so (RFC 9051 6.4.5).
			if !asked(atts, "FLAGS") {
				data += " FLAGS (" + strings.Join(ss.mb.Flags(m), " ") + ")"
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
	case "UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "RFC822", "RFC822.HEADER", "RFC822.TEXT":
		return true
	case "BODY":
		if a.Section == nil {
			return false
		}
		s := a.Section
		return len(s.Part) == 0 && (s.Specifier == "" || s.Specifier == "HEADER" || s.Specifier == "TEXT")
	}
	return false
}

// fetchOne renders one message's items; setSeen: a non-peek body item on
// a message without \Seen in a writable folder (render again after the
// flag is set).
func (ss *session) fetchOne(cmd *imapwire.Command, m *mailstore.Message, atts []imapwire.FetchAtt, modseq bool) (string, bool, error) {
	var parts []string
	hasUID, hasModSeq := false, false
	var body []byte
	load := func() error {
		if body != nil {
			return nil
		}
		if m.Size > maxFetchMessage {
			return fmt.Errorf("message of %d octets is larger than FETCH serves whole", m.Size)
		}
		f, err := ss.mb.Open(m.UID)
		if err != nil {
			return err
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxFetchMessage+1))
		if err != nil {
			return err
		}
		body = toCRLF(b)
		return nil
	}
	flags := ss.mb.Flags(m)
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
		default:
			peek := a.Peek || a.Name == "RFC822.HEADER"
			if !peek && !ss.mb.ReadOnly() && !hasFlag(flags, mailstore.FlagSeen) {
				return "", true, nil
			}
			if err := load(); err != nil {
				return "", false, err
			}
			name, data := section(a, body)
			parts = append(parts, name+" "+imapwire.Literal(data))
		}
	}
	if cmd.UID && !hasUID {
		parts = append([]string{"UID " + strconv.FormatUint(uint64(m.UID), 10)}, parts...)
	}
	if modseq && !hasModSeq {
		parts = append(parts, fmt.Sprintf("MODSEQ (%d)", m.ModSeq))
	}
	return strings.Join(parts, " "), false, nil
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// section returns the response item name and its octets for the
// whole-message, header and text items.
func section(a imapwire.FetchAtt, msg []byte) (string, string) {
	header, text := splitHeader(msg)
	var name, data string
	switch a.Name {
	case "RFC822":
		return "RFC822", string(msg)
	case "RFC822.HEADER":
		return "RFC822.HEADER", string(header)
	case "RFC822.TEXT":
		return "RFC822.TEXT", string(text)
	}
	switch a.Section.Specifier {
	case "":
		name, data = "BODY[]", string(msg)
	case "HEADER":
		name, data = "BODY[HEADER]", string(header)
	case "TEXT":
		name, data = "BODY[TEXT]", string(text)
	}
	if p := a.Partial; p != nil {
		name += "<" + strconv.FormatUint(uint64(p.Offset), 10) + ">"
		if int(p.Offset) >= len(data) {
			data = ""
		} else {
			data = data[p.Offset:]
		}
		if uint64(len(data)) > uint64(p.Count) {
			data = data[:p.Count]
		}
	}
	return name, data
}

// splitHeader splits a CRLF message after the blank line that ends its
// header (the blank line belongs to the header, RFC 9051 6.4.5).
func splitHeader(msg []byte) ([]byte, []byte) {
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		return msg[:2], msg[2:]
	}
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+4], msg[i+4:]
	}
	return msg, nil
}

// toCRLF turns the stored LF line ends into the CRLF the wire carries,
// leaving existing CRLF alone, so sizes match RFC822.SIZE.
func toCRLF(b []byte) []byte {
	n := bytes.Count(b, []byte("\n")) - bytes.Count(b, []byte("\r\n"))
	if n == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+n)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
