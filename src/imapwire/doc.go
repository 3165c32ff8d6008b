// Package imapwire is correo's IMAP wire layer: it turns the octets a client
// sends into commands and the server's answers into octets, and nothing
// more. It knows no mailbox, no user and no socket; imapd (the session and
// its states) and the proxy (which only needs tags, LOGIN and AUTHENTICATE)
// build on it. It follows RFC 9051 (IMAP4rev2), with RFC 3501 (IMAP4rev1)
// where the two differ, and the syntax of RFC 7888 (LITERAL+, LITERAL-),
// RFC 3516/9051 (literal8), RFC 4731 (ESEARCH), RFC 5182 (SEARCHRES) and
// RFC 7162 (CONDSTORE).
//
// correo writes this layer itself, as it wrote pop3, rather than use
// github.com/emersion/go-imap/v2: that module is a beta whose server lacks
// CONDSTORE, QRESYNC and QUOTA, and the limits below (what may be buffered,
// what is refused before it is read) are the part a mail server for an ISP
// must own.
//
// # Reading commands
//
//	r := imapwire.NewReader(br, imapwire.DefaultLimits(), func(l imapwire.LiteralInfo) error {
//		// Called before the octets of every literal are read. For a
//		// synchronising literal, write "+ Ready" and flush here; return
//		// an error to refuse it (quota, APPEND too big): the client has
//		// sent nothing yet and the command is over.
//	})
//	cmd, err := r.ReadCommand()
//
// A [Command] is one whole command, literals included: Tag, Name (upper
// case; "UID FETCH" gives Name "FETCH" and UID true) and Args, a tree of
// [Arg] (atoms, strings, literals and lists). The tokeniser is generic, as
// the grammar is: FETCH attributes such as
// BODY.PEEK[HEADER.FIELDS (From To)]<0.100> come out as one atom, which
// [ParseFetchAtts] takes apart; search keys are Args that [ParseSearch]
// takes apart; sequence sets are atoms for [ParseSeqSet].
//
// Every resource a command can take is bounded by [Limits]: the bytes
// outside literals, the literal octets (counted before anything is read or
// allocated, so a literal announcing gigabytes costs nothing), non-
// synchronising literals (4096 under LITERAL-), nesting depth and the number
// of arguments. Memory for a literal grows as its octets arrive, not as
// announced.
//
// # Errors and the state of the stream
//
// ReadCommand returns either a command, an [*Error], or another error:
//
//   - [*Error] with Fatal false: the command was bad (syntax, TOOBIG, or
//     refused by the literal callback) and the reader has already discarded
//     the rest of it, so the next ReadCommand starts at the next command.
//     Answer "Tag BAD [Code] Text" (or "* BAD" when Tag is empty: the line
//     did not get as far as a valid tag) and keep the session. A refusal by
//     the callback carries the callback's error in Err: answer NO.
//   - [*Error] with Fatal true: the command was bad and the rest of it could
//     not be skipped within Limits.MaxSkip (a non-synchronising literal of a
//     gigabyte, a line that never ends). Answer BAD if you like, then BYE and
//     close: the stream is out of step.
//   - any other error (io.EOF, a deadline, a reset) comes from the
//     connection: close it.
//
// Resynchronisation follows the literals' rules: after a bad line that ends
// in a synchronising literal "{n}" the client waits for "+" and, getting a
// tagged BAD instead, sends nothing more; after "{n+}" it sends n octets
// regardless, which the reader discards (within MaxSkip) and then goes on
// skipping until the command's last line.
//
// After a Fatal error or a connection error the Reader is out of step:
// do not call it again.
//
// What the reader forgives and what it does not: a bare LF ends a line as
// CRLF does (people type IMAP by hand when something is wrong), but
// arguments are separated by exactly one space, a trailing space is BAD,
// atoms are 7-bit, a quoted string holds 8-bit only after SetUTF8 and
// only as valid UTF-8, and NUL is refused everywhere but in literal8.
//
// # Parsing arguments
//
// [ParseSeqSet], [ParseSearch], [ParseFetchAtts] and [ParseFetchModifiers]
// work on what ReadCommand returned, so the stream is never at stake: their
// errors are [*Error] values without a Tag (use the command's) and answer
// BAD, or NO with Code BADCHARSET.
//
// # Writing responses
//
// [Writer] writes tagged, untagged and continuation responses and removes
// CR, LF and NUL from texts, so nothing a client supplied (a mailbox name
// echoed in a text) can forge a response; [Writer.LiteralFrom] streams a
// message body into a FETCH response. [Quote], [Astring], [NString] and
// [Literal] choose the representation a string needs; [EncodeMailbox] and
// [DecodeMailbox] are modified UTF-7 (RFC 3501 section 5.1.3) for
// IMAP4rev1 clients, [MailboxFromWire] and [MailboxToWire] pick it or UTF-8
// per session; [FormatDateTime], [ParseDateTime] and [ParseDate] are the
// date formats; [CheckMailboxName] refuses names that must never reach the
// storage.
//
// # Left to the server
//
// Which commands exist in which state, how many arguments each takes and
// of which kind (ReadCommand accepts "UID NOOP"; the server refuses it),
// the meaning of "*" for UIDs in an empty mailbox (pass UIDNEXT or 0),
// counting bad commands, timeouts, AUTHENTICATE's continuation lines and
// IDLE's DONE (read with [Reader.ReadLine]), and streaming APPEND bodies to
// disk (today a literal is held in memory, up to Limits.MaxLiteral).
package imapwire
