package postfixmap

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"correo/src/cluster"
	"correo/src/pwclient"
	"correo/src/pwproto"
	"correo/src/socketmap"
)

const profile = `[cluster]
name = "t"
domains = ["correo.test", "other.test"]
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
roles = ["passwd-primary", "mx"]
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
`

// fakeDir resolves local parts the way passwdd does (aliases, "+detail"
// stripped) from a fixed list, and fails as told.
type fakeDir struct {
	users []pwproto.User
	err   error
	asked []string
}

func (d *fakeDir) LookupAddr(_ context.Context, addr string) (pwproto.User, error) {
	d.asked = append(d.asked, addr)
	if d.err != nil {
		return pwproto.User{}, d.err
	}
	local := addr[:strings.LastIndexByte(addr, '@')]
	for _, u := range d.users {
		if u.Name == local {
			return u, nil
		}
		for _, a := range u.Aliases {
			if a == local {
				return u, nil
			}
		}
	}
	return pwproto.User{}, fmt.Errorf("address %s: %w", addr, pwclient.ErrNotFound)
}

func load(t *testing.T) *cluster.Profile {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p.toml")
	os.WriteFile(path, []byte(profile), 0o644)
	p, err := cluster.Load(path, cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLookup(t *testing.T) {
	dir := &fakeDir{users: []pwproto.User{
		{Name: "juan", Storage: "store1", Aliases: []string{"jperez"}},
		{Name: "eva", Storage: "store2"},
		{Name: "fede", Storage: "store1", State: pwproto.StateDisabled, Aliases: []string{"fefe"}},
		{Name: "mia", Storage: "store2", State: pwproto.StateMoving},
		{Name: "lost", Storage: "gone"},
	}}
	m := &Maps{Dir: dir, Profile: load(t)}
	ok := func(v string) socketmap.Reply { return socketmap.Reply{Status: socketmap.OK, Value: v} }
	nf := socketmap.Reply{Status: socketmap.NotFound}
	cases := []struct {
		name, key string
		want      socketmap.Reply
		asks      bool // whether passwd is asked at all
	}{
		{MapMailbox, "juan@correo.test", ok("j/u/a/juan/Maildir/"), true},
		{MapMailbox, "Juan@Correo.TEST", ok("j/u/a/juan/Maildir/"), true},
		{MapMailbox, "jperez@correo.test", ok("j/u/a/juan/Maildir/"), true},
		{MapMailbox, "juan+lists@correo.test", ok("j/u/a/juan/Maildir/"), true},
		{MapMailbox, "nadie@correo.test", nf, true},
		{MapMailbox, "fede@correo.test", nf, true},
		{MapMailbox, "mia@correo.test", ok("m/i/a/mia/Maildir/"), true},
		{MapMailbox, "juan@example.org", nf, false},
		{MapMailbox, "@correo.test", nf, false},
		{MapMailbox, "correo.test", nf, false},
		{MapMailbox, "juan", nf, false},
		{MapMailbox, "../etc@correo.test", nf, false},
		{MapMailbox, "a/b@correo.test", nf, false},
		{MapMailbox, "a\x00b@correo.test", nf, false},
		{MapMailbox, "..@correo.test", nf, false},
		{MapMailbox, "juan+../x@correo.test", nf, false},
		{MapMailbox, "juan+@correo.test", nf, false},
		{MapMailbox, `"juan"@correo.test`, nf, false},
		{MapMailbox, "a@b@correo.test", nf, false},
		{MapMailbox, strings.Repeat("a", 65) + "@correo.test", nf, false},
		{MapRecipient, "jperez@other.test", ok("juan@other.test"), true},
		{MapRecipient, "fede@correo.test", nf, true},
		{MapRecipient, "nadie@correo.test", nf, true},
		{MapAlias, "jperez@correo.test", ok("juan@correo.test"), true},
		{MapAlias, "juan@correo.test", nf, true},
		{MapAlias, "jperez+x@correo.test", ok("juan+x@correo.test"), true},
		{MapAlias, "juan+x@correo.test", nf, true},
		{MapAlias, "fefe@correo.test", nf, true},
		{MapTransport, "juan@correo.test", ok("lmtp:inet:[10.77.0.31]:24"), true},
		{MapTransport, "jperez+x@correo.test", ok("lmtp:inet:[10.77.0.31]:24"), true},
		{MapTransport, "eva@other.test", ok("lmtp:inet:[10.77.0.32]:24"), true},
		{MapTransport, "fede@correo.test", ok("lmtp:inet:[10.77.0.31]:24"), true},
		{MapTransport, "correo.test", nf, false},
		{MapTransport, "nadie@correo.test", nf, true},
	}
	for _, tc := range cases {
		dir.asked = nil
		got := m.Lookup(context.Background(), tc.name, tc.key)
		if got != tc.want {
			t.Errorf("%s %q: got %v, want %v", tc.name, tc.key, got, tc.want)
		}
		if asked := len(dir.asked) > 0; asked != tc.asks {
			t.Errorf("%s %q: passwd asked %v, want %v", tc.name, tc.key, dir.asked, tc.asks)
		}
	}

	// A storage host passwd names but this profile lacks: defer.
	if got := m.Lookup(context.Background(), MapTransport, "lost@correo.test"); got.Status != socketmap.Temp || !strings.Contains(got.Value, `"gone"`) {
		t.Errorf("unknown storage host: %v", got)
	}
	// A map main.cf misspelt: PERM, naming the maps there are.
	if got := m.Lookup(context.Background(), "virtual_mailboxes", "juan@correo.test"); got.Status != socketmap.Perm || !strings.Contains(got.Value, "virtual_mailbox, virtual_alias") {
		t.Errorf("unknown map: %v", got)
	}
}

// Whatever passwd fails with, other than "no such user", must defer the
// mail: TEMP in every map, never NOTFOUND.
func TestPasswdDown(t *testing.T) {
	p := load(t)
	for _, err := range []error{
		fmt.Errorf("user x: %w", pwclient.ErrNoServer),
		fmt.Errorf("user x: %w", pwclient.ErrTempFail),
		fmt.Errorf("user x: %w", pwclient.ErrBadRequest),
		pwclient.ErrClosed,
		context.DeadlineExceeded,
	} {
		m := &Maps{Dir: &fakeDir{err: err}, Profile: p}
		for _, name := range []string{MapMailbox, MapAlias, MapRecipient, MapTransport} {
			got := m.Lookup(context.Background(), name, "juan@correo.test")
			if got.Status != socketmap.Temp || !strings.Contains(got.Value, err.Error()) {
				t.Errorf("%s with %v: got %v, want TEMP naming the error", name, err, got)
			}
		}
	}
}
