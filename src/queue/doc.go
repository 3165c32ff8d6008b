// Package queue is smtpd's durable on-disk mail queue, shared by the mx
// and relay roles. A message is accepted (SMTP 250) only once it is here;
// from then on it is delivered or bounced to its sender, each recipient
// once.
//
// # On-disk format
//
// Everything lives under one directory (smtpd: <state>/queue):
//
//	lock         flock(2)ed by the process that runs the queue (smtpd)
//	slots/NNNNNNNN  one message each, reused: a 64-byte header (queue
//	             id, lengths, CRC-32C, and a state byte that says whether
//	             it holds a queued message), the message as received
//	             (headers added by smtpd first, CRLF line ends), then the
//	             envelope it was accepted with (JSON, see Envelope); see
//	             slot.go for the exact layout
//	q/ID.env     the envelope's later state (JSON), written only when an
//	             attempt leaves recipients to retry; replaced atomically
//	q/ID.msg     a message queued by an earlier correo (message, envelope,
//	             trailer, or the message alone with its q/ID.env): still
//	             delivered, never written
//	tmp/         state files being written; emptied at start-up
//	ctl/         requests from `correoctl queue` to the running process:
//	             "flush", "delete.ID"; each is removed once done
//	trash/       ID.msg (+ ID.env) of deleted or unreadable messages;
//	             nothing reads it
//
// IDs (NewID) are 20 lower-case hex digits: 13 of microseconds since 1970
// then 7 of a per-process counter seeded at random. They sort by arrival,
// are unique within a host, and are safe as file names.
//
// # Write discipline
//
// A new message is written over a free slot (kept open; a new file in
// slots/ only when none is free): header, message and envelope in one
// write for most mail, then one fdatasync; only then does smtpd answer 250.
// Nothing is created, renamed or removed, so the sync is a data write and
// a disk flush: no inode, no directory change, and usually no journal
// commit (the slot keeps its blocks and, unless the message is larger than
// any it held, its size). A new slot file also waits for an fsync of
// slots/, shared with concurrent commits (src/dirsync). A crash before the
// fdatasync returns can leave a header over bytes that never reached the
// disk: that message was never acknowledged, and at start-up every slot
// not yet attempted is checked against its checksum and, if torn, copied
// to trash/ with a warning and freed. Recycling matters because allocating
// an inode and blocks is the dearest step of a small write on ext4, and a
// queued message lives only for the seconds its delivery takes.
//
// An attempt that leaves recipients pending writes tmp/ID.env.N, fsyncs it,
// renames it over q/ID.env and fsyncs q/. A finished message's slot is
// marked free (one byte; the commit point), then its q/ID.env is removed,
// and the slot is reused at once: the next commit overwrites the header
// and is itself synced. A background reaper makes the marks durable with
// one syncfs(2) a second while messages finish; the worker
// does not wait for it: a machine crash before it brings the message back
// and delivers it again (the caveat below); kill -9 does not, since the
// mark is in the page cache. At start-up tmp/ is emptied, a q/ID.env whose
// message is gone (a removal cut short) is removed, and a message whose
// slot or file cannot be read is logged and moved to trash/. Queues of
// earlier correo versions (q/ID.msg files, and free/, which is emptied)
// are read as they are.
//
// # Crash safety and the exactly-once caveat
//
// kill -9 at any moment loses nothing acknowledged: on restart every
// message in q/ is scheduled again, recipients still "pending" are
// retried, recipients "delivered" or "failed" are not. A crash between
// the next hop's 250 and the update that records it (a new q/ID.env, or
// for a finished message the free mark on its slot; after a machine
// crash also marks written in the second before the reaper's sync) sends
// that recipient again after the restart. For the cluster's own
// mailboxes that is harmless: every attempt carries the message's
// delivery key (queue id and trace id, the same on every retry; package
// dedup), and the storage host that stored it answers 250 again without
// a second copy. A remote MX has no such key, so a remote recipient is
// then delivered twice (a duplicate, never a loss: the SMTP rule).
// Likewise a bounce is queued before the envelope records that it was, so
// a crash between the two can produce a second, identical bounce.
//
// # Delivery
//
// Workers take due messages and hand their pending recipients to a
// Deliverer chosen by each recipient's Route: Local (a *delivery.Deliverer:
// LMTP to the storage hosts) or Remote (the relay role's MX client; nil on
// an mx host). Results: delivered → done; permanent → failed and bounced;
// temporary → retried after the profile's next back-off step, until the
// lifetime since arrival has passed, then failed and bounced. A bounce is
// an RFC 3464 delivery status notification queued to the envelope sender
// with the null sender; a message whose sender is null is never bounced.
// Each recipient outcome is logged once with the message's trace id.
package queue
