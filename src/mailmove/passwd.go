package mailmove

import (
	"context"
	"errors"
	"fmt"
	"time"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/pwadmin"
)

// PasswdDirectory is Directory over passwdd's admin protocol. It asks the
// primary, and the secondary when the primary is down or answers that it
// is no longer primary (a failover during the move), retrying for up to
// Patience: a move stopped between its freeze and its switch leaves the
// user unable to log in, so a step is retried rather than given up.
type PasswdDirectory struct {
	Profile  *cluster.Profile
	Ring     *keyfile.Ring
	Patience time.Duration // default 1 minute
}

func (d *PasswdDirectory) do(ctx context.Context, req pwadmin.Request) (pwadmin.Response, error) {
	patience := d.Patience
	if patience <= 0 {
		patience = time.Minute
	}
	deadline := time.Now().Add(patience)
	prim, sec := d.Profile.PasswdServers()
	var servers []*cluster.Host
	for _, h := range []*cluster.Host{prim, sec} {
		if h != nil {
			servers = append(servers, h)
		}
	}
	var last error
	for {
		for _, h := range servers {
			resp, err := d.one(ctx, h.Name, req)
			if err == nil {
				return resp, nil
			}
			var pe *pwadmin.Error
			if errors.As(err, &pe) && pe.Code != pwadmin.CodeNotPrimary && pe.Code != pwadmin.CodeBusy {
				return resp, err // a refusal the other server would repeat
			}
			last = err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return pwadmin.Response{}, fmt.Errorf("no passwd server took %s: %w", req.Op, last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (d *PasswdDirectory) one(ctx context.Context, host string, req pwadmin.Request) (pwadmin.Response, error) {
	addr, err := d.Profile.Listen(host, cluster.SvcPasswdAdmin)
	if err != nil {
		return pwadmin.Response{}, err
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pwadmin.Dial(dctx, addr.String(), d.Ring)
	if err != nil {
		return pwadmin.Response{}, err
	}
	defer c.Close()
	c.Timeout = 10 * time.Second
	return c.Do(req)
}

// User implements Directory.
func (d *PasswdDirectory) User(ctx context.Context, name string) (string, directory.State, error) {
	resp, err := d.do(ctx, pwadmin.Request{Op: pwadmin.OpUserShow, Name: name})
	if err != nil {
		return "", 0, err
	}
	if resp.User == nil {
		return "", 0, fmt.Errorf("passwd answered user.show of %s without a user", name)
	}
	return resp.User.Storage, resp.User.State, nil
}

// Set implements Directory.
func (d *PasswdDirectory) Set(ctx context.Context, name string, state directory.State, storage string) error {
	p := &directory.Patch{State: &state}
	if storage != "" {
		p.Storage = &storage
	}
	_, err := d.do(ctx, pwadmin.Request{Op: pwadmin.OpUserMod, Name: name, Patch: p})
	return err
}
