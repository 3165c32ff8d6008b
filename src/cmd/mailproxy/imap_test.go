package main

import (
	"os/exec"
	"strings"
	"testing"

	"correo/internal/testutil"
	"correo/src/cluster"
)

// IMAP through the proxy to the user's storage host: imaplib with
// STARTTLS on 143 and implicit TLS on 993, users on two storage hosts,
// and the refusals a client must get.
func TestIMAPThroughProxy(t *testing.T) {
	python := testutil.NeedCommand(t, "python3")
	e := newEnv(t)
	e.c.StartDaemon(t, "imapd", "st1", true)
	e.c.StartDaemon(t, "imapd", "st2", true)
	a, _ := e.c.Profile.Listen("px", cluster.SvcIMAP)
	s, _ := e.c.Profile.Listen("px", cluster.SvcIMAPS)
	host, port, _ := strings.Cut(a.String(), ":")
	_, sport, _ := strings.Cut(s.String(), ":")
	script := `
import imaplib, ssl, sys
host, port, sport, pw = sys.argv[1:5]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
# Before STARTTLS no password is taken.
m = imaplib.IMAP4(host, int(port))
assert "LOGINDISABLED" in m.capabilities, m.capabilities
try:
    m.login("ana", pw); raise SystemExit("plaintext login accepted")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e), e
m.starttls(ssl_context=ctx)
m.login("ana", pw)
typ, data = m.select("INBOX")
assert data[0] == b"3", data
typ, data = m.search(None, "SUBJECT", "ana")
assert data[0] == b"1 2 3", data
typ, data = m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert b"Subject: ana" in data[0][1], data
m.logout()
# Implicit TLS, the other storage host.
m = imaplib.IMAP4_SSL(host, int(sport), ssl_context=ctx)
m.login("bob", pw)
typ, data = m.status("INBOX", "(MESSAGES)")
assert b"MESSAGES 3" in data[0], data
m.logout()
# A wrong password is one NO, the session goes on.
m = imaplib.IMAP4_SSL(host, int(sport), ssl_context=ctx)
try:
    m.login("bob", "wrong"); raise SystemExit("wrong password accepted")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e
m.login("bob", pw)
m.logout()
print("ok")
`
	out, err := exec.Command(python, "-c", script, host, port, sport, password).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("imaplib through the proxy: %v\n%s", err, out)
	}
	// Both sessions came through the proxy, which the backend logs.
	if log := e.px.Log.String(); !strings.Contains(log, `msg="imap proxy session"`) || !strings.Contains(log, "backend=\"st2 ") {
		t.Fatalf("the proxy did not log the IMAP sessions:\n%s", log)
	}
}
