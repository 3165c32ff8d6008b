package scenario

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"correo/internal/testutil"
	"correo/src/cluster"
	"correo/src/mailbox"
)

// mailboxState prints, as JSON, what a client of user sees: INBOX's
// UIDVALIDITY, each message's UID and flags by Message-ID (IMAP, through
// the proxy pool), and each message's UIDL by Message-ID (POP3). With
// "flag" first, it flags the first messages \Flagged and marks others
// \Seen, so that flags have something to keep.
const mailboxState = `import imaplib, poplib, ssl, sys, json, re
host, port, user, pw, mode = sys.argv[1:6]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4(host, int(port), timeout=30)
m.starttls(ssl_context=ctx)
m.login(user, pw)
typ, data = m.select("INBOX")
assert typ == "OK", data
if mode == "flag":
    m.store("1:5", "+FLAGS", "\\Flagged")
    m.store("6:8", "+FLAGS", "\\Seen")
uv = m.response("UIDVALIDITY")[1][0].decode()
typ, data = m.fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
uids = {}
for part in data:
    if not isinstance(part, tuple):
        continue
    meta, hdr = part
    mid = re.search(rb"<([^>]+)>", hdr).group(1).decode()
    uid = re.search(rb"UID (\d+)", meta).group(1).decode()
    flags = sorted(f.decode() for f in re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).split())
    uids[mid] = [uid, flags]
m.logout()
p = poplib.POP3(host.replace("imap.", "pop."), 110, timeout=30)
p.stls(context=ctx); p.user(user); p.pass_(pw)
uidl = {}
for line in p.uidl()[1]:
    n, u = line.decode().split()
    hdr = b"\n".join(p.top(int(n), 0)[1])
    mid = re.search(rb"(?i)message-id:\s*<([^>]+)>", hdr).group(1).decode()
    uidl[mid] = u
p.quit()
print(json.dumps({"uidvalidity": uv, "uids": uids, "uidl": uidl}))
`

// mailboxReader logs in over IMAP (through the proxy pool) and POP3 in a
// loop until the file named by its last argument exists, reading the
// newest message each time, and prints one line per round: "ok" or the
// error. During a move, rounds meet refused logins and ended sessions;
// before and after, none.
const mailboxReader = `import imaplib, os, poplib, ssl, sys, time
host, port, user, pw, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
end = time.time() + 300
while not os.path.exists(stop) and time.time() < end:
    try:
        m = imaplib.IMAP4(host, port, timeout=30)
        m.starttls(ssl_context=ctx)
        m.login(user, pw)
        typ, data = m.select("INBOX", readonly=True)
        n = int(data[0])
        m.fetch(str(n), "(BODY.PEEK[HEADER])")
        m.logout()
        p = poplib.POP3(host.replace("imap.", "pop."), 110, timeout=30)
        p.stls(context=ctx); p.user(user); p.pass_(pw)
        count = p.stat()[0]
        p.retr(count)
        p.quit()
        print("ok", flush=True)
    except Exception as e:
        print("error", repr(e).replace("\\n", " "), flush=True)
    time.sleep(0.05)
`

// reader runs mailboxReader on Outside and collects its rounds.
type reader struct {
	mu     sync.Mutex
	rounds []string
	stop   string
	done   chan struct{}
}

func startReader(t *testing.T, c Cluster, user, pw string) *reader {
	t.Helper()
	r := &reader{stop: filepath.Join(t.TempDir(), "stop"), done: make(chan struct{})}
	zone := c.Profile().Cluster.DNS.Zone
	line := c.Command(Outside, "python3", "-c", mailboxReader, "imap."+zone, strconv.Itoa(c.Profile().Port(cluster.SvcIMAP)), user, pw, r.stop)
	cmd := exec.Command(line[0], line[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.mu.Lock()
			r.rounds = append(r.rounds, sc.Text())
			r.mu.Unlock()
		}
		cmd.Wait()
	}()
	t.Cleanup(func() { r.finish() })
	return r
}

func (r *reader) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rounds)
}

// waitRounds waits until the reader has done n rounds.
func (r *reader) waitRounds(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for r.count() < n {
		select {
		case <-r.done:
			t.Fatalf("the reader ended after %d rounds, want %d: %q", r.count(), n, r.finish())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reader did %d rounds in 2 minutes, want %d", r.count(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// finish stops the reader and returns its rounds.
func (r *reader) finish() []string {
	os.WriteFile(r.stop, nil, 0o644)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.rounds...)
}

type clientView struct {
	UIDValidity string                    `json:"uidvalidity"`
	UIDs        map[string][2]interface{} `json:"uids"`
	UIDL        map[string]string         `json:"uidl"`
}

func viewOf(t *testing.T, c Cluster, user, pw, mode string) clientView {
	t.Helper()
	zone := c.Profile().Cluster.DNS.Zone
	out, err := run(c, Outside, nil, "python3", "-c", mailboxState, "imap."+zone, strconv.Itoa(c.Profile().Port(cluster.SvcIMAP)), user, pw, mode)
	if err != nil {
		t.Fatalf("what %s's mail clients see: %v\n%s", user, err, out)
	}
	var v clientView
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("mailbox state %q: %v", out, err)
	}
	return v
}

// MailboxMove (issue 18): a user's mailbox moves to another storage host
// with `correoctl mailbox move` while a sender keeps mailing them through
// the MX pool. Every message acknowledged to the sender is on the new
// host exactly once; IMAP's UIDVALIDITY, UIDs and flags and POP3's UIDLs
// are what they were, so no client resynchronises; passwd points at the
// new host; the old copy stays frozen, marked moved.
//
// Users: moritz. Needs python3 on this machine (Outside's programs).
func MailboxMove(t *testing.T, c Cluster) {
	testutil.NeedCommand(t, "python3")
	const user, pw = "moritz", "moritz-pw"
	addUserWithPassword(t, c, user, pw)
	from := lookup(t, c, user).Storage
	to := otherStorage(t, c, from)
	const pre = 20
	// 40 KB each and a copy capped at 0.5 MB/s: the live copy takes a
	// couple of seconds, and the sender's mail arrives during it.
	body := strings.Repeat("una línea de texto para que el mensaje pese algo\n", 800)
	for i := 0; i < pre; i++ {
		deliverBody(t, c, user, fmt.Sprintf("move-pre-%d@b.example", i), fmt.Sprintf("antes %d", i), body)
	}
	before := viewOf(t, c, user, pw, "flag")
	if len(before.UIDs) != pre || len(before.UIDL) != pre {
		t.Fatalf("before the move the clients see %d messages over IMAP and %d over POP3, want %d", len(before.UIDs), len(before.UIDL), pre)
	}

	// The sender: one message at a time through mx1, from the Internet,
	// until told to stop; it keeps the Message-IDs the MX acknowledged.
	var (
		mu    sync.Mutex
		acked []string
		stop  = make(chan struct{})
		done  = make(chan struct{})
	)
	mx := addr(t, c, "mx1", cluster.SvcSMTP)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("move-live-%d@outside.example", i)
			err := c.In(Outside, func() error {
				sc, err := smtp.Dial(mx)
				if err != nil {
					return err
				}
				defer sc.Close()
				if err := sc.Mail("s@outside.example"); err != nil {
					return err
				}
				if err := sc.Rcpt(user + "@correo.example"); err != nil {
					return err
				}
				w, err := sc.Data()
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "From: s@outside.example\r\nTo: %s@correo.example\r\nSubject: durante %d\r\nMessage-ID: <%s>\r\n\r\nhola\r\n", user, i, id)
				if err := w.Close(); err != nil {
					return err
				}
				return sc.Quit()
			})
			if err == nil {
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	// A reader too, over IMAP and POP3: one round before the move begins,
	// and two more once it is over (the second began after it).
	rd := startReader(t, c, user, pw)
	rd.waitRounds(t, 1)
	out, err := run(c, operator, nil, "correoctl", "mailbox", "move", "-profile", c.ProfilePath(), "-q", "-rate", "0.5", user, "-to", to)
	rd.waitRounds(t, rd.count()+2)
	close(stop)
	<-done
	rounds := rd.finish()
	oks := 0
	for _, r := range rounds {
		if r == "ok" {
			oks++
		}
	}
	t.Logf("reader: %d rounds, %d ok", len(rounds), oks)
	// Refusals during the freeze are expected; the reader must read
	// before the move, and again once it is over.
	if len(rounds) < 2 || rounds[0] != "ok" || rounds[len(rounds)-1] != "ok" {
		t.Errorf("the reader's first and last rounds must succeed; rounds:\n%s", strings.Join(rounds, "\n"))
	}
	if err != nil {
		t.Fatalf("correoctl mailbox move %s -to %s: %v\n%s", user, to, err, out)
	}
	t.Logf("correoctl mailbox move: %s", out)
	if m := regexp.MustCompile(`frozen ([0-9.]+m?s)`).FindStringSubmatch(string(out)); m == nil {
		t.Errorf("correoctl's report does not say how long the mailbox was frozen:\n%s", out)
	}
	waitQueuesEmpty(t, c)
	if got := lookup(t, c, user).Storage; got != to {
		t.Fatalf("passwd says %s's mailbox is on %s, want %s", user, got, to)
	}

	// Every acknowledged message exactly once on the new host.
	mu.Lock()
	want := append([]string(nil), acked...)
	mu.Unlock()
	for i := 0; i < pre; i++ {
		want = append(want, fmt.Sprintf("move-pre-%d@b.example", i))
	}
	if len(want) < pre+5 {
		t.Errorf("the sender got only %d messages acknowledged during the move", len(want)-pre)
	}
	midRE := regexp.MustCompile(`(?im)^message-id:\s*<([^>]+)>`)
	seen := map[string]int{}
	for _, f := range maildirFiles(t, c, to, user) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := midRE.FindSubmatch(b); m != nil {
			seen[string(m[1])]++
		}
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Errorf("message %s is on %s %d times, want once", id, to, seen[id])
		}
	}

	// What the clients saw is kept.
	after := viewOf(t, c, user, pw, "dump")
	if after.UIDValidity != before.UIDValidity {
		t.Errorf("UIDVALIDITY changed from %s to %s: every IMAP client would resynchronise", before.UIDValidity, after.UIDValidity)
	}
	for id, v := range before.UIDs {
		// \Recent belongs to a session, not to the message.
		if !reflect.DeepEqual(withoutRecent(after.UIDs[id]), withoutRecent(v)) {
			t.Errorf("message %s: UID and flags %v before the move, %v after", id, v, after.UIDs[id])
		}
		if after.UIDL[id] != before.UIDL[id] {
			t.Errorf("message %s: POP3 UIDL %q before the move, %q after", id, before.UIDL[id], after.UIDL[id])
		}
	}

	// The old copy is frozen and says where the mailbox went.
	marker, err := os.ReadFile(c.Path(from, filepath.Join(maildir(t, c, from, user), mailbox.MovingMarker)))
	if err != nil || !strings.HasPrefix(string(marker), "moved to "+to) {
		t.Errorf("the old copy on %s: marker %q, %v; want \"moved to %s ...\"", from, marker, err, to)
	}
}

func withoutRecent(v [2]interface{}) [2]interface{} {
	flags, _ := v[1].([]interface{})
	var kept []interface{}
	for _, f := range flags {
		if f != `\Recent` {
			kept = append(kept, f)
		}
	}
	return [2]interface{}{v[0], kept}
}

// MailboxMoveCrashes (issue 18): moves cut short by a kill -9 end with
// the mailbox whole and served from one host. correoctl killed during
// the copy leaves its journal; `-resume` finishes the move, copying only
// what the stage lacks. The target's pdeliveryd killed during the copy
// (moving the mailbox back, onto the host that keeps the frozen old
// copy) makes correoctl roll the move back by itself; run again, it
// replaces the old copy. The source's pdeliveryd killed: rolled back
// too. The passwd primary down as a move begins: the move waits for it.
//
// Users: greta. Needs python3 on this machine (Outside's programs).
func MailboxMoveCrashes(t *testing.T, c Cluster) {
	testutil.NeedCommand(t, "python3")
	const user, pw, n = "greta", "greta-pw", 30
	addUserWithPassword(t, c, user, pw)
	from := lookup(t, c, user).Storage
	to := otherStorage(t, c, from)
	body := strings.Repeat("cuarenta kilobytes de texto, más o menos, por mensaje\n", 750)
	for i := 0; i < n; i++ {
		deliverBody(t, c, user, fmt.Sprintf("crash-%d@b.example", i), strconv.Itoa(i), body)
	}
	before := viewOf(t, c, user, pw, "flag")
	journal := c.Path(operator, filepath.Join(c.Profile().Cluster.Moves.JournalDir, user+".json"))

	// 1. correoctl killed during the copy (0.3 MB/s: about four seconds).
	killed := startKillable(t, c, operator, "correoctl", "mailbox", "move", "-profile", c.ProfilePath(), "-q", "-rate", "0.3", user, "-to", to)
	waitFile(t, journal)
	// Killed once the target's stage holds part of the mailbox, whatever
	// the machine's speed.
	if err := waitStaged(c, to, user); err != nil {
		t.Fatal(err)
	}
	killed()
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("after the kill the move's journal is gone: %v", err)
	}
	if got := lookup(t, c, user); got.Storage != from || got.State.String() != "active" {
		t.Errorf("killed during the copy, passwd says %s on %s; want active on %s", got.State, got.Storage, from)
	}
	out, err := run(c, operator, nil, "correoctl", "mailbox", "move", "-profile", c.ProfilePath(), "-q", "-resume", user)
	if err != nil {
		t.Fatalf("correoctl mailbox move -resume %s: %v\n%s", user, err, out)
	}
	t.Logf("resumed: %s", out)
	if m := regexp.MustCompile(`copied \d+ files, (\d+) bytes of (\d+)`).FindStringSubmatch(string(out)); m == nil || m[1] == m[2] {
		t.Errorf("the resumed move copied everything again (the stage's files were lost):\n%s", out)
	}
	checkMoved(t, c, user, pw, from, to, n, before)

	// 2. The target's pdeliveryd killed during a move back to from.
	killedAt := make(chan error, 1)
	go func() {
		waitStaged(c, from, user)
		killedAt <- c.Kill(from, "pdeliveryd")
	}()
	out, err = run(c, operator, nil, "correoctl", "mailbox", "move", "-profile", c.ProfilePath(), "-q", "-rate", "0.3", user, "-to", from)
	if kerr := <-killedAt; kerr != nil {
		t.Fatalf("killing pdeliveryd on %s: %v", from, kerr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if serr := c.Start(ctx, from, "pdeliveryd"); serr != nil {
		t.Fatalf("starting pdeliveryd on %s again: %v", from, serr)
	}
	if err == nil {
		t.Fatalf("the move went through although its target's pdeliveryd was killed:\n%s", out)
	}
	if _, serr := os.Stat(journal); serr == nil {
		t.Errorf("the failed move left its journal: it should have rolled back\n%s\n%v", out, err)
	}
	if got := lookup(t, c, user); got.Storage != to || got.State.String() != "active" {
		t.Errorf("after the rolled-back move passwd says %s on %s; want active on %s", got.State, got.Storage, to)
	}
	out, err = run(c, operator, nil, "correoctl", "mailbox", "move", "-profile", c.ProfilePath(), "-q", user, "-to", from)
	if err != nil {
		t.Fatalf("moving %s back to %s: %v\n%s", user, from, err, out)
	}
	checkMoved(t, c, user, pw, to, from, n, before)

	// 3. The source's pdeliveryd killed during the copy: rolled back, the
	// mailbox whole where it was; the next move goes through.
	go func() {
		waitStaged(c, to, user)
		killedAt <- c.Kill(from, "pdeliveryd")
	}()
	out, err = run(c, operator, nil, "correoctl", "mailbox", "move", "-profile", c.ProfilePath(), "-q", "-rate", "0.3", user, "-to", to)
	if kerr := <-killedAt; kerr != nil {
		t.Fatalf("killing pdeliveryd on %s: %v", from, kerr)
	}
	if serr := c.Start(ctx, from, "pdeliveryd"); serr != nil {
		t.Fatalf("starting pdeliveryd on %s again: %v", from, serr)
	}
	if err == nil {
		t.Fatalf("the move went through although its source's pdeliveryd was killed:\n%s", out)
	}
	if got := lookup(t, c, user); got.Storage != from || got.State.String() != "active" {
		t.Errorf("after the rolled-back move passwd says %s on %s; want active on %s", got.State, got.Storage, from)
	}
	if got := maildirCount(t, c, from, user); got != n {
		t.Errorf("after the rolled-back move %s has %d messages on %s, want %d", user, got, from, n)
	}

	// 4. The passwd primary down when the move begins and back two
	// seconds later: the move waits for it and finishes.
	prim, _ := c.Profile().PasswdServers()
	if err := c.Stop(prim.Name, "passwdd"); err != nil {
		t.Fatalf("stopping passwdd on %s: %v", prim.Name, err)
	}
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second)
		restarted <- c.Start(ctx, prim.Name, "passwdd")
	}()
	out, err = run(c, operator, nil, "correoctl", "mailbox", "move", "-profile", c.ProfilePath(), "-q", user, "-to", to)
	if rerr := <-restarted; rerr != nil {
		t.Fatalf("starting passwdd on %s again: %v", prim.Name, rerr)
	}
	if err != nil {
		t.Fatalf("a move while the passwd primary was down for two seconds: %v\n%s", err, out)
	}
	checkMoved(t, c, user, pw, from, to, n, before)
}

// checkMoved: user's mailbox is on to with its n messages once each and
// what clients saw unchanged; the copy on from is frozen, marked moved.
func checkMoved(t *testing.T, c Cluster, user, pw, from, to string, n int, before clientView) {
	t.Helper()
	if got := lookup(t, c, user).Storage; got != to {
		t.Fatalf("passwd says %s is on %s, want %s", user, got, to)
	}
	if got := maildirCount(t, c, to, user); got != n {
		t.Errorf("%s has %d messages on %s, want %d", user, got, to, n)
	}
	after := viewOf(t, c, user, pw, "dump")
	if after.UIDValidity != before.UIDValidity || len(after.UIDL) != n {
		t.Errorf("after the move: UIDVALIDITY %s (was %s), %d UIDLs (want %d)", after.UIDValidity, before.UIDValidity, len(after.UIDL), n)
	}
	for id, v := range before.UIDs {
		if !reflect.DeepEqual(withoutRecent(after.UIDs[id]), withoutRecent(v)) || after.UIDL[id] != before.UIDL[id] {
			t.Errorf("message %s: %v / %q before, %v / %q after", id, v, before.UIDL[id], after.UIDs[id], after.UIDL[id])
		}
	}
	marker, err := os.ReadFile(c.Path(from, filepath.Join(maildir(t, c, from, user), mailbox.MovingMarker)))
	if err != nil || !strings.HasPrefix(string(marker), "moved to "+to) {
		t.Errorf("the old copy on %s: marker %q, %v; want \"moved to %s ...\"", from, marker, err, to)
	}
	if _, err := os.Stat(c.Path(to, filepath.Join(maildir(t, c, to, user), mailbox.MovingMarker))); err == nil {
		t.Errorf("the live copy on %s carries the moving marker", to)
	}
}

// startKillable starts argv on host; the returned func kills it and
// everything it started (its process group) with SIGKILL and waits.
func startKillable(t *testing.T, c Cluster, host string, argv ...string) func() {
	t.Helper()
	line := c.Command(host, argv...)
	cmd := exec.Command(line[0], line[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within 30s", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStaged waits until host's stage of user's incoming mailbox (by the
// mailmove package's layout) holds a few files: a copy is under way.
func waitStaged(c Cluster, host, user string) error {
	h, err := c.Profile().Host(host)
	if err != nil {
		return err
	}
	stage := c.Path(host, filepath.Join(h.Storage.DataDir, ".correo-moves", "in", user))
	deadline := time.Now().Add(time.Minute)
	for stagedFiles(stage) < 5 {
		if time.Now().After(deadline) {
			return fmt.Errorf("after a minute the stage %s holds %d files", stage, stagedFiles(stage))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// stagedFiles counts the regular files under dir (0 while it is missing).
func stagedFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}
