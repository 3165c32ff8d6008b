package scenario

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"correo/internal/clustertest"
	"correo/src/cluster"
)

// foreignMX is the receiving MTA of foreign.example; msgs renders what it
// accepted as "from=F to=[R]" and the message on the next line.
type foreignMX struct{ clustertest.MX }

func (f *foreignMX) msgs() []string {
	var out []string
	for _, m := range f.Mails() {
		out = append(out, fmt.Sprintf("from=%s to=%v\n%s", m.From, m.To, m.Body))
	}
	return out
}

// RelaySubmission (the paper's scenario 5): a customer on the Internet
// submits through the relay pool with STARTTLS and AUTH to an address at
// a foreign domain; the relay finds the foreign MX in DNS (ExtraZones)
// and delivers there. Without AUTH, with a sender that is not the
// customer's, and through an MX host, relaying is refused.
//
// Users: jimena. Listens on port 25 of Outside's address while it runs.
func RelaySubmission(t *testing.T, c Cluster) {
	addUserWithPassword(t, c, "jimena", "jimena-pw")

	// The foreign MX listens on Outside; only the listening socket must be
	// created there.
	fmx := &foreignMX{clustertest.MX{Domain: "mx.foreign.example", Rcpt: func(to string) error {
		if !strings.HasSuffix(to, "@foreign.example") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "not here"}
		}
		return nil
	}}}
	var ln net.Listener
	if err := c.In(Outside, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(OutsidePrefix.Addr().String(), "25"))
		return err
	}); err != nil {
		t.Fatalf("the foreign MX on %s: %v", Outside, err)
	}
	fmx.Serve(t, ln)

	// The relay pool, as the customer's mail program finds it.
	var relayAddr string
	server := dnsServer(t, c)
	err := c.In(Outside, func() error {
		m := new(dns.Msg)
		m.SetQuestion("relay."+c.Profile().Cluster.DNS.Zone+".", dns.TypeA)
		in, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, server)
		if err != nil || len(in.Answer) == 0 {
			return fmt.Errorf("relay pool: %v %v", in, err)
		}
		relayAddr = in.Answer[0].(*dns.A).A.String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	port := c.Profile().Port(cluster.SvcSubmission)
	submit := func(auth bool, from, to string) error {
		return c.In(Outside, func() error {
			sc, err := smtp.Dial(fmt.Sprintf("%s:%d", relayAddr, port))
			if err != nil {
				return err
			}
			defer sc.Close()
			if err := sc.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
				return err
			}
			if auth {
				if err := sc.Auth(smtp.PlainAuth("", "jimena", "jimena-pw", relayAddr)); err != nil {
					return err
				}
			}
			if err := sc.Mail(from); err != nil {
				return err
			}
			if err := sc.Rcpt(to); err != nil {
				return err
			}
			w, err := sc.Data()
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: saludos\r\nMessage-ID: <relay-1@correo.example>\r\n\r\nhola de afuera\r\n", from, to)
			if err := w.Close(); err != nil {
				return err
			}
			return sc.Quit()
		})
	}
	if err := submit(true, "jimena@correo.example", "amigo@foreign.example"); err != nil {
		t.Fatalf("authenticated submission: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		msgs := fmx.msgs()
		n := len(msgs)
		var got string
		if n > 0 {
			got = msgs[0]
		}
		if n == 1 && strings.Contains(got, "from=jimena@correo.example to=[amigo@foreign.example]") && strings.Contains(got, "hola de afuera") {
			break
		}
		if n > 1 || time.Now().After(deadline) {
			t.Fatalf("the foreign MX got %d messages: %v", n, msgs)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Unauthenticated: refused on the relay, and an MX is no relay.
	if err := submit(false, "jimena@correo.example", "amigo@foreign.example"); err == nil || !strings.Contains(err.Error(), "530") {
		t.Errorf("unauthenticated submission: %v, want 530", err)
	}
	if err := submit(true, "presidente@correo.example", "amigo@foreign.example"); err == nil || !strings.Contains(err.Error(), "553") {
		t.Errorf("spoofed sender: %v, want 553", err)
	}
	mx1 := addr(t, c, "mx1", cluster.SvcSMTP)
	err = c.In(Outside, func() error {
		sc, err := smtp.Dial(mx1)
		if err != nil {
			return err
		}
		defer sc.Close()
		sc.Mail("spammer@outside.example")
		return sc.Rcpt("victim@foreign.example")
	})
	if err == nil || !strings.Contains(err.Error(), "554") {
		t.Errorf("relaying through mx1: %v, want 554", err)
	}
	if n := len(fmx.msgs()); n != 1 {
		t.Errorf("the foreign MX got %d messages, want only the authenticated one", n)
	}
}
