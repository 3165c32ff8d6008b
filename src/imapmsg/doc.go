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
// bad syntax: a multipart without a boundary is a leaf, an unterminated
// multipart ends where its parent (or the file) ends, header lines without a
// colon are kept in the raw header but are not fields. The work is bounded by
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
// A Message is not safe for concurrent use: one IMAP session owns it.
package imapmsg
