package checkpassword

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"correo/src/cluster"
	"correo/src/pwclient"
	"correo/src/pwproto"
)

func TestReadRequest(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		in   string
		env  map[string]string
		want Request
		err  string
	}{
		{in: "ana\x00s3cret\x001700000000\x00", env: map[string]string{"TCPREMOTEIP": "192.0.2.1"}, want: Request{User: "ana", Password: "s3cret", RemoteIP: "192.0.2.1"}},
		{in: "ana\x00\x00", env: map[string]string{"AUTHORIZED": "1"}, want: Request{User: "ana", Authorized: true}},
		{in: "ana", err: "no NUL-terminated"},
		{in: "\x00pw\x00", err: "empty user"},
		{in: strings.Repeat("a", 600), err: "more than 512"},
	}
	for _, tc := range cases {
		got, err := ReadRequest(strings.NewReader(tc.in), env(tc.env))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.in, err, tc.err)
			}
		} else if err != nil || got != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.in, got, err, tc.want)
		}
	}
}

type fakeDir struct{ err error }

var users = map[string]pwproto.User{
	"ana":  {Name: "ana", Storage: "store1", Home: "/srv/mail/a/n/a/ana"},
	"eva":  {Name: "eva", Storage: "store2", Home: "/srv/mail/e/v/a/eva"},
	"fede": {Name: "fede", Storage: "store1", Home: "/srv/mail/f/e/d/fede", State: pwproto.StateDisabled},
	"mia":  {Name: "mia", Storage: "store1", Home: "/srv/mail/m/i/a/mia", State: pwproto.StateMoving},
}

func (d fakeDir) LookupName(_ context.Context, name string) (pwproto.User, error) {
	if d.err != nil {
		return pwproto.User{}, d.err
	}
	if u, ok := users[name]; ok {
		return u, nil
	}
	return pwproto.User{}, pwclient.ErrNotFound
}

func (d fakeDir) Authenticate(ctx context.Context, name, pw, _ string) (pwproto.User, error) {
	u, err := d.LookupName(ctx, name)
	if err == pwclient.ErrNotFound || (err == nil && pw != "s3cret") {
		return pwproto.User{}, pwclient.ErrDenied
	}
	return u, err
}

type statInfo struct{ os.FileInfo }

func (statInfo) Sys() any           { return &syscall.Stat_t{Uid: 998, Gid: 997} }
func (statInfo) Name() string       { return "mail" }
func (statInfo) ModTime() time.Time { return time.Time{} }

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.toml")
	os.WriteFile(path, []byte(`[cluster]
name = "t"
domains = ["correo.test"]
network = "10.77.0.0/24"
key_file = "/nonexistent/cluster.key"
layout = "first3"
placement = "letters"
[cluster.passwd]
udp_port = 7001
tcp_port = 7002
[[host]]
name = "pw1"
address = "10.77.0.5"
roles = ["passwd-primary"]
[[host]]
name = "store1"
address = "10.77.0.31"
roles = ["storage"]
[host.storage]
data_dir = "/srv/mail"
[[host]]
name = "store2"
address = "10.77.0.32"
roles = ["storage"]
[host.storage]
data_dir = "/srv/mail"
`), 0o644)
	p, err := cluster.Load(path, cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	stat := func(string) (os.FileInfo, error) { return statInfo{}, nil }
	c := &Checker{Dir: fakeDir{}, Profile: p, Host: "store1", Stat: stat}
	cases := []struct {
		req  Request
		exit int
		env  string // in the environment, on success
	}{
		{Request{User: "ana", Password: "s3cret"}, 0, "USER=ana HOME=/srv/mail/a/n/a/ana userdb_mail=maildir:/srv/mail/a/n/a/ana/Maildir userdb_uid=998 userdb_gid=997 EXTRA=userdb_mail userdb_uid userdb_gid"},
		{Request{User: "ANA@correo.test", Password: "s3cret"}, 0, "USER=ana HOME="},
		{Request{User: "ana", Authorized: true}, 0, "AUTHORIZED=2"},
		{Request{User: "ana", Password: "wrong"}, ExitFailed, ""},
		{Request{User: "nadie", Password: "s3cret"}, ExitFailed, ""},
		{Request{User: "nadie", Authorized: true}, ExitNoUser, ""},
		{Request{User: "ana@example.org", Password: "s3cret"}, ExitNoUser, ""},
		{Request{User: "../ana", Password: "s3cret"}, ExitNoUser, ""},
		{Request{User: "fede", Password: "s3cret"}, ExitFailed, ""},
		{Request{User: "mia", Password: "s3cret"}, ExitTempErr, ""},
		{Request{User: "eva", Password: "s3cret"}, ExitFailed, ""},
	}
	for _, tc := range cases {
		res := c.Check(context.Background(), tc.req)
		if res.Exit != tc.exit || !strings.Contains(strings.Join(res.Env, " "), tc.env) {
			t.Errorf("%+v: exit %d env %q (%s), want %d and %q", tc.req, res.Exit, res.Env, res.Why, tc.exit, tc.env)
		}
	}
	for _, err := range []error{pwclient.ErrNoServer, pwclient.ErrTempFail, fmt.Errorf("x: %w", context.DeadlineExceeded)} {
		c := &Checker{Dir: fakeDir{err: err}, Profile: p, Stat: stat}
		if res := c.Check(context.Background(), Request{User: "ana", Password: "s3cret"}); res.Exit != ExitTempErr {
			t.Errorf("passwd failing with %v: exit %d, want %d", err, res.Exit, ExitTempErr)
		}
	}
	// A data_dir owned by root: Dovecot would run the user as root.
	root := &Checker{Dir: fakeDir{}, Profile: p, Stat: func(string) (os.FileInfo, error) { return os.Stat("/") }}
	if res := root.Check(context.Background(), Request{User: "ana", Password: "s3cret"}); res.Exit != ExitTempErr || !strings.Contains(res.Why, "belongs to root") {
		t.Errorf("root-owned data_dir: %+v", res)
	}
}
