package clustertest

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// MX is a recording SMTP server (go-smtp) standing for a mail host on the
// Internet in tests of remote delivery. Set the fields before serving.
type MX struct {
	Domain string      // the name it greets with (default "mx.test")
	TLS    *tls.Config // offers STARTTLS when set
	// Rcpt and Data decide the replies (nil accepts); Data is given the
	// number of DATA commands so far, from 1.
	Rcpt func(to string) error
	Data func(n int) error

	mu    sync.Mutex
	mails []Mail
	conns map[*smtp.Conn]bool
	nData int
}

// Mail is one message an MX accepted.
type Mail struct {
	From string
	To   []string
	Body string
	TLS  bool // received after STARTTLS
}

// Listen serves addr until the test ends.
func (m *MX) Listen(t testing.TB, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	m.Serve(t, ln)
}

// Serve serves ln (made by the caller, say in another network namespace)
// until the test ends.
func (m *MX) Serve(t testing.TB, ln net.Listener) {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		m.mu.Lock()
		if m.conns == nil {
			m.conns = map[*smtp.Conn]bool{}
		}
		m.conns[c] = true
		m.mu.Unlock()
		return &mxSession{m: m, c: c}, nil
	}))
	srv.Domain = m.Domain
	if srv.Domain == "" {
		srv.Domain = "mx.test"
	}
	srv.TLSConfig = m.TLS
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// Mails returns what it accepted so far, in order.
func (m *MX) Mails() []Mail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Mail(nil), m.mails...)
}

// Sessions counts the connections it served: go-smtp starts a new session
// after STARTTLS on the same connection, which is not counted again.
func (m *MX) Sessions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

type mxSession struct {
	m    *MX
	c    *smtp.Conn
	from string
	to   []string
}

func (s *mxSession) Reset()        { s.from, s.to = "", nil }
func (s *mxSession) Logout() error { return nil }
func (s *mxSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *mxSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.m.Rcpt != nil {
		if err := s.m.Rcpt(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *mxSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	s.m.nData++
	if s.m.Data != nil {
		if err := s.m.Data(s.m.nData); err != nil {
			return err
		}
	}
	_, isTLS := s.c.TLSConnectionState()
	s.m.mails = append(s.m.mails, Mail{From: s.from, To: append([]string(nil), s.to...), Body: string(b), TLS: isTLS})
	return nil
}
