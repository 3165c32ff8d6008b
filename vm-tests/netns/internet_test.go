package netns

import (
	"bytes"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/runner"
)

// startOutsidePostfix runs a private Postfix in the outside namespace: a
// sender's relay on the Internet that finds the cluster's MX hosts
// through the cluster DNS.
func startOutsidePostfix(t *testing.T, r *runner.Runner) *clustertest.Postfix {
	t.Helper()
	ns := r.Netns.Name("outside")
	return clustertest.StartPostfix(t, clustertest.PostfixConfig{
		Listen: "192.0.2.10",
		Main: map[string]string{
			"myhostname":             "relay.outside.example",
			"mydomain":               "outside.example",
			"mynetworks":             "192.0.2.0/24",
			"smtp_dns_support_level": "enabled",
			"smtp_host_lookup":       "dns",
			// Each message picks an MX afresh, so equal preferences share
			// the load as they would across many senders.
			"smtp_connection_cache_on_demand": "no",
			"smtp_tls_security_level":         "may",
		},
		Wrap: func(argv []string) []string {
			return append([]string{"ip", "netns", "exec", ns, "unshare", "-m", "--propagation", "private",
				"sh", "-c", `mount --bind "$1" /etc/resolv.conf && shift && exec "$@"`, "sh", r.OutsideResolv()}, argv...)
		},
		Ready: func(addr string) error {
			return runner.InNetns(ns, func() error {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					c.Close()
				}
				return err
			})
		},
	})
}

// TestInternetMailToPOP (scenarios 1 and 2): a real Postfix on the
// "Internet" sends mail to the cluster's users, finding the MX hosts in
// the cluster DNS; both MX hosts take some; every message lands in its
// user's Maildir under the hashed path on the right storage host; it is
// fetched through the pop pool name with curl and Python's poplib byte
// for byte; and one message's trace id is in the central log from the MX,
// the storage host and the POP proxy.
func TestInternetMailToPOP(t *testing.T) {
	testutil.NeedCommand(t, "postfix")
	testutil.NeedCommand(t, "curl")
	r := bootExample(t)
	users := []string{"ana", "juan", "zoe", "mara", "pedro", "sol"}
	for _, u := range users {
		addUserWithPassword(t, r, u, u+"-pw")
	}
	pf := startOutsidePostfix(t, r)

	const perUser = 5
	sent := map[string][]string{} // user → Message-IDs
	err := runner.InNetns(r.Netns.Name("outside"), func() error {
		c, err := smtp.Dial(pf.Addr())
		if err != nil {
			return err
		}
		defer c.Quit()
		for i := 0; i < perUser; i++ {
			for _, u := range users {
				id := fmt.Sprintf("%s-%d@outside.example", u, i)
				msg := fmt.Sprintf("From: someone@outside.example\r\nTo: %s@correo.example\r\nSubject: hola %d\r\nMessage-ID: <%s>\r\n\r\nline one\r\n.leading dot\r\nline %d\r\n", u, i, id, i)
				if err := c.Mail("someone@outside.example"); err != nil {
					return err
				}
				if err := c.Rcpt(u + "@correo.example"); err != nil {
					return err
				}
				w, err := c.Data()
				if err != nil {
					return err
				}
				w.Write([]byte(msg))
				if err := w.Close(); err != nil {
					return err
				}
				sent[u] = append(sent[u], id)
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
		host := lookup(t, r, u).Storage
		deadline := time.Now().Add(30 * time.Second)
		for maildirCount(t, r, host, u) < perUser && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if c := maildirCount(t, r, host, u); c != perUser {
			t.Fatalf("%s on %s has %d messages, want %d", u, host, c, perUser)
		}
		h, _ := r.Profile.Host(host)
		md, _ := r.Profile.LayoutScheme().MaildirPath(h.Storage.DataDir, u)
		if !strings.Contains(md, "/"+u[:1]+"/"+u[1:2]+"/"+u[2:3]+"/"+u+"/") {
			t.Errorf("%s's Maildir %s is not under the first3 hashed path", u, md)
		}
	}
	// Both MX hosts took some, as DNS round robin promises.
	maillog, _ := os.ReadFile(pf.LogFile)
	for _, mx := range []string{"mx1.correo.example[10.77.0.10]", "mx2.correo.example[10.77.0.11]"} {
		if !bytes.Contains(maillog, []byte("relay="+mx)) {
			t.Errorf("the outside Postfix never delivered to %s", mx)
		}
	}

	// Fetched through the pop pool from outside, byte for byte.
	for _, u := range users[:3] {
		msgs, err := popFetch(t, r, u, u+"-pw")
		if err != nil || len(msgs) != perUser {
			t.Fatalf("poplib for %s: %d messages, %v", u, len(msgs), err)
		}
		stored := storedMessages(t, r, u)
		for i, m := range msgs {
			if _, ok := stored[string(m)]; !ok {
				t.Errorf("poplib message %d of %s is not byte-equal to any stored message:\n%s", i+1, u, m)
			}
		}
		out, err := outside(t, r, "curl", "-s", "--ssl-reqd", "-k", "-u", u+":"+u+"-pw", "pop3://pop.correo.example/1")
		if err != nil {
			t.Fatalf("curl for %s: %v", u, err)
		}
		if _, ok := stored[strings.ReplaceAll(string(out), "\r\n", "\n")]; !ok {
			t.Errorf("curl's message 1 of %s is not byte-equal to a stored message:\n%s", u, out)
		}
	}

	// Scenario 2: one message's trace id in the central log from the MX
	// that took it, the storage host that stored it and the POP proxy
	// that handed it out.
	deadline := time.Now().Add(20 * time.Second)
	for {
		all, _ := os.ReadFile(filepath.Join(r.LoghostDir(), "all.log"))
		if id, where := followedTrace(all); id != "" {
			t.Logf("trace %s: %s", id, where)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no trace id is logged by smtpd, pdeliveryd and popproxy together:\n%s", all)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// followedTrace finds a trace id logged by smtpd on an MX host, by
// pdeliveryd on a storage host and by popproxy, and says where.
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
		if progs["smtpd"] != "" && progs["pdeliveryd"] != "" && progs["popproxy"] != "" {
			return id, fmt.Sprintf("smtpd on %s, pdeliveryd on %s, popproxy on %s", progs["smtpd"], progs["pdeliveryd"], progs["popproxy"])
		}
	}
	return "", ""
}

// storedMessages reads a user's stored messages as POP3 clients get them
// (LF line ends), keyed by content.
func storedMessages(t *testing.T, r *runner.Runner, user string) map[string]bool {
	t.Helper()
	host := lookup(t, r, user).Storage
	h, _ := r.Profile.Host(host)
	md, _ := r.Profile.LayoutScheme().MaildirPath(h.Storage.DataDir, user)
	out := map[string]bool{}
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(md, sub))
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(md, sub, e.Name()))
			if err == nil {
				out[string(b)] = true
			}
		}
	}
	return out
}
