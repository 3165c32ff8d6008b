package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/internal/clustertest"
	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/directory"
)

// TestDovecot runs a private Dovecot (IMAP and POP3) over a storage host's
// Maildirs, which pdeliveryd filled, with logins checked by passwdd
// through correo-checkpassword (the dovecot.conf lines of the README).
// Flags set in Dovecot are seen by correo's imapd, flags set in imapd by
// Dovecot, and a message deleted by correo's pop3d is gone from Dovecot.
func TestDovecot(t *testing.T) {
	testutil.NeedRoot(t)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	data := clustertest.ShortTempDir(t, "mail-")
	os.Chmod(data, 0o755)
	// The storage account owns data_dir: Dovecot gets its uid from there.
	os.Chown(data, uid, gid)
	c := clustertest.NewCluster(t, clustertest.Spec{
		RunAs:          "nobody",
		TrustedNetwork: true,
		Hosts: []clustertest.HostSpec{
			{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}, DataDir: data},
			{Name: "st2", Address: "127.0.0.2", Roles: []string{"storage"}},
		}})
	// Dovecot's auth process reads the cluster key through a group, as
	// the README's `extra_groups = correo-key` does ("mail" here).
	mail, err := user.LookupGroup("mail")
	if err != nil {
		t.Fatal(err)
	}
	mgid, _ := strconv.Atoi(mail.Gid)
	os.Chown(c.KeyPath, 0, mgid)
	os.Chmod(c.KeyPath, 0o640)

	pw := c.StartPasswdd(t, "st1")
	hash, err := directory.HashPassword("s3cret", 4)
	if err != nil {
		t.Fatal(err)
	}
	c.AddUsers(t,
		directory.User{Name: "ana", Storage: "st1", Hash: hash},
		directory.User{Name: "eva", Storage: "st2", Hash: hash},
		directory.User{Name: "fede", Storage: "st1", Hash: hash, State: directory.StateDisabled},
	)
	c.StartDaemon(t, "pdeliveryd", "st1", true)
	c.StartDaemon(t, "imapd", "st1", true)
	c.StartDaemon(t, "pop3d", "st1", true)

	lmtp, _ := c.Profile.Listen("st1", cluster.SvcLMTP)
	l := clustertest.DialText(t, "tcp", lmtp.String(), 220)
	for _, subj := range []string{"one", "two", "three"} {
		l.Cmd("LHLO test.example")
		l.Cmd("MAIL FROM:<x@example.org>")
		if code, msg := l.Cmd("RCPT TO:<ana@correo.test>"); code != 250 {
			t.Fatalf("RCPT: %d %s", code, msg)
		}
		l.Cmd("DATA")
		l.Line("Subject: %s", subj)
		l.Line("")
		l.Line("body %s", subj)
		if code, msg := l.Cmd("."); code != 250 {
			t.Fatalf("delivery: %d %s", code, msg)
		}
	}

	// Not race-built: the race runtime reserves more address space than
	// any vsz_limit Dovecot's auth service would have.
	bin := clustertest.Build(t, "correo-checkpassword", false)
	args := bin + " -profile " + c.ProfilePath + " -host st1"
	dc := clustertest.StartDovecotConf(t, fmt.Sprintf(`passdb {
  driver = checkpassword
  args = %[1]s
}
userdb {
  driver = prefetch
}
userdb {
  driver = checkpassword
  args = %[1]s
}
service auth {
  extra_groups = mail
  vsz_limit = 1G
}
`, args))

	// Logins: checked by passwdd.
	for _, tc := range []struct {
		user, pass, want string
	}{
		{"ana", "s3cret", "OK"},
		{"ana@correo.test", "s3cret", "OK"},
		{"ana", "wrong", "NO"},
		{"nadie", "s3cret", "NO"},
		{"fede", "s3cret", "NO"},
		{"eva", "s3cret", "NO"}, // stored on st2, not here
		{"../etc", "s3cret", "NO"},
	} {
		s := dialIMAP(t, dc.IMAPAddr())
		if st, _ := s.cmd(fmt.Sprintf("LOGIN %q %q", tc.user, tc.pass)); !strings.HasPrefix(st, tc.want) {
			t.Errorf("Dovecot LOGIN %s/%s: %q, want %s", tc.user, tc.pass, st, tc.want)
		}
	}

	// Flags set in Dovecot are seen by imapd, and the reverse.
	imapdAddr, _ := c.Profile.Listen("st1", cluster.SvcIMAPBackend)
	dov := login(t, dc.IMAPAddr())
	if got := dov.flags(t); len(got) != 3 {
		t.Fatalf("Dovecot sees %v, want the three messages pdeliveryd stored\n%s", got, dc.Log())
	}
	dov.store(t, "one", `\Flagged`)
	dov.cmd("LOGOUT")
	cor := login(t, imapdAddr.String())
	if f := cor.flags(t)["one"]; !strings.Contains(f, `\Flagged`) {
		t.Errorf("imapd sees flags %q on the message Dovecot flagged", f)
	}
	cor.store(t, "two", `\Answered`)
	cor.cmd("LOGOUT")
	dov = login(t, dc.IMAPAddr())
	got := dov.flags(t)
	if !strings.Contains(got["two"], `\Answered`) || !strings.Contains(got["one"], `\Flagged`) {
		t.Errorf("Dovecot sees %v after imapd's STORE", got)
	}
	dov.cmd("LOGOUT")

	// POP3: Dovecot's with passwd's check; a DELE through correo's pop3d
	// is gone for Dovecot.
	p := dialPOP(t, dc.POP3Addr())
	if !p.ok("USER ana") || !p.ok("PASS s3cret") {
		t.Fatalf("Dovecot POP3 login refused\n%s", dc.Log())
	}
	if line := p.cmd("STAT"); !strings.HasPrefix(line, "+OK 3 ") {
		t.Errorf("Dovecot POP3 STAT: %q", line)
	}
	p.ok("QUIT")
	bad := dialPOP(t, dc.POP3Addr())
	if bad.ok("USER ana"); bad.ok("PASS wrong") {
		t.Error("Dovecot POP3 took a wrong password")
	}
	pa, _ := c.Profile.Listen("st1", cluster.SvcPOP3Backend)
	cp := dialPOP(t, pa.String())
	if !cp.ok("USER ana") || !cp.ok("PASS s3cret") || !cp.ok("DELE 1") || !cp.ok("QUIT") {
		t.Fatal("correo pop3d session failed")
	}
	dov = login(t, dc.IMAPAddr())
	if got := dov.flags(t); len(got) != 2 {
		t.Errorf("after pop3d's DELE, Dovecot sees %v, want two messages", got)
	}
	dov.cmd("LOGOUT")

	// passwd down: a temporary failure, not a wrong password.
	pw.Stop(syscall.SIGKILL)
	s := dialIMAP(t, dc.IMAPAddr())
	if st, _ := s.cmd(`LOGIN "ana" "s3cret"`); !strings.Contains(st, "[UNAVAILABLE]") {
		t.Errorf("Dovecot LOGIN with passwd down: %q, want NO [UNAVAILABLE]", st)
	}
}

type popConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialPOP(t *testing.T, addr string) *popConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	p := &popConn{c, bufio.NewReader(c)}
	if line, _ := p.r.ReadString('\n'); !strings.HasPrefix(line, "+OK") {
		t.Fatalf("POP3 greeting from %s: %q", addr, line)
	}
	return p
}

// cmd sends one command and returns the first line of its answer.
func (p *popConn) cmd(cmd string) string {
	fmt.Fprintf(p.c, "%s\r\n", cmd)
	line, _ := p.r.ReadString('\n')
	return strings.TrimRight(line, "\r\n")
}

func (p *popConn) ok(cmd string) bool { return strings.HasPrefix(p.cmd(cmd), "+OK") }

type imapConn struct {
	c   net.Conn
	r   *bufio.Reader
	tag int
}

func dialIMAP(t *testing.T, addr string) *imapConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	s := &imapConn{c: c, r: bufio.NewReader(c)}
	if line, _ := s.r.ReadString('\n'); !strings.HasPrefix(line, "* OK") {
		t.Fatalf("IMAP greeting from %s: %q", addr, line)
	}
	return s
}

// cmd sends one command and returns its tagged status ("OK ...") and the
// untagged lines before it.
func (s *imapConn) cmd(cmd string) (string, []string) {
	s.tag++
	tag := fmt.Sprintf("a%d", s.tag)
	fmt.Fprintf(s.c, "%s %s\r\n", tag, cmd)
	var lines []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "error: " + err.Error(), lines
		}
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, tag+" ") {
			return line[len(tag)+1:], lines
		}
		lines = append(lines, line)
	}
}

func login(t *testing.T, addr string) *imapConn {
	t.Helper()
	s := dialIMAP(t, addr)
	if st, _ := s.cmd(`LOGIN "ana" "s3cret"`); !strings.HasPrefix(st, "OK") {
		t.Fatalf("LOGIN at %s: %q", addr, st)
	}
	if st, _ := s.cmd("SELECT INBOX"); !strings.HasPrefix(st, "OK") {
		t.Fatalf("SELECT at %s: %q", addr, st)
	}
	return s
}

var fetchRE = regexp.MustCompile(`^\* (\d+) FETCH .*FLAGS \(([^)]*)\)`)

// flags maps each message's subject to its flags, and remembers each
// subject's sequence number for store.
func (s *imapConn) flags(t *testing.T) map[string]string {
	t.Helper()
	st, lines := s.cmd("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
	if !strings.HasPrefix(st, "OK") {
		t.Fatalf("FETCH: %q", st)
	}
	out := map[string]string{}
	seqs = map[string]string{}
	var seq, flags string
	for _, l := range lines {
		if m := fetchRE.FindStringSubmatch(l); m != nil {
			seq, flags = m[1], m[2]
		} else if strings.HasPrefix(l, "Subject: ") && seq != "" {
			subj := strings.TrimPrefix(l, "Subject: ")
			out[subj], seqs[subj] = flags, seq
		}
	}
	return out
}

var seqs map[string]string

func (s *imapConn) store(t *testing.T, subject, flag string) {
	t.Helper()
	if st, _ := s.cmd(fmt.Sprintf("STORE %s +FLAGS (%s)", seqs[subject], flag)); !strings.HasPrefix(st, "OK") {
		t.Fatalf("STORE %s on %q: %q", flag, subject, st)
	}
}
