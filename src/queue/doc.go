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
//	tmp/         files being written; emptied at start-up
//	q/ID.msg     the message as received, headers added by smtpd first
//	             (CRLF line ends); never changed once committed
//	q/ID.env     the envelope: JSON (see Envelope), replaced atomically
//	             on every state change; its presence is the commit point
//	ctl/         requests from `correoctl queue` to the running process:
//	             "flush", "delete.ID"; each is removed once done
//	trash/       ID.msg + ID.env of deleted messages; nothing reads it
//
// IDs (NewID) are 20 lower-case hex digits: 13 of microseconds since 1970
// then 7 of a per-process counter seeded at random. They sort by arrival,
// are unique within a host, and are safe as file names.
//
// # Write discipline
//
// A new message is written to tmp/, fsynced, its envelope likewise; both
// are renamed into q/ and q/ is fsynced: only then does smtpd answer 250.
// An update writes tmp/ID.env.N, fsyncs it, renames it over q/ID.env and
// fsyncs q/. A finished message has its envelope removed first, then its
// message file, then q/ is fsynced. At start-up tmp/ is emptied, a .msg
// without a .env (a crash before the commit: never acknowledged) is
// removed, and a .env without its .msg is logged and moved to trash/.
//
// # Crash safety and the exactly-once caveat
//
// kill -9 at any moment loses nothing acknowledged: on restart every
// envelope in q/ is scheduled again, recipients still "pending" are
// retried, recipients "delivered" or "failed" are not. Each recipient is
// delivered exactly once, except when a crash falls between the storage
// (or remote) host's 250 and the durable envelope update that records it:
// that recipient is then delivered again after the restart (a duplicate,
// never a loss: the SMTP rule). Likewise a bounce is queued before the
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
