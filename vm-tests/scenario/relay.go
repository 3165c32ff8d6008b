package scenario

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/smtp"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"correo/internal/clustertest"
	"correo/internal/testutil"
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
// and delivers there, DKIM-signed with keys that Python's dkimpy finds in
// the cluster DNS (Adjust publishes them). Without AUTH, with a sender that is not the
// customer's, and through an MX host, relaying is refused.
//
// Users: jimena. Listens on port 25 of Outside's address while it runs.
// Needs python3 with dkimpy and nacl (python3-dkim, python3-nacl) on this
// machine (Outside's programs).
func RelaySubmission(t *testing.T, c Cluster) {
	testutil.NeedCommand(t, debianPython)
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

	// Signed by the relay with both of the domain's keys, and verified by
	// an Internet receiver against the cluster's own DNS; the same message
	// with its body changed is not.
	verifyDKIM(t, c, []byte(fmx.Mails()[0].Body), "correo.example")

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

// debianPython is the python3 that python3-dkim is installed for; one
// earlier on PATH (pyenv's) may lack the module.
const debianPython = "/usr/bin/python3"

// dkimVerify prints, for each DKIM-Signature of the message on stdin, its
// d=, s= and a= and whether dkimpy verifies it with the key it looks up
// in DNS (the host's resolver: the cluster DNS).
const dkimVerify = `import dkim, sys
msg = sys.stdin.buffer.read()
head = msg.split(b"\r\n\r\n", 1)[0]
n = sum(1 for l in head.split(b"\r\n") if l.lower().startswith(b"dkim-signature:"))
for i in range(n):
    try:
        print(i, dkim.DKIM(msg).verify(idx=i))
    except dkim.DKIMException as e:
        print(i, False, e)
`

// verifyDKIM checks that msg carries an Ed25519 and an RSA signature of
// domain that dkimpy verifies from Outside, and that neither verifies
// once the body is changed.
func verifyDKIM(t *testing.T, c Cluster, msg []byte, domain string) {
	t.Helper()
	// In CRLF form whatever the receiver kept: the form DKIM signs.
	msg = bytes.ReplaceAll(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	hdr, _, _ := strings.Cut(string(msg), "\r\n\r\n")
	for _, alg := range []string{"ed25519-sha256", "rsa-sha256"} {
		if !regexp.MustCompile(`(?is)DKIM-Signature:[^\r]*(\r\n[ \t][^\r]*)*\ba=`+alg+`;`).MatchString(hdr) ||
			!strings.Contains(hdr, "d="+domain+";") {
			t.Errorf("no %s signature of %s in the relayed header:\n%s", alg, domain, hdr)
		}
	}
	check := func(m []byte) string {
		t.Helper()
		out, err := run(c, Outside, bytes.NewReader(m), debianPython, "-c", dkimVerify)
		if err != nil {
			t.Fatalf("dkimpy on %s: %v\n%s", Outside, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := check(msg); got != "0 True\n1 True" {
		t.Errorf("dkimpy against the cluster DNS: %q, want both signatures to verify; header:\n%s", got, hdr)
	}
	tampered := bytes.Replace(msg, []byte("hola de afuera"), []byte("hola de adentro"), 1)
	if got := check(tampered); !regexp.MustCompile(`^0 False.*\n1 False`).MatchString(got) {
		t.Errorf("dkimpy with the body changed: %q, want both signatures to fail", got)
	}
}
