// Command imapd is the IMAP server of a storage host (package imap): it
// serves the users stored on this host, over the same Maildirs that
// pdeliveryd fills and pop3d serves, on the profile's imap_backend port,
// to the cluster's proxies. Clients reach it through the proxy, which
// sends a PROXY v2 header with a login ticket; a client on the cluster
// network (an operator's test) may connect directly.
//
//	imapd -profile hosts/example.toml -host st1 -state /var/lib/correo/imapd
package main

import (
	"errors"
	"fmt"
	"io"

	"correo/src/cluster"
	"correo/src/daemon"
	"correo/src/imap"
	"correo/src/ticket"
	"correo/src/tlsconf"
)

func main() { daemon.Main("imapd", run) }

func run(args []string, stderr io.Writer) error {
	f := daemon.NewFlags("imapd")
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
	// Without [host.tls] STARTTLS is simply not offered.
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
	srv, err := imap.New(imap.Config{Profile: p, Host: h, Users: users, Tickets: tickets, TLS: tlsCfg, Log: log, Metrics: imap.NewMetrics(reg)})
	if err != nil {
		return err
	}
	ln, err := env.Listen(cluster.SvcIMAPBackend)
	if err != nil {
		return fmt.Errorf("IMAP: %w", err)
	}
	env.Go("imap_backend", func() error { return srv.Serve(ln) })
	var proxies []string
	for _, ph := range p.HostsWithRole(cluster.RoleMailProxy) {
		proxies = append(proxies, ph.Addr().String())
	}
	log.Info("serving IMAP", "addr", ln.Addr().String(), "data_dir", h.Storage.DataDir, "starttls", tlsCfg != nil,
		"proxy_protocol_from", proxies)
	// Sessions left when the grace period ends are dropped: everything a
	// client was told is already on disk.
	return env.Run(srv)
}
