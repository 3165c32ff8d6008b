// Package imapmsg answers what IMAP FETCH and SEARCH need to know about one
// stored message: its ENVELOPE, its BODY and BODYSTRUCTURE, the bytes of any
// BODY[section] or BINARY[section], and header and text matching for SEARCH.
// It knows nothing about the wire parser (imapwire) or the store (mailstore):
// the server hands it an io.ReaderAt over one message file and streams what it
// gets back.
//
// # LF on disk, CRLF on the wire
//
// pdeliveryd stores messages with LF line ends, but everything IMAP counts
// (RFC822.SIZE, section sizes, <partial> offsets) is in the CRLF form the
// client receives. The parser therefore records, for every offset it keeps,
// both the raw file offset and the CRLF offset, so sizes never need a second
// pass, and every stream this package returns is already converted (a lone LF
// becomes CRLF; an existing CRLF and a lone CR are left as they are). Files
// stored with CRLF work the same and cost nothing extra.
//
// # Parsing: offsets, not copies, and bounded
//
// Parse reads only the top-level header. The MIME tree is built on first use
// (BodyStructure, Section, Binary, matching) in one sequential pass that keeps
// offsets into the file, never body bytes, so FETCH ENVELOPE over a large
// folder reads headers only. Broken mail is the norm, so nothing here fails on
// bad syntax: a multipart without a boundary or any delimiter has no parts
// (BODYSTRUCTURE shows one empty text/plain, as Dovecot does, because the
// grammar needs one), an unterminated multipart ends where its parent (or the
// file) ends, and header lines without a colon stay in the raw header
// (HEADER.FIELDS.NOT returns them) but are not fields. The work is bounded by
// Limits, and beyond them the rest is opaque body rather than an error, as in
// Dovecot's message parser:
//
//   - MaxParts: once this many parts exist, the rest of the file is the body of
//     the last part (so a message with a million parts costs MaxParts parts);
//   - MaxDepth: a multipart or message/rfc822 nested deeper is a leaf;
//   - MaxHeaderBytes: only this much of any one header is kept for parsing
//     fields; the raw header range still runs to its blank line.
//
// # Section numbering (RFC 9051 section 6.4.5)
//
// Section takes the numeric path and the text specifier apart, as the wire
// parser delivers them. A part that does not exist gives an empty string, not
// an error: one bad section in a FETCH must not end the session.
//
// # Encoded words
//
// ENVELOPE and BODYSTRUCTURE keep RFC 2047 encoded words as they are in the
// header (the client decodes them); HeaderValues decodes them to UTF-8 because
// SEARCH compares decoded text.
//
// # The API, as the server uses it
//
//	m, err := imapmsg.Parse(file, size)           // header only; file is an *os.File
//	imapmsg.WriteEnvelope(w, m.Envelope(), utf8ok) // FETCH ENVELOPE
//	st := m.BodyStructure()                        // parses the tree once
//	imapmsg.WriteBodyStructure(w, st, ext, utf8ok) // BODY (ext false) or BODYSTRUCTURE
//	r, n := m.Section(path, spec, fields, not)     // BODY[...]: CRLF bytes and their count
//	r, n = imapmsg.Partial(r, n, off, count)       // <off.count>
//	r, n, err = m.Binary(path)                     // BINARY[...]; err ErrUnknownCTE → NO [UNKNOWN-CTE]
//	n, err = m.BinarySize(path)                    // BINARY.SIZE[...]
//	m.HeaderValues("Subject"); m.Date(); m.Contains(s, withHeaders) // SEARCH
//
// utf8ok is true when the session may receive UTF-8 in quoted strings
// (IMAP4rev2, or UTF8=ACCEPT enabled); otherwise 8-bit strings are written
// as literals. Section data is always sent by the server as a literal (a
// literal8 for BINARY when it holds NUL). Size() is RFC822.SIZE but parses the
// whole file: the Maildir name's W= field is cheaper when it is there.
//
// # Checked against Dovecot
//
// The messages in testdata/msg (real-world shapes and broken MIME) were
// fetched from Dovecot 2.3's imap binary over a private Maildir, item by item
// (ENVELOPE, BODY, BODYSTRUCTURE, RFC822.SIZE, sixteen sections, BINARY and
// BINARY.SIZE): correo answers the same, strings compared by value, except
// where dovecotDiffs in dovecot_test.go says why not. Run it with
// IMAPMSG_DOVECOT=1 go test -run TestAgainstDovecot ./src/imapmsg.
//
// A Message is not safe for concurrent use: one IMAP session owns it.
package imapmsg
