package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"correo/internal/clustertest"
	"correo/src/cluster"
	"correo/src/directory"
)

// TestLoginStorm: more uncached logins at once than passwdd can verify.
// passwdd runs one verifier (GOMAXPROCS=1) with room for one waiting
// login, and the users' hashes have the production cost, so one check
// takes tens of milliseconds on any machine (about a second under -race)
// while the whole burst reaches passwdd within a few: the rest must be
// told [SYS/TEMP] at once, none may wait for a timeout or get any other
// answer, and a client that tries again later gets in.
func TestLoginStorm(t *testing.T) {
	const clients = 12
	c := clustertest.NewCluster(t, clustertest.Spec{PasswdTimeout: "5s", PasswdTOML: "auth_queue = 1\n", TrustedNetwork: true,
		Hosts: []clustertest.HostSpec{
			{Name: "st1", Address: "127.0.0.1", Roles: []string{"passwd-primary", "storage"}},
			{Name: "px", Address: "127.0.0.30", Roles: []string{"mailproxy"}},
		}})
	bin := clustertest.Build(t, "passwdd", true)
	clustertest.StartNotify(t, "passwdd@st1", []string{bin, "-profile", c.ProfilePath, "-host", "st1",
		"-state", c.StateDir("st1", "passwdd")}, []string{"GOMAXPROCS=1"})
	// One password for all: passwdd's cache is per user, so each login
	// still needs its own check.
	h, err := bcrypt.GenerateFromPassword([]byte("storm-pw"), directory.DefaultBcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	var users []directory.User
	for i := range clients {
		users = append(users, directory.User{Name: fmt.Sprintf("storm%02d", i), Storage: "st1", Hash: string(h)})
	}
	c.AddUsers(t, users...)
	c.StartDaemon(t, "pop3d", "st1", true)
	c.StartDaemon(t, "mailproxy", "px", true)
	a, _ := c.Profile.Listen("px", cluster.SvcPOP3)

	type session struct {
		conn net.Conn
		r    *bufio.Reader
	}
	open := func(name string) session {
		conn, err := net.Dial("tcp", a.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(2 * time.Minute))
		s := session{conn, bufio.NewReader(conn)}
		for _, cmd := range []string{"", "USER " + name} {
			if cmd != "" {
				fmt.Fprintf(conn, "%s\r\n", cmd)
			}
			if l, err := s.r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
				t.Fatalf("%s: %q %v", name, l, err)
			}
		}
		return s
	}
	sessions := make([]session, clients)
	for i := range sessions {
		sessions[i] = open(users[i].Name)
	}
	answers := make([]string, clients)
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fmt.Fprintf(s.conn, "PASS storm-pw\r\n")
			l, err := s.r.ReadString('\n')
			if err != nil {
				l = "error: " + err.Error()
			}
			answers[i] = strings.TrimSpace(l)
		}()
	}
	wg.Wait()
	var ok, temp []int
	for i, l := range answers {
		switch {
		case strings.HasPrefix(l, "+OK"):
			ok = append(ok, i)
		case strings.HasPrefix(l, "-ERR [SYS/TEMP]"):
			temp = append(temp, i)
		default:
			t.Errorf("%s: %q, want +OK or -ERR [SYS/TEMP]", users[i].Name, l)
		}
	}
	if len(ok) == 0 || len(temp) == 0 {
		t.Fatalf("%d logins in, %d told to try later (answers %q): want both", len(ok), len(temp), answers)
	}
	t.Logf("storm of %d: %d in, %d told [SYS/TEMP]", clients, len(ok), len(temp))
	// Later, one at a time, a refused client gets in.
	for _, i := range temp[:min(2, len(temp))] {
		s := open(users[i].Name)
		fmt.Fprintf(s.conn, "PASS storm-pw\r\n")
		if l, err := s.r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
			t.Errorf("%s trying again: %q %v", users[i].Name, l, err)
		}
	}
}
