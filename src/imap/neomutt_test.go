package imap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"correo/internal/testutil"
)

// neomutt drives Debian's neomutt against imapd without a person: its UI
// runs on a pseudo-terminal this test owns, the keys come from a `push`
// on the command line, and the result is checked on the server's Maildir.

// neomuttRun is one run's outcome: the screen (escape codes stripped),
// neomutt's debug log (the IMAP exchange) and its exit status.
type neomuttRun struct {
	screen, debug string
	code          int
}

func (r neomuttRun) String() string {
	return fmt.Sprintf("exit %d\n--- neomutt screen:\n%s\n--- neomutt debug log:\n%s", r.code, r.screen, r.debug)
}

// neomuttConf writes the muttrc every case uses: plain IMAP on the test
// server (its trusted network allows AUTHENTICATE PLAIN without TLS), no
// caches, no confirmations, and messages shown in mailbox (UID) order.
func neomuttConf(t *testing.T, e *env, dir string) string {
	t.Helper()
	conf := filepath.Join(dir, "muttrc")
	// "mailboxes" connects at once: the connection settings go first.
	rc := fmt.Sprintf(`set ssl_starttls = no
set ssl_force_tls = no
set imap_user = "ana"
set imap_pass = "%s"
set folder = "imap://%s/"
set spoolfile = "+INBOX"
set header_cache = ""
set message_cachedir = ""
set imap_idle = no
set imap_check_subscribed = no
set mail_check = 1
set timeout = 1
set sort = mailbox-order
set resolve = no
set confirmcreate = no
set confirmappend = no
set delete = yes
set move = no
set record = ""
set quit = yes
set wait_key = no
set beep = no
set help = no
set sleep_time = 0
set mark_old = no
mailboxes +INBOX
`, password, e.addr)
	if err := os.WriteFile(conf, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf
}

// runNeomutt runs neomutt with args on a new pseudo-terminal and returns
// when it exits or, past the deadline, after killing it.
func runNeomutt(t *testing.T, neomutt, dir string, timeout time.Duration, args ...string) neomuttRun {
	t.Helper()
	master, slave := openPty(t)
	defer master.Close()
	debugLog := filepath.Join(dir, "neomutt.log")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, neomutt, append([]string{"-n", "-d", "5", "-l", debugLog}, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "TERM=vt100", "LANG=C.UTF-8", "PATH=/usr/bin:/bin", "TMPDIR=" + dir,
		"XDG_CONFIG_HOME=" + dir, "XDG_CACHE_HOME=" + dir}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	// A session of its own with the pty as controlling terminal; the
	// whole process group dies at the deadline.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	// SIGTERM first, so that neomutt's debug log is flushed; SIGKILL
	// after WaitDelay if that is not enough.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var screen bytes.Buffer
	var mu sync.Mutex
	done := make(chan struct{})
	if err := cmd.Start(); err != nil {
		slave.Close()
		t.Fatal(err)
	}
	slave.Close()
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	err := cmd.Wait()
	// The reader ends when the last holder of the slave is gone (EIO);
	// closing the master ends it in any case.
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		master.Close()
		<-done
	}
	r := neomuttRun{code: cmd.ProcessState.ExitCode()}
	mu.Lock()
	r.screen = stripTerm(screen.String())
	mu.Unlock()
	// neomutt names the log it writes debugLog0 (older runs' shifted on).
	if b, err := os.ReadFile(debugLog + "0"); err == nil {
		r.debug = imapExchange(string(b))
	}
	if ctx.Err() != nil {
		t.Fatalf("neomutt %v did not finish in %v and was killed\n%s", args, timeout, r)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("neomutt %v: %v\n%s", args, err, r)
	}
	return r
}

// openPty opens a pseudo-terminal pair (24 lines of 132 columns).
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Fatal("unlockpt:", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Fatal("ptsname:", err)
	}
	if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 132}); err != nil {
		m.Close()
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	return m, s
}

// imapExchange keeps of neomutt's debug log the IMAP exchange ("5> "
// sent, "5< " received; a pipelined command goes on a line of its own)
// and neomutt's messages and errors, leaving out the UI's.
func imapExchange(log string) string {
	keep := regexp.MustCompile(`_d\(\) [0-9]+[<>] |^\[[^]]*\]<[EWM]> |^[^\[]`)
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if keep.MatchString(l) && !strings.Contains(l, "WARNING") && !strings.Contains(l, "personal information") && !strings.Contains(l, "in bug reports") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

var termEscapes = regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78DEHM]|[\x00-\x08\x0e-\x1f\x7f]`)

// stripTerm removes the terminal's control sequences, leaving the text
// neomutt drew, a cursor movement becoming a line break.
func stripTerm(s string) string {
	s = regexp.MustCompile(`\x1b\[[0-9;]*[Hf]`).ReplaceAllString(s, "\n")
	s = termEscapes.ReplaceAllString(s, "")
	s = strings.ReplaceAll(s, "\r", "")
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimRight(l, " "); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// maildirState lists a folder's messages as "subject flags", sorted, the
// flags being the letters after ":2," (a message still in new/ has none),
// and " label=L" for an X-Label header.
func maildirState(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			t.Fatal(err)
		}
		for _, de := range entries {
			b, err := os.ReadFile(filepath.Join(dir, sub, de.Name()))
			if err != nil {
				t.Fatal(err)
			}
			subject := "?"
			if m := regexp.MustCompile(`(?m)^Subject: (.*)$`).FindSubmatch(b); m != nil {
				subject = strings.TrimSpace(string(m[1]))
			}
			_, flags, _ := strings.Cut(de.Name(), ":2,")
			m := strings.TrimSpace(subject + " " + flags)
			if l := regexp.MustCompile(`(?m)^X-Label: (.*)$`).FindSubmatch(b); l != nil {
				m += " label=" + strings.TrimSpace(string(l[1]))
			}
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}

// neomuttTimeout bounds one neomutt run; a run takes about a second.
var neomuttTimeout = 60 * time.Second

func TestNeomutt(t *testing.T) {
	neomutt := testutil.NeedCommand(t, "neomutt")
	for _, tc := range []struct {
		name string
		// setup runs before neomutt, after INBOX got five unread
		// messages, uno..cinco in UID order
		setup func(t *testing.T, e *env, dir string)
		// args after "-F muttrc"; nil: open INBOX and push keys
		args []string
		keys string
		code int
		// the Maildir afterwards: "subject flags", sorted
		inbox, archive []string
		// known: what is wrong in imapd when this case fails
		known string
	}{
		{
			// Flag 1, save (move) 2 to a new =Archive, delete 3, copy 4
			// to the now existing =Archive, read 5, sync and quit.
			name: "flag-save-delete-copy-read",
			keys: `<first-entry><flag-message>` +
				`<next-entry><save-message>=Archive<enter>` +
				`<next-entry><delete-message>` +
				`<next-entry><copy-message>=Archive<enter>` +
				`<next-entry><display-message><exit>` +
				`<sync-mailbox><quit>`,
			inbox:   []string{"cinco S", "cuatro", "uno F"},
			archive: []string{"cuatro", "dos"},
		},
		{
			// Opening and quitting changes no message.
			name:  "open-quit",
			keys:  `<quit>`,
			inbox: []string{"cinco", "cuatro", "dos", "tres", "uno"},
		},
		{
			// Tag all, flag the tagged and mark them read.
			name:  "tagged-flags",
			keys:  `<tag-pattern>~A<enter><tag-prefix><flag-message><tag-prefix><clear-flag>N<sync-mailbox><quit>`,
			inbox: []string{"cinco FS", "cuatro FS", "dos FS", "tres FS", "uno FS"},
		},
		{
			// A message delivered while neomutt has INBOX open (by a
			// shell escape, so it happens between two keys) is announced
			// by the server on neomutt's next check, and can be flagged.
			name: "new-mail-while-open",
			setup: func(t *testing.T, e *env, dir string) {
				md := e.c.Maildir("st1", "ana")
				script := fmt.Sprintf("#!/bin/sh\nset -e\nprintf 'Subject: seis\\n\\n6\\n' > %s/tmp/seis\nmv %s/tmp/seis %s/new/1700000000.M1P1.neomutt\n", md, md, md)
				if err := os.WriteFile(filepath.Join(dir, "deliver"), []byte(script), 0o700); err != nil {
					t.Fatal(err)
				}
			},
			keys:  `<shell-escape>./deliver<enter><imap-fetch-mail><last-entry><flag-message><sync-mailbox><quit>`,
			inbox: []string{"cinco", "cuatro", "dos", "seis F", "tres", "uno"},
		},
		{
			// Leaving a folder for another syncs it first; the second
			// folder is selected on the same connection.
			name:    "change-folder",
			keys:    `<save-message>=Archive<enter><change-folder>=Archive<enter><flag-message><sync-mailbox><quit>`,
			inbox:   []string{"cinco", "cuatro", "dos", "tres"},
			archive: []string{"uno F"},
		},
		{
			// A label is a header: neomutt rewrites the message, APPENDing
			// the new one and expunging the old.
			name:  "edit-label",
			keys:  `<flag-message><edit-label>etiqueta<enter><sync-mailbox><quit>`,
			inbox: []string{"cinco", "cuatro", "dos", "tres", "uno F label=etiqueta"},
		},
		{
			// -Z: INBOX (the one of "mailboxes") has five messages no
			// client has seen yet, so neomutt opens it. neomutt (an
			// IMAP4rev1 client) judges its first STATUS of a folder in a
			// session by RECENT, later ones by UNSEEN and UIDNEXT.
			name:  "Z-new-mail",
			args:  []string{"-Z", "-e", `push "<flag-message><quit>"`},
			inbox: []string{"cinco", "cuatro", "dos", "tres", "uno F"},
			known: "imapd answers STATUS ... RECENT with 0 and SELECT with \"* 0 RECENT\" also for IMAP4rev1 clients, " +
				"for messages no session has seen (still in new/), so neomutt -Z finds \"No mailbox with new mail\" (RFC 3501 2.3.2: " +
				"such a message SHOULD be considered recent)",
		},
		{
			// -Z with every message read: exit status 1 at once.
			name: "Z-no-new-mail",
			setup: func(t *testing.T, e *env, dir string) {
				c := e.loggedIn()
				c.cmd("s1", "SELECT INBOX", "OK")
				c.cmd("s2", `STORE 1:* +FLAGS.SILENT (\Seen)`, "OK")
				c.cmd("s3", "LOGOUT", "OK")
			},
			args:  []string{"-Z"},
			code:  1,
			inbox: []string{"cinco S", "cuatro S", "dos S", "tres S", "uno S"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvSpec(t, true)
			e.deliver("ana", msg("uno", "1"), msg("dos", "2"), msg("tres", "3"), msg("cuatro", "4"), msg("cinco", "5"))
			dir := t.TempDir()
			conf := neomuttConf(t, e, dir)
			if tc.setup != nil {
				tc.setup(t, e, dir)
			}
			args := tc.args
			if args == nil {
				args = []string{"-f", "imap://" + e.addr + "/INBOX", "-e", `push "` + tc.keys + `"`}
			}
			r := runNeomutt(t, neomutt, dir, neomuttTimeout, append([]string{"-F", conf}, args...)...)
			md := e.c.Maildir("st1", "ana")
			inbox, archive := maildirState(t, md), maildirState(t, filepath.Join(md, ".Archive"))
			if r.code != tc.code || fmt.Sprint(inbox) != fmt.Sprint(tc.inbox) || fmt.Sprint(archive) != fmt.Sprint(tc.archive) {
				if tc.known != "" {
					t.Errorf("known imapd bug: %s", tc.known)
				}
				t.Fatalf("after neomutt: exit %d (want %d), INBOX %q (want %q), Archive %q (want %q)\n%s",
					r.code, tc.code, inbox, tc.inbox, archive, tc.archive, r)
			}
			// A strict client, but one that would carry on past a
			// rejected command: the server must have rejected none as
			// malformed.
			if bad := regexp.MustCompile(`(?m)_d\(\) 5< a[0-9]+ BAD .*$`).FindAllString(r.debug, -1); bad != nil {
				t.Fatalf("imapd answered BAD: %q\n%s", bad, r)
			}
		})
	}
}
