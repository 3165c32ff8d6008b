package scenario

import (
	"strconv"
	"strings"
	"testing"
)

// ClientAutoconfig: a mail client that knows only the user's address
// finds the servers in the cluster's DNS (RFC 6186 SRV records) and logs
// in over implicit TLS where they point; the same zone tells receivers
// that only the relay pool sends for the domain (SPF) and what to do with
// mail that fails (DMARC).
//
// Users: sofia. Needs dig and python3 on this machine (Outside's
// programs).
func ClientAutoconfig(t *testing.T, c Cluster) {
	addUserWithPassword(t, c, "sofia", "sofia-pw")
	deliverSubject(t, c, "sofia", "auto-1@b.example", "autoconfig")
	p := c.Profile()
	zone := p.Cluster.DNS.Zone
	dig := func(typ, name string) []string {
		t.Helper()
		out, err := run(c, Outside, nil, "dig", "+short", "+time=5", "+tries=2", typ, name)
		if err != nil {
			t.Fatalf("dig %s %s from %s: %v", typ, name, Outside, err)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
		return lines
	}
	for _, d := range p.Cluster.Domains {
		if d != zone && !strings.HasSuffix(d, "."+zone) {
			continue
		}
		srv := dig("SRV", "_imaps._tcp."+d)
		if len(srv) != 1 {
			t.Fatalf("_imaps._tcp.%s: %q, want one SRV record", d, srv)
		}
		// "0 1 993 imap.<zone>."
		f := strings.Fields(srv[0])
		if len(f) != 4 || f[3] != "imap."+zone+"." {
			t.Fatalf("_imaps._tcp.%s = %q, want the imap pool", d, srv[0])
		}
		for _, name := range []string{"_submission._tcp." + d, "_submissions._tcp." + d, "_pop3s._tcp." + d} {
			if r := dig("SRV", name); len(r) != 1 {
				t.Errorf("%s: %q, want one SRV record", name, r)
			}
		}
		if spf := dig("TXT", d); len(spf) != 1 || !strings.HasPrefix(spf[0], `"v=spf1 a:relay.`+zone+" ") {
			t.Errorf("SPF of %s: %q", d, spf)
		}
		if dm := dig("TXT", "_dmarc."+d); len(dm) != 1 || !strings.HasPrefix(dm[0], `"v=DMARC1; p=`+p.Cluster.MailAuth.DMARCPolicy) {
			t.Errorf("DMARC of %s: %q", d, dm)
		}
		if d != zone {
			continue
		}
		// The client follows the SRV record: host and port from DNS only.
		port, _ := strconv.Atoi(f[2])
		script := `import imaplib, ssl, sys
host, port, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=20)
m.login("sofia", pw)
typ, data = m.select("INBOX")
assert data[0] == b"1", data
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert b"autoconfig" in data[0][1], data
m.logout()
print("ok")
`
		out, err := run(c, Outside, nil, "python3", "-c", script, strings.TrimSuffix(f[3], "."), strconv.Itoa(port), "sofia-pw")
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			t.Fatalf("IMAPS at %s:%d, found through _imaps._tcp.%s: %v\n%s", f[3], port, d, err, out)
		}
	}
}
