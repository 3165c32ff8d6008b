package milter

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// ChangeOp is what a HeaderChange does.
type ChangeOp int

const (
	// Add appends a field at the end of the header (SMFIR_ADDHEADER).
	Add ChangeOp = iota + 1
	// Insert puts a field at position Index, 0 being the top; past the
	// end means the end (SMFIR_INSHEADER, Sendmail's meaning of the index).
	Insert
	// Change replaces the Index-th field named Name (1-based, names
	// compared without case); when there is no such field it is added at
	// the end, as Sendmail does (SMFIR_CHGHEADER).
	Change
	// Delete removes the Index-th field named Name; nothing happens when
	// there is none (SMFIR_CHGHEADER with an empty value).
	Delete
)

func (o ChangeOp) String() string {
	switch o {
	case Add:
		return "add"
	case Insert:
		return "insert"
	case Change:
		return "change"
	case Delete:
		return "delete"
	}
	return "unknown"
}

// HeaderChange is one header edit a milter asked for. Value's folded
// lines are separated by "\n", each continuation starting with a space
// or tab (checked when the milter's answer is read); the field is written
// as "Name: Value" with the message's own line ending.
type HeaderChange struct {
	Op    ChangeOp
	Index int
	Name  string
	Value string
}

// maxHeaderBytes bounds the header block read from a message. Past it
// (a header block of a megabyte is not mail) the rest counts as body,
// for the milters and for Rewrite alike, so both see the same fields.
const maxHeaderBytes = 1 << 20

// maxNameLen bounds a field name (validName).
const maxNameLen = 256

// field is one header field as it is in the message.
type field struct {
	name string // as written, without the colon
	raw  []byte // every line with its line ending
}

// value is the field's value as milters receive it: after the colon and
// the white space following it, without the final line ending, folded
// lines separated by "\n" (as Sendmail and Postfix send them).
func (f field) value() string {
	v := f.raw[bytes.IndexByte(f.raw, ':')+1:]
	v = bytes.TrimLeft(v, " \t")
	v = bytes.TrimSuffix(v, []byte("\n"))
	v = bytes.TrimSuffix(v, []byte("\r"))
	return strings.ReplaceAll(string(v), "\r\n", "\n")
}

// header is a message's header block.
type header struct {
	fields  []field
	eol     string // the message's line ending: "\r\n" or "\n"
	sep     []byte // the empty line that ended the header block, if any
	rest    []byte // bytes read past the header block that are body
	bodyOff int64  // where the body starts in the message
}

// readHeader reads a message's header block. It ends at the empty line
// (RFC 5322), at the end of the message, or at the first line that is
// neither a field nor a continuation line, which starts the body (as
// Postfix does). Only a failing reader is an error.
func readHeader(r *bufio.Reader) (*header, error) {
	h := &header{eol: "\r\n"}
	var off int64
	budget := maxHeaderBytes
	first := true
	for {
		line, long, err := readLine(r, budget)
		if err != nil && err != io.EOF {
			return nil, err
		}
		if len(line) == 0 {
			break
		}
		if first {
			first = false
			if bytes.HasSuffix(line, []byte("\n")) && !bytes.HasSuffix(line, []byte("\r\n")) {
				h.eol = "\n"
			}
		}
		if long {
			h.rest = line
			h.bodyOff = off
			return h, nil
		}
		switch {
		case string(line) == "\r\n" || string(line) == "\n":
			h.sep = line
			h.bodyOff = off + int64(len(line))
			return h, nil
		case (line[0] == ' ' || line[0] == '\t') && len(h.fields) > 0:
			last := &h.fields[len(h.fields)-1]
			last.raw = append(last.raw, line...)
		default:
			name, ok := fieldName(line)
			if !ok {
				h.rest = line
				h.bodyOff = off
				return h, nil
			}
			h.fields = append(h.fields, field{name: name, raw: line})
		}
		off += int64(len(line))
		budget -= len(line)
		if err == io.EOF {
			break
		}
	}
	h.bodyOff = off
	return h, nil
}

// readLine reads one line with its ending, or up to the end of input. A
// line longer than max is returned as far as it was read, with long set.
func readLine(r *bufio.Reader, max int) (line []byte, long bool, err error) {
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > max {
			return line, true, nil
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return line, false, err
	}
}

// fieldName returns the name of the field a line starts ("Name:" or,
// RFC 5322's obsolete syntax, "Name :").
func fieldName(line []byte) (string, bool) {
	i := 0
	for i < len(line) && i <= maxNameLen {
		c := line[i]
		if c == ':' || c == ' ' || c == '\t' {
			break
		}
		if c < 33 || c > 126 {
			return "", false
		}
		i++
	}
	name := string(line[:i])
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	if i >= len(line) || line[i] != ':' || !validName(name) {
		return "", false
	}
	return name, true
}

// apply makes the changes, in order, on a copy of fields.
func apply(fields []field, changes []HeaderChange, eol string) []field {
	out := append([]field(nil), fields...)
	for _, c := range changes {
		switch c.Op {
		case Add:
			out = append(out, newField(c.Name, c.Value, eol))
		case Insert:
			i := min(max(c.Index, 0), len(out))
			out = append(out[:i], append([]field{newField(c.Name, c.Value, eol)}, out[i:]...)...)
		case Change, Delete:
			i := nth(out, c.Name, max(c.Index, 1))
			switch {
			case c.Op == Delete && i >= 0:
				out = append(out[:i], out[i+1:]...)
			case c.Op == Change && i >= 0:
				out[i] = newField(c.Name, c.Value, eol)
			case c.Op == Change:
				out = append(out, newField(c.Name, c.Value, eol))
			}
		}
	}
	return out
}

// nth is the position of the n-th (1-based) field called name, or -1.
func nth(fields []field, name string, n int) int {
	for i, f := range fields {
		if strings.EqualFold(f.name, name) {
			n--
			if n == 0 {
				return i
			}
		}
	}
	return -1
}

func newField(name, value, eol string) field {
	return field{name: name, raw: []byte(name + ": " + strings.ReplaceAll(value, "\n", eol) + eol)}
}

// Rewrite copies the message msg (header and body, as received) to dst
// with changes applied to its header block, in order. The body is copied
// byte for byte; so is every field no change touched. New fields use the
// message's line ending (that of its first line). With no changes the
// message is copied as is.
func Rewrite(dst io.Writer, msg io.Reader, changes []HeaderChange) error {
	if len(changes) == 0 {
		_, err := io.Copy(dst, msg)
		return err
	}
	for _, c := range changes {
		if c.Op < Add || c.Op > Delete || !validName(c.Name) {
			return errors.New("milter: invalid header change")
		}
		if c.Op != Delete {
			if v, err := normalizeValue(c.Value); err != nil || v != c.Value {
				return errors.New("milter: invalid header value for " + c.Name)
			}
		}
	}
	br := bufio.NewReaderSize(msg, 64<<10)
	h, err := readHeader(br)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(dst, 64<<10)
	for _, f := range apply(h.fields, changes, h.eol) {
		w.Write(f.raw)
		if !bytes.HasSuffix(f.raw, []byte("\n")) {
			// The message ended in its last field, without a line
			// ending; fields now follow it.
			w.WriteString(h.eol)
		}
	}
	w.Write(h.sep)
	w.Write(h.rest)
	if _, err := io.Copy(w, br); err != nil {
		return err
	}
	return w.Flush()
}
