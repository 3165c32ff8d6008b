// Package pop3 is correo's POP3 server (RFC 1939, with RFC 2449 CAPA and
// response codes, RFC 2595 STLS, RFC 5034 AUTH PLAIN and the RFC 3206
// codes [AUTH], [SYS/TEMP], [SYS/PERM] and [IN-USE]) over the Maildirs of
// one storage host. pop3d wires it to the host profile; mailproxy reuses
// its command parser and SASL PLAIN decoder.
//
// Maildir semantics:
//
//   - The message list is fixed at login: every message in new/ is moved
//     to cur/ (it has now been seen by a mail client, as the Maildir
//     specification asks) and the session works on that list; mail that
//     arrives later appears in the next session.
//   - Sizes come from the W= field in the file names (the size with every
//     LF sent as CRLF), so STAT and LIST cost no stat per message. LIST
//     reports W=, the octets of the message as the client will hold it
//     after undoing dot-stuffing: that is the size RFC 1939 asks for, and
//     the one a client compares with what it received. Dot-stuffing bytes
//     are transfer encoding and are not counted; S= (the size on disk,
//     LF line ends) would under-report every line. Names without W=
//     (written by another deliverer) are measured once at login.
//   - UIDL is a hash of the Maildir key (the name up to ':2,'), which is
//     the same in new/ and cur/ and never changes: stable across sessions
//     and moves, always 32 characters (keys carry the host name and the
//     S=/W= fields and can exceed the 70 characters RFC 1939 allows).
//   - DELE only marks; the files are removed at QUIT (the UPDATE state) and
//     the directories fsynced once. A connection that drops, or a server
//     that stops, deletes nothing.
//   - One session per mailbox: a second login gets [IN-USE]. The lock is an
//     flock(2) on a file in the Maildir (so two pop3d processes exclude
//     each other too) plus an in-process set for mailboxes that do not
//     exist yet; both vanish with the process, so a crash never leaves a
//     stale lock.
//   - A Maildir being moved to another storage host (the file
//     correo-moving, mailbox.MovingMarker, in its root) is not served:
//     login answers [IN-USE] (checked with the session lock held, which
//     the mover waits for after writing the marker), and a session in
//     progress notices the marker within movingPollInterval, finishes the
//     message it may be sending, and ends without the UPDATE state (a
//     QUIT that finds the marker first deletes nothing and says so), so
//     the lock is free for the mover at once.
//   - RETR and TOP stream the file: LF becomes CRLF, a line starting with
//     '.' gets a second '.', and memory use does not depend on the
//     message's size.
//   - Message names come only from the Maildir listing; a client picks a
//     message by number, never by name.
package pop3
