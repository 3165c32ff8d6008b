package nssd

import (
	"context"
	"errors"
	"fmt"

	"correo/src/pwclient"
	"correo/src/pwproto"
)

// PasswdSource adapts a pwclient.Client (encrypted UDP to passwdd, with
// primary/secondary failover) to Source.
type PasswdSource struct {
	Client *pwclient.Client
}

// LookupName implements Source.
func (s PasswdSource) LookupName(ctx context.Context, name string) (Passwd, error) {
	u, err := s.Client.LookupName(ctx, name)
	return fromUser(u), mapErr(err)
}

// LookupUID implements Source.
func (s PasswdSource) LookupUID(ctx context.Context, uid uint32) (Passwd, error) {
	u, err := s.Client.LookupUID(ctx, uid)
	return fromUser(u), mapErr(err)
}

// Enumerate implements Source.
func (s PasswdSource) Enumerate(ctx context.Context, cursor uint64, max int) ([]Passwd, uint64, error) {
	us, next, err := s.Client.Enumerate(ctx, cursor, max)
	if err != nil {
		return nil, 0, mapErr(err)
	}
	out := make([]Passwd, len(us))
	for i, u := range us {
		out[i] = fromUser(u)
	}
	return out, next, nil
}

// fromUser keeps what NSS shows. Disabled and moving users stay visible,
// as a locked account stays in /etc/passwd: their state matters to mail
// and login, which ask passwdd, not to `ls -l` or `id`.
func fromUser(u pwproto.User) Passwd {
	return Passwd{Name: u.Name, UID: u.UID, GID: u.GID, Gecos: u.Gecos, Home: u.Home, Shell: u.Shell}
}

// mapErr turns pwclient's errors into Source's sentinels, keeping the
// detail in the message.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pwclient.ErrNotFound):
		return fmt.Errorf("%w (%v)", ErrNotFound, err)
	case errors.Is(err, pwclient.ErrTempFail):
		return fmt.Errorf("%w (%v)", ErrTryAgain, err)
	default:
		// ErrNoServer, a closed client, a cancelled context, a version
		// mismatch: nothing authoritative was said.
		return fmt.Errorf("%w (%v)", ErrUnavailable, err)
	}
}
