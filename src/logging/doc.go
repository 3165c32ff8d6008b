// Package logging sets up log/slog for every correo daemon: one call to New at
// start, then plain slog calls everywhere else.
//
// # Targets
//
//   - "stderr": one logfmt line per event (time=… level=… msg=… trace=… k=v).
//     Right for tests, for foreground runs and for systemd units, where
//     journald already captures stderr.
//   - "journald": native journal entries with fields (TRACE,
//     SYSLOG_IDENTIFIER, CORREO_<KEY>), so `journalctl TRACE=…` finds a
//     message's whole history on a host.
//   - "syslog": to the cluster loghost (rsyslog) over "udp" (RFC 5426) or
//     "tcp" (RFC 6587), as RFC 5424 messages; or over "unix" to the local
//     /dev/log socket.
//
// # Why a bounded queue that drops
//
// Logging is a side channel: a daemon that stops accepting mail because the
// loghost is down or slow has turned a monitoring outage into a mail outage.
// So network sinks never write on the caller's goroutine. Records go into a
// fixed-size queue drained by one writer goroutine; when the queue is full, or
// while the loghost is unreachable, records are dropped and counted
// (Logger.Dropped) instead of blocking or growing memory without bound. The
// writer puts deadlines on every dial and write, reconnects with capped,
// jittered backoff (so a cluster of daemons does not reconnect in lockstep
// when the loghost comes back), and reports the first drop of an outage
// once on stderr, rate-limited, because a line per lost record would flood
// the very channel that still works. Nothing here returns an error to a
// logging call or panics on bad attribute values.
//
// # Why octet counting on TCP
//
// RFC 6587 allows two framings: a trailing LF, or "LEN SP MSG". LF framing
// breaks as soon as a message contains a newline and cannot be resynchronised
// by the receiver; octet counting is unambiguous, is what RFC 5425 mandates for
// TLS, and rsyslog's imtcp detects it automatically. We also escape newlines
// in every value, so each event is one line in any case.
//
// # Why RFC 3164 style on /dev/log
//
// Local syslog daemons (rsyslog's imuxsock, journald's syslog socket, and the
// glibc syslog(3) they were written for) expect the traditional
// "<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG" on /dev/log; journald derives
// SYSLOG_IDENTIFIER and SYSLOG_PID from that TAG[PID] prefix and would store an
// RFC 5424 header as part of the message text. The local daemon adds the host
// name itself, so none is sent. The trace id travels as a trace=… field in MSG.
//
// # Trace ids
//
// A trace id (NewTraceID: 16 lowercase base32 characters, 80 random bits)
// follows one message or session across hosts: smtpd creates it, passes it on
// (e.g. in the LMTP exchange or a header), and every daemon attaches it to its
// context with WithTrace. Handlers read it from the context given to
// InfoContext & co. and log it under the attribute key "trace"; in RFC 5424
// output it goes into the structured data element
//
//	[correo@32473 trace="…"]
//
// (32473 is the example Private Enterprise Number of RFC 5612, until correo
// registers its own), so rsyslog can filter on it without parsing MSG. A
// top-level attribute named "trace" (l.With("trace", id)) is treated the same
// way when the context carries none. A top-level attribute "msgid" becomes the
// RFC 5424 MSGID.
package logging
