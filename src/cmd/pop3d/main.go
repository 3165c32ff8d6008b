// Command pop3d is the POP3 server of a storage host (package pop3): it
// serves the Maildirs of the users whose mailboxes live on this host, on
// the profile's pop3_backend port, to the cluster's POP proxies. Clients
// reach it through mailproxy, which sends a PROXY v2 header so that pop3d
// logs the real client address; a PROXY header from any address other
// than a mailproxy host of the profile is refused.
//
//	pop3d -profile hosts/example.toml -host st1 -state /var/lib/correo/pop3d
//
// Every login is checked with passwdd again, even one the proxy already
// checked: a forged PROXY header or a compromised proxy address then
// opens no mailbox without the user's password. It runs as the service
// user that owns the data directory, like pdeliveryd.
package main

import (
	"errors"
	"fmt"
	"io"

	"correo/src/cluster"
	"correo/src/daemon"
	"correo/src/pop3"
	"correo/src/ticket"
	"correo/src/tlsconf"
)

func main() { daemon.Main("pop3d", run) }

func run(args []string, stderr io.Writer) error {
	f := daemon.NewFlags("pop3d")
	f.FlagSet.SetOutput(stderr)
	env, err := f.Start(args, cluster.RoleStorage)
	if err != nil {
		return err
	}
	defer env.Close()
	log := env.Log.Logger
	p, h := env.Profile, env.Host
	if h.Storage == nil || h.Storage.DataDir == "" {
		return fmt.Errorf("%s: host %s has no [host.storage] data_dir", p.Source, h.Name)
	}
	users, ring, err := env.Passwd()
	if err != nil {
		return err
	}
	defer users.Close()
	// Without [host.tls] STLS is simply not offered.
	tlsCfg, err := env.TLS()
	if errors.Is(err, tlsconf.ErrNoTLS) {
		tlsCfg, err = nil, nil
	}
	if err != nil {
		return err
	}
	tickets, err := ticket.New(ring)
	if err != nil {
		return err
	}
	reg, err := env.Metrics()
	if err != nil {
		return err
	}
	srv, err := pop3.New(pop3.Config{Profile: p, Host: h, Users: users, Tickets: tickets, TLS: tlsCfg, Log: log, Metrics: pop3.NewMetrics(reg)})
	if err != nil {
		return err
	}
	ln, err := env.Listen(cluster.SvcPOP3Backend)
	if err != nil {
		return fmt.Errorf("POP3: %w", err)
	}
	env.Go("pop3_backend", func() error { return srv.Serve(ln) })
	var proxies []string
	for _, ph := range p.HostsWithRole(cluster.RoleMailProxy) {
		proxies = append(proxies, ph.Addr().String())
	}
	log.Info("serving POP3", "addr", ln.Addr().String(), "data_dir", h.Storage.DataDir, "stls", tlsCfg != nil,
		"proxy_protocol_from", proxies)
	// Sessions left when the grace period ends are dropped, which deletes
	// nothing: a DELE takes effect only at QUIT.
	return env.Run(srv)
}
