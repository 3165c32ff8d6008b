package netns

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
	"correo/src/runner"
)

// foreignZone is the Internet domain the relay delivers to: its MX is in
// the outside namespace.
const foreignZone = `$ORIGIN foreign.example.
$TTL 60
@	IN	SOA	ns1.correo.example.	hostmaster.foreign.example.	1 3600 900 1209600 60
@	IN	NS	ns1.correo.example.
@	IN	MX	10 mx.foreign.example.
mx	IN	A	192.0.2.10
`

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

// TestRelaySubmission (scenario 5): a customer on the Internet submits
// through the relay pool with STARTTLS and AUTH to an address at a
// foreign domain; relay1 finds the foreign MX in DNS and delivers there.
// Without AUTH, and through an MX host, relaying is refused.
func TestRelaySubmission(t *testing.T) {
	r := bootExampleWith(t, nil, map[string]string{"foreign.example": foreignZone})
	addUserWithPassword(t, r, "juan", "juan-pw")
	out := r.Netns.Name("outside")

	// The foreign MX listens in the outside namespace; only the listening
	// socket must be created there.
	fmx := &foreignMX{clustertest.MX{Domain: "mx.foreign.example", Rcpt: func(to string) error {
		if !strings.HasSuffix(to, "@foreign.example") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "not here"}
		}
		return nil
	}}}
	var ln net.Listener
	if err := runner.InNetns(out, func() (err error) {
		ln, err = net.Listen("tcp", "192.0.2.10:25")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	fmx.Serve(t, ln)

	// The relay pool, as the customer's mail program finds it.
	var relayAddr string
	err := runner.InNetns(out, func() error {
		m := new(dns.Msg)
		m.SetQuestion("relay.correo.example.", dns.TypeA)
		in, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, "10.77.0.2:53")
		if err != nil || len(in.Answer) == 0 {
			return fmt.Errorf("relay pool: %v %v", in, err)
		}
		relayAddr = in.Answer[0].(*dns.A).A.String()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	port := r.Profile.Port(cluster.SvcSubmission)
	submit := func(auth bool, from, to string) error {
		return runner.InNetns(out, func() error {
			c, err := smtp.Dial(fmt.Sprintf("%s:%d", relayAddr, port))
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
				return err
			}
			if auth {
				if err := c.Auth(smtp.PlainAuth("", "juan", "juan-pw", relayAddr)); err != nil {
					return err
				}
			}
			if err := c.Mail(from); err != nil {
				return err
			}
			if err := c.Rcpt(to); err != nil {
				return err
			}
			w, err := c.Data()
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: saludos\r\nMessage-ID: <relay-1@correo.example>\r\n\r\nhola de afuera\r\n", from, to)
			if err := w.Close(); err != nil {
				return err
			}
			return c.Quit()
		})
	}
	if err := submit(true, "juan@correo.example", "amigo@foreign.example"); err != nil {
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
		if n == 1 && strings.Contains(got, "from=juan@correo.example to=[amigo@foreign.example]") && strings.Contains(got, "hola de afuera") {
			break
		}
		if n > 1 || time.Now().After(deadline) {
			t.Fatalf("the foreign MX got %d messages: %v", n, msgs)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Unauthenticated: refused on the relay, and an MX is no relay.
	if err := submit(false, "juan@correo.example", "amigo@foreign.example"); err == nil || !strings.Contains(err.Error(), "530") {
		t.Errorf("unauthenticated submission: %v, want 530", err)
	}
	if err := submit(true, "presidente@correo.example", "amigo@foreign.example"); err == nil || !strings.Contains(err.Error(), "553") {
		t.Errorf("spoofed sender: %v, want 553", err)
	}
	err = runner.InNetns(out, func() error {
		c, err := smtp.Dial("10.77.0.10:25")
		if err != nil {
			return err
		}
		defer c.Close()
		c.Mail("spammer@outside.example")
		return c.Rcpt("victim@foreign.example")
	})
	if err == nil || !strings.Contains(err.Error(), "554") {
		t.Errorf("relaying through mx1: %v, want 554", err)
	}
	if n := len(fmx.msgs()); n != 1 {
		t.Errorf("the foreign MX got %d messages, want only the authenticated one", n)
	}
}
