package smtpd

import (
	"errors"
	"testing"
	"time"
)

func TestLoginServer(t *testing.T) {
	var gotUser, gotPass string
	verify := func(u, p string) error {
		gotUser, gotPass = u, p
		if p != "secret" {
			return errors.New("denied")
		}
		return nil
	}
	// Prompted for both.
	l := &loginServer{verify: verify}
	if ch, done, err := l.Next(nil); string(ch) != "Username:" || done || err != nil {
		t.Fatalf("first step: %q %v %v", ch, done, err)
	}
	if ch, done, err := l.Next([]byte("ana")); string(ch) != "Password:" || done || err != nil {
		t.Fatalf("second step: %q %v %v", ch, done, err)
	}
	if _, done, err := l.Next([]byte("secret")); !done || err != nil || gotUser != "ana" || gotPass != "secret" {
		t.Fatalf("last step: %v %v %q %q", done, err, gotUser, gotPass)
	}
	// AUTH LOGIN <user>: the initial response is the user name.
	l = &loginServer{verify: verify}
	if ch, _, _ := l.Next([]byte("bob")); string(ch) != "Password:" {
		t.Fatalf("initial response: %q", ch)
	}
	if _, done, err := l.Next([]byte("wrong")); done || err == nil || gotUser != "bob" {
		t.Fatalf("wrong password: %v %v", done, err)
	}
}

func TestHourlyCount(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	r := &Relay{sent: map[string][]time.Time{}, now: func() time.Time { return now }}
	for range 3 {
		r.queued(&Session{User: "ana"})
		now = now.Add(20 * time.Minute)
	}
	// Sent at 12:00, 12:20, 12:40; at 13:01 the first has aged out.
	now = now.Add(time.Minute)
	if n := r.recent("ana"); n != 2 {
		t.Errorf("recent = %d, want 2", n)
	}
	r.queued(&Session{}) // unauthenticated: not counted
	if len(r.sent) != 1 {
		t.Errorf("counts for %d users, want 1", len(r.sent))
	}
	now = now.Add(2 * time.Hour)
	if n := r.recent("ana"); n != 0 || len(r.sent) != 0 {
		t.Errorf("after two hours: %d, %d users", n, len(r.sent))
	}
}
