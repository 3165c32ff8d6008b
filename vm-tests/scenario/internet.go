package scenario

import (
	"bytes"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/internal/testutil"
)

// startOutsidePostfix runs a private Postfix on Outside: a sender's relay
// on the Internet that finds the cluster's MX hosts through the cluster
// DNS. Its files stay on this machine (Command on Outside runs this
// machine's programs), where the test reads its queue and log.
func startOutsidePostfix(t *testing.T, c Cluster) *clustertest.Postfix {
	t.Helper()
	return clustertest.StartPostfix(t, clustertest.PostfixConfig{
		Listen: OutsidePrefix.Addr().String(),
		Main: map[string]string{
			"myhostname":             "relay.outside.example",
			"mydomain":               "outside.example",
			"mynetworks":             OutsidePrefix.Masked().String(),
			"smtp_dns_support_level": "enabled",
			"smtp_host_lookup":       "dns",
			// Each message picks an MX afresh, so equal preferences share
			// the load as they would across many senders.
			"smtp_connection_cache_on_demand": "no",
			"smtp_tls_security_level":         "may",
		},
		Wrap: func(argv []string) []string { return c.Command(Outside, argv...) },
		Ready: func(addr string) error {
			return c.In(Outside, func() error {
				conn, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					conn.Close()
				}
				return err
			})
		},
	})
}

// InternetMailToPOP (the paper's scenarios 1 and 2): a real Postfix on
// the Internet sends mail to the cluster's users, finding the MX hosts in
// the cluster DNS; both MX hosts take some; every message lands in its
// user's Maildir under the hashed path on the right storage host; it is
// fetched through the pop pool name with curl and Python's poplib byte for
// byte; and one message's trace id is in the central log from the MX, the
// storage host and the POP proxy.
//
// Users: andrea, julian, zulema, marta, pablo, sara. Needs postfix, curl
// and python3 on this machine (Outside's programs).
func InternetMailToPOP(t *testing.T, c Cluster) {
	testutil.NeedCommand(t, "postfix")
	testutil.NeedCommand(t, "curl")
	testutil.NeedCommand(t, "python3")
	p := c.Profile()
	mark := logMark(t, c)
	users := []string{"andrea", "julian", "zulema", "marta", "pablo", "sara"}
	for _, u := range users {
		addUserWithPassword(t, c, u, u+"-pw")
	}
	pf := startOutsidePostfix(t, c)

	const perUser = 5
	err := c.In(Outside, func() error {
		sc, err := smtp.Dial(pf.Addr())
		if err != nil {
			return err
		}
		defer sc.Quit()
		for i := 0; i < perUser; i++ {
			for _, u := range users {
				id := fmt.Sprintf("%s-%d@outside.example", u, i)
				msg := fmt.Sprintf("From: someone@outside.example\r\nTo: %s@correo.example\r\nSubject: hola %d\r\nMessage-ID: <%s>\r\n\r\nline one\r\n.leading dot\r\nline %d\r\n", u, i, id, i)
				if err := sc.Mail("someone@outside.example"); err != nil {
					return err
				}
				if err := sc.Rcpt(u + "@correo.example"); err != nil {
					return err
				}
				w, err := sc.Data()
				if err != nil {
					return err
				}
				w.Write([]byte(msg))
				if err := w.Close(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("submitting to the outside Postfix: %v", err)
	}
	pf.WaitQueueEmpty(t, 90*time.Second)

	// Every message in its user's Maildir on the host passwdd names.
	for _, u := range users {
		host := lookup(t, c, u).Storage
		deadline := time.Now().Add(30 * time.Second)
		for maildirCount(t, c, host, u) < perUser && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if n := maildirCount(t, c, host, u); n != perUser {
			t.Fatalf("%s on %s has %d messages, want %d", u, host, n, perUser)
		}
		if md := maildir(t, c, host, u); !strings.Contains(md, "/"+u[:1]+"/"+u[1:2]+"/"+u[2:3]+"/"+u+"/") {
			t.Errorf("%s's Maildir %s is not under the first3 hashed path", u, md)
		}
	}
	// Both MX hosts took some, as DNS round robin promises.
	maillog, _ := os.ReadFile(pf.LogFile)
	for _, mx := range []string{"mx1", "mx2"} {
		relay := fmt.Sprintf("relay=%s.%s[%s]", mx, p.Cluster.DNS.Zone, addrOf(t, c, mx))
		if !bytes.Contains(maillog, []byte(relay)) {
			t.Errorf("the outside Postfix never delivered to %s (no %q in its log)", mx, relay)
		}
	}

	// Fetched through the pop pool from outside, byte for byte.
	for _, u := range users[:3] {
		msgs, err := popFetch(c, u, u+"-pw")
		if err != nil || len(msgs) != perUser {
			t.Fatalf("poplib for %s: %d messages, %v", u, len(msgs), err)
		}
		stored := storedMessages(t, c, u)
		for i, m := range msgs {
			if _, ok := stored[string(m)]; !ok {
				t.Errorf("poplib message %d of %s is not byte-equal to any stored message:\n%s", i+1, u, m)
			}
		}
		out, err := run(c, Outside, nil, "curl", "-s", "--ssl-reqd", "-k", "-u", u+":"+u+"-pw", "pop3://pop."+p.Cluster.DNS.Zone+"/1")
		if err != nil {
			t.Fatalf("curl for %s: %v", u, err)
		}
		if _, ok := stored[strings.ReplaceAll(string(out), "\r\n", "\n")]; !ok {
			t.Errorf("curl's message 1 of %s is not byte-equal to a stored message:\n%s", u, out)
		}
	}

	// Scenario 2: one message's trace id in the central log from the MX
	// that took it, the storage host that stored it and the POP proxy
	// that handed it out — among this scenario's lines.
	deadline := time.Now().Add(20 * time.Second)
	for {
		since := logSince(c, mark)
		if id, where := followedTrace(since); id != "" {
			t.Logf("trace %s: %s", id, where)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no trace id is logged by smtpd, pdeliveryd and mailproxy together; all.log since the scenario began:\n%s", since)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// addrOf is host's address in the profile.
func addrOf(t *testing.T, c Cluster, host string) string {
	t.Helper()
	h, err := c.Profile().Host(host)
	if err != nil {
		t.Fatal(err)
	}
	return h.Addr().String()
}

// followedTrace finds a trace id logged by smtpd on an MX host, by
// pdeliveryd on a storage host and by mailproxy, and says where.
func followedTrace(all []byte) (string, string) {
	byID := map[string]map[string]string{} // id → program → host
	re := regexp.MustCompile(`^\S+ (\S+) (\w+)\[\d+\] \S+ \[correo@32473 trace="([^"]+)"\]`)
	for _, line := range strings.Split(string(all), "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if byID[m[3]] == nil {
			byID[m[3]] = map[string]string{}
		}
		byID[m[3]][m[2]] = m[1]
	}
	for id, progs := range byID {
		if progs["smtpd"] != "" && progs["pdeliveryd"] != "" && progs["mailproxy"] != "" {
			return id, fmt.Sprintf("smtpd on %s, pdeliveryd on %s, mailproxy on %s", progs["smtpd"], progs["pdeliveryd"], progs["mailproxy"])
		}
	}
	return "", ""
}
