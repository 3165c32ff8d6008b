// Package mailmove moves one user's mailbox between storage hosts while
// it stays in use: pdeliveryd on every storage host serves the protocol
// (Server), and `correoctl mailbox move` drives it (Mover).
//
// # Steps (Mover.Move)
//
//  1. copy: the target pulls the Maildir from the source into a stage
//     (data_dir/.correo-moves/in/USER) while the mailbox is live;
//     a second live pass shrinks what the frozen pass must copy.
//  2. freeze: passwdd marks the user moving (new deliveries at the MX
//     hosts get 451 and stay queued; logins through the proxies are
//     refused), then the source writes mailbox.MovingMarker in the
//     Maildir and waits out what was already changing it: deliveries in
//     its own process (mailbox.Gate), pop3d's session lock and every
//     folder's mailstore lock, whose holders end their sessions when
//     they see the marker. Past cluster.moves.freeze_timeout the move
//     is rolled back.
//  3. delta: the target pulls again, then verifies: the same files with
//     the same names, sizes, mtimes and modes; every file's SHA-256 was
//     checked as it arrived.
//  4. commit: the target renames the stage to the user's Maildir.
//  5. switch: passwdd gets the new storage host and the state active.
//  6. retire: the source marks its copy moved; it stays frozen (every
//     program that would change it refuses) until the janitor deletes
//     it after cluster.moves.grace.
//
// Every step is written to a journal (cluster.moves.journal_dir) before
// it is taken, and every step is idempotent, so `correoctl mailbox move
// -resume` finishes a move that was interrupted anywhere, and -abort rolls
// back one that has not reached its commit. A mailbox is never served by
// two hosts: the target's copy becomes the Maildir only after the source
// is frozen, and the directory points at it only after that.
//
// # Protocol
//
// A TCP connection to the storage host's mailbox_move port, sealed and
// authenticated with the cluster key (pwproto.Stream). The client sends
// one Request frame at a time; the server answers with zero or more
// data frames and one Response frame:
//
//	manifest  (source) the Maildir's mailtree.Manifest, in kindManifest chunks
//	fetch     (source) for each requested file: kindFile, kindData..., kindFileEnd
//	freeze    (source) write the marker and wait out changes in progress
//	thaw      (source) remove the marker of a move that did not finish
//	retire    (source) mark the copy moved, for the janitor
//	pull      (target) copy from the source into the stage; kindProgress frames
//	verify    (target) compare the stage with the source's manifest
//	commit    (target) the stage becomes the user's Maildir
//	abort     (target) remove the stage
//	status    (either) what this host holds of the user's mailbox
package mailmove
