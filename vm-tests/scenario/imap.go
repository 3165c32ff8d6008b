package scenario

import (
	"strconv"
	"strings"
	"testing"

	"correo/src/cluster"
)

// IMAPThroughProxy: mail delivered through the cluster is read over IMAP
// from the Internet through the proxy pool's name (imap.<zone>, STARTTLS),
// flagged, moved to a folder and back, and fetched again over POP: one
// mailbox, two protocols, the same message, POP's UIDL unchanged.
//
// Users: irene. Needs python3 on this machine (Outside's programs).
func IMAPThroughProxy(t *testing.T, c Cluster) {
	addUserWithPassword(t, c, "irene", "irene-pw")
	deliverSubject(t, c, "irene", "imap-1@b.example", "por imap")
	zone := c.Profile().Cluster.DNS.Zone
	port := strconv.Itoa(c.Profile().Port(cluster.SvcIMAP))
	script := `import imaplib, ssl, sys, poplib
host, port, pw = sys.argv[1:4]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
pop = poplib.POP3(host.replace("imap.", "pop."), 110, timeout=20)
pop.stls(context=ctx); pop.user("irene"); pop.pass_(pw)
uidl = pop.uidl()[1]
pop.quit()
m = imaplib.IMAP4(host, int(port), timeout=20)
m.starttls(ssl_context=ctx)
m.login("irene", pw)
typ, data = m.select("INBOX")
assert data[0] == b"1", data
typ, data = m.fetch("1", "(ENVELOPE BODY[TEXT])")
assert b"por imap" in data[0][0] and data[0][1].strip() == b"hola", data
m.store("1", "+FLAGS", "\\Flagged")
typ, data = m.create("Archivo")
assert typ == "OK", data
typ, data = m.uid("MOVE", "1", "Archivo")
assert typ == "OK", data
m.select("Archivo")
typ, data = m.uid("MOVE", "1:*", "INBOX")
assert typ == "OK", data
m.select("INBOX")
typ, data = m.fetch("1", "(FLAGS)")
assert b"\\Flagged" in data[0], data
m.logout()
pop = poplib.POP3(host.replace("imap.", "pop."), 110, timeout=20)
pop.stls(context=ctx); pop.user("irene"); pop.pass_(pw)
assert pop.uidl()[1] == uidl, (pop.uidl()[1], uidl)
body = b"\n".join(pop.retr(1)[1])
assert b"Subject: por imap" in body, body
pop.quit()
print("ok")
`
	out, err := run(c, Outside, nil, "python3", "-c", script, "imap."+zone, port, "irene-pw")
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("IMAP through imap.%s from %s: %v\n%s", zone, Outside, err, out)
	}
}
