// Package mailstore is the IMAP view of one user's Maildir++: folders,
// UIDs, flags, MODSEQs and change notification over the same Maildir that
// pdeliveryd fills and pop3d serves. It speaks no IMAP; an IMAP server
// (imapd) maps commands onto it.
//
// # API
//
//	Open(root) (*Store, error)        the user's Maildir (INBOX) and its folders
//	(*Store).EnsureDefaults()         Sent, Drafts, Trash, Junk with SPECIAL-USE, once
//	(*Store).List()                   folders with \HasChildren, \Noselect, special use
//	(*Store).Create / Delete / Rename folder management (RFC 9051 rules)
//	(*Store).Status(folder)           MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ
//	(*Store).Append(folder, flags, date, r) (uid, uidvalidity, error)
//	(*Store).Usage()                  quota usage: S= of every message in every folder
//	(*Store).Watch(folder)            IDLE: a channel that fires after changes
//	(*Store).WatchMoving(fn)          fn runs when the mailbox may be frozen for a move
//	(*Store).Select / Examine(folder) (*Mailbox, error): a session's view
//	(*Mailbox).Refresh(allowExpunge)  what changed since the last look (EXISTS, EXPUNGE, FETCH FLAGS)
//	(*Mailbox).Store(uids, op, flags, unchangedSince)   STORE with CONDSTORE
//	(*Mailbox).Copy / Move(uids, dest) COPYUID data
//	(*Mailbox).Expunge(uids or nil)   EXPUNGE / UID EXPUNGE
//	(*Mailbox).Changes(since)         CONDSTORE CHANGEDSINCE and QRESYNC VANISHED
//	(*Mailbox).Open(uid)              the message file for FETCH
//
// Every method works in terms of UIDs; a Mailbox maps UIDs to sequence
// numbers for its session (Seq, UIDAt). A Store is safe for concurrent
// use; a Mailbox belongs to one session (one goroutine at a time).
//
// # Folders (Maildir++)
//
// INBOX is the Maildir itself (the root). Folder "A/B" (IMAP hierarchy
// separator '/') is the directory root/.A.B with cur/, new/, tmp/ and an
// empty maildirfolder marker, as Courier and Dovecot lay it out, so that
// Maildir++ tools can read it. Inside a name component '.' is the Maildir++
// separator on disk, so it is escaped as "%2E" (".Mr%2E Smith" holds
// "Mr. Smith"): dots in folder names are common ("v1.2", "Mr. Smith") and
// refusing them surprises users more than an odd directory name surprises
// an administrator. '%' and '*' are refused in names (they are LIST
// wildcards, and refusing '%' makes the escape unambiguous). Names are
// UTF-8 (IMAP4rev2); an IMAP4rev1 server layer converts modified UTF-7.
//
// A name is refused when it is empty, has an empty component (leading,
// trailing or doubled '/'), a component "." or "..", NUL or another
// control character, invalid UTF-8, more than MaxNameLen bytes, or a
// directory name longer than 255 bytes; every path is then checked to be
// a direct child of the root. "INBOX" is case-insensitive, also as the
// first component of a child ("inbox/x" is "INBOX/x", stored as
// .INBOX.x).
//
// Special use (RFC 6154) is a per-folder file, correo-specialuse, holding
// e.g. "\Sent": it travels with the folder on Rename and dies with it on
// Delete. EnsureDefaults writes the root marker correo-defaults once it
// has created the four folders, so a user who deletes Junk does not get it
// back at the next login.
//
// # Flags
//
// Flags live in the file name's info, "<key>:2,<letters>", letters in
// ASCII order: D \Draft, F \Flagged, P $Forwarded (Maildir "passed"), R
// \Answered, S \Seen, T \Deleted; other upper-case letters written by
// other software are kept untouched. Keywords use the letters a–z, mapped
// per folder by the file correo-keywords (one "<letter> <keyword>" line
// each, Dovecot's scheme with its own name): at most 26 keywords per
// folder, after which storing a new one fails with ErrTooManyKeywords (the
// server answers NO [LIMIT] and stops offering \* in PERMANENTFLAGS). A
// letter, once given, keeps its meaning for the life of the folder.
// Changing flags renames the file within cur/ and fsyncs cur/; the file is
// never rewritten. \Recent is not kept (IMAP4rev2 dropped it).
//
// # The UID list
//
// Each folder has correo-uidlist beside its cur/ (INBOX: in the root):
//
//	correo-uidlist 1 V<uidvalidity> N<uidnext> M<highestmodseq> G<generation> F<vanished floor>
//	x <modseq> <uid set>                              one per expunge, oldest first
//	<uid> <modseq> <size> <date> <n|c> <info|-> <key>  one per message, by UID
//	end <number of message lines>
//
// size is RFC822.SIZE (octets with CRLF line ends: W= of the name, or
// counted once); date is the INTERNALDATE (file mtime, Unix seconds); n|c
// says whether the file was last seen in new/ or cur/; info is the file
// name's part after the key (":2,FS"), "-" when there is none; key is the
// name up to ':' — the same key pop3d hashes for UIDL. The generation
// grows with every write and lets a process that already parsed the file
// skip re-reading it (only the header is read). The expunge log is
// bounded (MaxVanished UIDs); F is the highest MODSEQ it has forgotten, so
// Changes(since) is exact for since >= F and otherwise reports every UID
// below UIDNEXT that is not present, which QRESYNC allows.
//
// The file is replaced as Deliver writes messages: write
// correo-uidlist.tmp, fsync, rename, fsync the folder directory. A
// leftover tmp file is never read and is overwritten by the next write. A
// list that is missing, unreadable or fails validation (header, order,
// bounds, duplicate keys, the end count) is rebuilt from the files with a
// NEW UIDVALIDITY, taken from the root's correo-uidvalidity counter (max
// of the clock and the last value + 1, kept with the same discipline), so
// UIDs are never reused under one UIDVALIDITY, even for a folder deleted
// and created again within a second.
//
// A scan (inside Select, Refresh, Status, Store, ...) reads new/ and cur/
// and compares them with the list: unknown keys get UIDs in delivery
// order (the seconds prefix, then the key, as mailbox.List orders them);
// keys that vanished are expunges (a POP3 DELE, another session's
// EXPUNGE, a user's rm); a changed info is a flag change made by a rename
// elsewhere. Each change takes a new MODSEQ. Select and Refresh also move
// new/ to cur/ (the message has been seen by a client); Status does not.
//
// # Concurrency with other sessions, pop3d and pdeliveryd
//
// Every change to a folder's list happens with an exclusive flock on the
// folder's correo-mailstore.lock, held only for the scan-and-write (never
// across a client's command wait), so IMAP sessions of one user in any
// number of processes serialise their UID assignments. flock excludes
// open file descriptions, not processes, so two Stores in one process
// exclude each other too. Operations on two folders (COPY, MOVE) take
// both locks in the order of the directory names.
//
// Create, Delete, Rename, SetSpecialUse and EnsureDefaults add, remove
// or rename directories rather than change a list; they serialise on
// INBOX's lock (the root's correo-mailstore.lock), never nested inside
// another folder's.
//
// # A mailbox being moved
//
// While the file correo-moving (mailbox.MovingMarker) is in the root,
// the mailbox is being copied to another storage host and must not
// change. Every operation checks for it after taking its lock (the
// mover writes the marker, then takes every folder's lock once, so an
// operation either ended before the copy or sees the marker) and fails
// with ErrMoving, changing nothing. Reads (List, Status, Examine,
// Refresh, Changes, Open) still work as long as they find nothing they
// would have to write; a scan that would adopt a delivery, move new/ to
// cur/ or rebuild a list fails with ErrMoving too, so no answer shows a
// UID that exists only in memory. APPEND looks for the marker before
// writing to tmp/ as well, but only the check under the lock is
// authoritative: a message written to tmp/ while the marker appears is
// removed again.
//
// pop3d's session lock (correo-pop3.lock) is not taken: it would make
// IMAP wait for a POP session's whole duration. The two coexist because
// neither changes a message's key:
//
//   - pdeliveryd only creates files in new/; a scan adopts them.
//   - pop3d moves new/ to cur/ at login (key kept: the UID is kept) and
//     unlinks DELEted files at QUIT; the next IMAP scan reports them
//     expunged (VANISHED/EXPUNGE), with a MODSEQ.
//   - An IMAP EXPUNGE unlinks files. A POP session that listed them
//     before finds them gone: RETR/TOP answer "-ERR [SYS/TEMP] Message
//     cannot be read now." and the message stays in that session's list;
//     DELE of it at QUIT is not an error (mailbox.Delete ignores a missing
//     file). The next POP session does not list it.
//   - An IMAP flag change renames cur/key:2,X to cur/key:2,Y. pop3d's
//     UIDL hashes the key only, so UIDL is stable. But a POP session
//     opened before the rename holds the old name: RETR then fails as for
//     a vanished file, and its DELE at QUIT silently deletes nothing (the
//     message stays). This is a limitation of pop3d that the server layer
//     should fix in package mailbox (look the key up again in cur/ when
//     the name is gone), not here.
package mailstore
