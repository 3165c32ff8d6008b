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
//	tmp/         new files being written; emptied at start-up
//	q/ID.msg     the message as received, headers added by smtpd first
//	             (CRLF line ends), followed by the envelope it was
//	             accepted with (JSON, see Envelope) and a fixed-length
//	             trailer "\ncorreo-envelope %08x %08x\n" giving the JSON's
//	             length and the CRC-32C (Castagnoli) of everything before
//	             the trailer; never changed once committed; its presence
//	             in q/ with bytes that match the checksum is the commit
//	             point
//	q/ID.env     the envelope's later state (JSON), written only when an
//	             attempt leaves recipients to retry; replaced atomically
//	free/        files of finished messages kept for reuse (at most 1024
//	             of at most 256 KiB each): they keep their old bytes until a
//	             new message overwrites them, so free/ is as private as q/
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
// A new message is written over a recycled file from free/ or, when there
// is none, into a new file in tmp/; the envelope and trailer follow, the
// file is cut to that length and renamed to q/ID.msg (complete in the page
// cache, so readers never see part of it), then fdatasynced, and then an
// fsync of q/ that began after the rename must have succeeded: only then
// does smtpd answer 250. The rename comes before the data sync so that the
// fsync of q/ another commit starts meanwhile covers it (src/dirsync): a
// commit waits for about one disk flush, not two in a row. A crash between
// the rename and the sync can leave q/ID.msg over bytes that never reached
// the disk (or a recycled file's old ones); that message was never
// acknowledged, and at start-up every message not yet attempted is checked
// against its checksum and, if torn, moved to trash/ with a warning. Recycling matters because allocating an inode
// and blocks is the dearest step of a small write on ext4, and a queue
// file lives only for the seconds its delivery takes.
//
// An attempt that leaves recipients pending writes tmp/ID.env.N, fsyncs it,
// renames it over q/ID.env and fsyncs q/. A finished message leaves q/
// first (renamed into free/ or removed: the commit point), then its
// q/ID.env; a background reaper then fsyncs q/ once for every batch of
// finished messages, and only after that is a file offered for reuse. The worker does not wait for that fsync: a crash before it
// brings the message back and delivers it again (the caveat below). At start-up tmp/ is emptied, a q/ID.env whose message
// is gone (a removal cut short) is removed, and a q/ID.msg with neither a
// q/ID.env nor an envelope at its end (damaged, or a receipt an older
// correo never committed) is logged and moved to trash/. Older correo kept
// every envelope in q/ID.env: such queues are read as they are.
//
// # Crash safety and the exactly-once caveat
//
// kill -9 at any moment loses nothing acknowledged: on restart every
// message in q/ is scheduled again, recipients still "pending" are
// retried, recipients "delivered" or "failed" are not. Each recipient is
// delivered exactly once, except when a crash falls between the storage
// (or remote) host's 250 and the durable update that records it (a new
// q/ID.env, or for a finished message the reaper's fsync of q/ a few
// milliseconds later): that recipient is then delivered again after the
// restart (a duplicate, never a loss: the SMTP rule). Likewise a bounce is queued before the
// envelope records that it was, so a crash between the two can produce a
// second, identical bounce.
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
