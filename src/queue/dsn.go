package queue

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"
)

// maxReturnedHeaders bounds the original header section attached to a
// DSN: the headers are what the sender needs to recognise the message.
const maxReturnedHeaders = 64 << 10

type dsnInput struct {
	env      *Envelope
	failed   []int
	orig     io.Reader
	hostname string
	now      time.Time
	id       string
	trace    string
}

// writeDSN writes an RFC 3464 delivery status notification (RFC 6522
// multipart/report) for the failed recipients: a human-readable part, the
// machine-readable message/delivery-status part, and the original header
// section as text/rfc822-headers (RFC 3462: the body is not returned,
// which keeps bounces small and never re-sends content to a forged
// sender). CRLF line ends, like every queue file.
func writeDSN(w io.Writer, in dsnInput) {
	e := in.env
	boundary := "correo-dsn-" + in.id
	date := in.now.Format(time.RFC1123Z)
	var b strings.Builder
	line := func(format string, a ...any) {
		fmt.Fprintf(&b, format, a...)
		b.WriteString("\r\n")
	}
	line("Received: by %s (correo smtpd) id %s (trace %s); %s", in.hostname, in.id, in.trace, date)
	line("X-Correo-Trace: %s", in.trace)
	line("From: Mail Delivery System <MAILER-DAEMON@%s>", in.hostname)
	line("To: <%s>", e.From)
	line("Subject: Undelivered Mail Returned to Sender")
	line("Date: %s", date)
	line("Message-ID: <%s.dsn@%s>", in.id, in.hostname)
	line("Auto-Submitted: auto-replied")
	line("MIME-Version: 1.0")
	line("Content-Type: multipart/report; report-type=delivery-status;")
	line("\tboundary=\"%s\"", boundary)
	line("")
	line("This is a MIME-encapsulated message.")
	line("")
	line("--%s", boundary)
	line("Content-Type: text/plain; charset=us-ascii")
	line("Content-Description: Notification")
	line("")
	line("This is the mail system at host %s.", in.hostname)
	line("")
	line("Your message (queue id %s, trace %s) could not be delivered to", e.ID, e.Trace)
	line("the recipients below. The headers of your message are attached.")
	line("")
	for _, i := range in.failed {
		r := e.Rcpts[i]
		if r.Expired {
			line("<%s>: not delivered for %s, giving up; last error: %s", r.Addr, in.now.Sub(e.Created).Round(time.Second), diag(r))
		} else {
			line("<%s>: %s", r.Addr, diag(r))
		}
	}
	line("")
	line("--%s", boundary)
	line("Content-Type: message/delivery-status")
	line("Content-Description: Delivery report")
	line("")
	line("Reporting-MTA: dns; %s", in.hostname)
	line("X-Correo-Queue-ID: %s", e.ID)
	line("Arrival-Date: %s", e.Created.Format(time.RFC1123Z))
	for _, i := range in.failed {
		r := e.Rcpts[i]
		line("")
		line("Final-Recipient: rfc822; %s", r.Addr)
		line("Action: failed")
		line("Status: %s", dsnStatus(r))
		if r.Host != "" {
			line("Remote-MTA: dns; %s", r.Host)
		}
		if r.Code != 0 {
			line("Diagnostic-Code: smtp; %s", diag(r))
		}
		if !r.Updated.IsZero() {
			line("Last-Attempt-Date: %s", r.Updated.Format(time.RFC1123Z))
		}
	}
	line("")
	line("--%s", boundary)
	line("Content-Type: text/rfc822-headers")
	line("Content-Description: Undelivered message headers")
	line("")
	io.WriteString(w, b.String())
	writeHeaders(w, in.orig)
	io.WriteString(w, "\r\n--"+boundary+"--\r\n")
}

// diag is a recipient's last reply as one line of printable ASCII.
func diag(r Recipient) string {
	s := fmt.Sprintf("%d", r.Code)
	if r.Enhanced != "" {
		s += " " + r.Enhanced
	}
	s += " " + r.Text
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = '?'
		}
	}
	return string(b)
}

// dsnStatus is the RFC 3463 status of a failure: the reply's enhanced
// code when it is a 5.x.x, 4.4.7 (delivery time expired) for an
// expired recipient, else derived from the reply code.
func dsnStatus(r Recipient) string {
	switch {
	case r.Expired:
		return "4.4.7"
	case strings.HasPrefix(r.Enhanced, "5."):
		return r.Enhanced
	default:
		return "5.0.0"
	}
}

// writeHeaders copies the header section of msg (up to the first empty
// line, at most maxReturnedHeaders), with CRLF line ends.
func writeHeaders(w io.Writer, msg io.Reader) {
	br := bufio.NewReader(io.LimitReader(msg, maxReturnedHeaders))
	for {
		l, err := br.ReadBytes('\n')
		l = bytes.TrimRight(l, "\r\n")
		if len(l) == 0 {
			return
		}
		w.Write(l)
		io.WriteString(w, "\r\n")
		if err != nil {
			return
		}
	}
}
