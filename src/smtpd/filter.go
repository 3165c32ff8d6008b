package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/emersion/go-smtp"

	"correo/src/mailauth"
	"correo/src/milter"
)

// Filter sees a whole message after DATA and before it is queued: mail
// authentication on the mx, DKIM signing for the cluster's own senders.
// A Filter decides from the Session whether the message is its business.
type Filter interface {
	Name() string
	Filter(ctx context.Context, m *FilterInput) (Verdict, error)
}

// FilterInput is one received message.
type FilterInput struct {
	Session *Session
	From    string   // the reverse-path, "" for the null sender
	Rcpts   []string // the accepted recipients
	Trace   string
	QueueID string
	// Open returns the message as received, from its first byte, as
	// often as a filter needs it.
	Open func() io.ReadSeeker
}

// Verdict is a filter's word on a message. The zero Verdict passes it
// unchanged.
type Verdict struct {
	// Reject answers the DATA with this error (4xx or 5xx) instead of
	// queueing the message.
	Reject *smtp.SMTPError
	// Prepend is header fields to put on top (each ending in CRLF).
	Prepend string
	// StripAuthResults removes the Authentication-Results fields that
	// carry this authserv-id (ours, forged by the sender).
	StripAuthResults string
	// Quarantine files the message in the recipients' Junk folder.
	Quarantine bool
	// Discard answers 250 and drops the message (a milter's discard).
	Discard bool
	// Changes are a milter's header changes, applied to the message as
	// received (milter.Rewrite).
	Changes []milter.HeaderChange
}

// FolderHeader tells pdeliveryd to file a message in a folder (only
// "Junk"); smtpd writes it right before its X-Correo-Trace, where no
// sender can put one.
const FolderHeader = "X-Correo-Folder"

// spool holds a message while filters look at it: in memory up to
// spoolMemory, then in an unlinked temporary file.
type spool struct {
	dir  string
	mem  bytes.Buffer
	file *os.File
}

const spoolMemory = 1 << 20

// errSpool marks a failure of the spool's own disk, not of the message.
var errSpool = errors.New("spooling a message for its filters")

func (s *spool) Write(p []byte) (int, error) {
	if s.file == nil && s.mem.Len()+len(p) <= spoolMemory {
		return s.mem.Write(p)
	}
	if s.file == nil {
		f, err := os.CreateTemp(s.dir, "spool-*")
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errSpool, err)
		}
		os.Remove(f.Name())
		if _, err := f.Write(s.mem.Bytes()); err != nil {
			f.Close()
			return 0, fmt.Errorf("%w: %w", errSpool, err)
		}
		s.mem = bytes.Buffer{}
		s.file = f
	}
	n, err := s.file.Write(p)
	if err != nil {
		err = fmt.Errorf("%w: %w", errSpool, err)
	}
	return n, err
}

func (s *spool) open() io.ReadSeeker {
	if s.file == nil {
		return bytes.NewReader(s.mem.Bytes())
	}
	size, _ := s.file.Seek(0, io.SeekEnd)
	return io.NewSectionReader(s.file, 0, size)
}

func (s *spool) close() {
	if s.file != nil {
		s.file.Close()
	}
}

// runFilters runs the listener's filters in order and merges their
// verdicts: the first reject wins; prepends accumulate, the later
// filter's on top (a DKIM signature, last, covers nothing above it).
func (ss *session) runFilters(ctx context.Context, in *FilterInput) (Verdict, error) {
	var out Verdict
	for _, f := range ss.l.Policy.Filters {
		v, err := f.Filter(ctx, in)
		if err != nil {
			return Verdict{}, fmt.Errorf("%s: %w", f.Name(), err)
		}
		if v.Reject != nil || v.Discard {
			return v, nil
		}
		out.Changes = append(out.Changes, v.Changes...)
		out.Prepend = v.Prepend + out.Prepend
		out.Quarantine = out.Quarantine || v.Quarantine
		if v.StripAuthResults != "" {
			out.StripAuthResults = v.StripAuthResults
		}
	}
	return out, nil
}

// writeFiltered copies the spooled message into the queue file with the
// verdict applied: its fields on top, forged Authentication-Results
// removed from the header.
func writeFiltered(w io.Writer, msg io.Reader, v Verdict, maxHeader int) error {
	if _, err := io.WriteString(w, v.Prepend); err != nil {
		return err
	}
	if len(v.Changes) > 0 {
		pr, pw := io.Pipe()
		go func(src io.Reader) { pw.CloseWithError(milter.Rewrite(pw, src, v.Changes)) }(msg)
		defer pr.Close()
		msg = pr
	}
	if v.StripAuthResults == "" {
		_, err := io.Copy(w, msg)
		return err
	}
	br := bufio.NewReader(msg)
	hdr, err := mailauth.ReadHeader(br, maxHeader)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if _, err := w.Write(mailauth.StripForged(hdr, v.StripAuthResults)); err != nil {
		return err
	}
	_, err = io.Copy(w, br)
	return err
}

// folderLine is the FolderHeader field for a quarantined message.
func folderLine(v Verdict) string {
	if !v.Quarantine {
		return ""
	}
	return FolderHeader + ": Junk\r\n"
}

// inNetwork reports whether the session comes from the cluster's own
// network (its hosts' mail, relayed without AUTH).
func (s *Server) inNetwork(sess *Session) bool {
	n := s.cfg.Profile.NetworkPrefix()
	return n.IsValid() && sess.Client.IsValid() && n.Contains(sess.Client)
}

func lowerDomain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}
