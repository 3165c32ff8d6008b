package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"correo/internal/benchfig"
	"correo/internal/clustertest"
	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/lmtpclient"
	"correo/src/mailbox"
)

// BenchmarkStorageScale shows how a storage host's costs grow with the
// mailbox: for mailboxes of CORREO_SCALE_MAILBOX messages (a comma list;
// default 100, 2 000 and 50 000, 2 KB each), the median of
//
//   - pop3d: a fresh session's USER/PASS, STAT and LIST (10 sessions);
//   - imapd: a fresh session's LOGIN and SELECT INBOX (10 sessions);
//   - pdeliveryd: one more LMTP delivery into that mailbox (20);
//   - the mailbox's usage scan (what a quota check costs when its cached
//     figure is stale; 5 scans).
//
// The first session of each server is a warm-up (it moves new/ to cur/
// and builds any index) and is not counted. Points go to
// CORREO_SCALE_DATA for the plot of make scale-bench. Asserts nothing.
func BenchmarkStorageScale(b *testing.B) {
	const (
		password = "benchpw"
		hash     = "$6$saltsalt$dM/CtIoV3c1qmNuOWB4n7dKEkbOLye48ygRmj2kwQpO9x9IIWuBkU4RJNTovcWUBtqp0AmbZ2WtYb.n39znnR."
	)
	sizes := []int{100, 2000, 50000}
	if v := os.Getenv("CORREO_SCALE_MAILBOX"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("CORREO_SCALE_MAILBOX=%q: %q is not a positive number", v, f)
			}
			sizes = append(sizes, n)
		}
	}
	dir := clustertest.BenchDir(b, "storagescale-")
	c := clustertest.NewCluster(b, clustertest.Spec{LogLevel: "warn", TrustedNetwork: true, Hosts: []clustertest.HostSpec{
		{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}, DataDir: dir},
	}})
	c.StartDaemon(b, "passwdd", "st1", false)
	var users []directory.User
	for _, n := range sizes {
		users = append(users, directory.User{Name: fmt.Sprintf("box%d", n), Storage: "st1", Hash: hash})
	}
	c.AddUsers(b, users...)
	var msg bytes.Buffer
	msg.WriteString("From: load@example.org\nSubject: scale\n\n")
	for msg.Len() < 2048 {
		msg.WriteString("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\n")
	}
	for _, u := range users {
		md := mailbox.New(c.Maildir("st1", u.Name))
		n, _ := strconv.Atoi(strings.TrimPrefix(u.Name, "box"))
		for i := 0; i < n; i++ {
			if _, err := md.Deliver(bytes.NewReader(msg.Bytes())); err != nil {
				b.Fatal(err)
			}
		}
	}
	c.StartDaemon(b, "pop3d", "st1", false)
	c.StartDaemon(b, "imapd", "st1", false)
	c.StartDaemon(b, "pdeliveryd", "st1", false)
	pop, _ := c.Profile.Listen("st1", cluster.SvcPOP3Backend)
	imap, _ := c.Profile.Listen("st1", cluster.SvcIMAPBackend)
	lmtp, _ := c.Profile.Listen("st1", cluster.SvcLMTP)

	timed := func(runs int, op func() error) float64 {
		var ms []float64
		for i := 0; i < runs; i++ {
			t0 := time.Now()
			if err := op(); err != nil {
				b.Fatal(err)
			}
			ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
		}
		sort.Float64s(ms)
		return ms[len(ms)/2]
	}
	for _, u := range users {
		n, _ := strconv.Atoi(strings.TrimPrefix(u.Name, "box"))
		popOp := func() error { return session(pop.String(), u.Name, password, true, 0) }
		imapOp := func() error { return imapSelect(imap.String(), u.Name, password) }
		popOp()
		imapOp()
		popMS := timed(10, popOp)
		imapMS := timed(10, imapOp)
		nc, err := net.Dial("tcp", lmtp.String())
		if err != nil {
			b.Fatal(err)
		}
		lc, err := lmtpclient.New(nc, "scale.example")
		if err != nil {
			b.Fatal(err)
		}
		deliverMS := timed(20, func() error {
			out, err := lc.Send("load@example.org", int64(msg.Len()), []string{u.Name + "@correo.test"}, bytes.NewReader(msg.Bytes()))
			if err == nil && (len(out.Final) != 1 || out.Final[0].Code != 250) {
				err = fmt.Errorf("delivery to %s: %+v", u.Name, out.Final)
			}
			return err
		})
		lc.Close()
		usageMS := timed(5, func() error {
			_, err := mailbox.Usage(c.Maildir("st1", u.Name))
			return err
		})
		fmt.Printf("mailbox of %d messages: pop3d login+STAT+LIST %.2f ms, imapd LOGIN+SELECT %.2f ms, LMTP delivery %.2f ms, usage scan %.2f ms\n",
			n, popMS, imapMS, deliverMS, usageMS)
		for _, p := range []struct {
			series string
			y      float64
		}{
			{"pop3_login_list_ms", popMS}, {"imap_login_select_ms", imapMS}, {"lmtp_delivery_ms", deliverMS}, {"mailbox_usage_ms", usageMS},
		} {
			if err := benchfig.RecordScale(p.series, float64(n), p.y); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// imapSelect logs in to addr and selects INBOX, reading every untagged
// answer, then logs out.
func imapSelect(addr, user, pw string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReaderSize(c, 64<<10)
	until := func(tag string) error {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if tag == "*" || strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") && !strings.HasPrefix(l, "* OK") {
					return fmt.Errorf("%s: %q", addr, strings.TrimSpace(l))
				}
				return nil
			}
		}
	}
	if err := until("*"); err != nil { // greeting
		return err
	}
	fmt.Fprintf(c, "a LOGIN %s %s\r\n", user, pw)
	if err := until("a"); err != nil {
		return err
	}
	fmt.Fprintf(c, "b SELECT INBOX\r\n")
	if err := until("b"); err != nil {
		return err
	}
	fmt.Fprintf(c, "c LOGOUT\r\n")
	return nil
}
