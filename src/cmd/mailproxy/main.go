// Command mailproxy is the cluster's POP3 entry point (package mailproxy):
// it listens on the profile's pop3 (110, STLS) and pop3s (995, implicit
// TLS) ports, authenticates each user with passwdd, and connects them to
// the pop3d of their storage host.
//
//	mailproxy -profile hosts/example.toml -host mx1 -state /var/lib/correo/mailproxy
//
// Without [host.tls] in the profile only port 110 is served, without
// STLS; logins then work only on a trusted_network cluster.
package main

import (
	"errors"
	"fmt"
	"io"

	"correo/src/cluster"
	"correo/src/daemon"
	"correo/src/mailproxy"
	"correo/src/ticket"
	"correo/src/tlsconf"
)

func main() { daemon.Main("mailproxy", run) }

func run(args []string, stderr io.Writer) error {
	f := daemon.NewFlags("mailproxy")
	f.FlagSet.SetOutput(stderr)
	env, err := f.Start(args, cluster.RoleMailProxy)
	if err != nil {
		return err
	}
	defer env.Close()
	log := env.Log.Logger
	p, h := env.Profile, env.Host
	users, ring, err := env.Passwd()
	if err != nil {
		return err
	}
	defer users.Close()
	tlsCfg, err := env.TLS()
	if errors.Is(err, tlsconf.ErrNoTLS) {
		tlsCfg, err = nil, nil
		if !p.Cluster.TrustedNetwork {
			log.Error("no [host.tls] in the profile and trusted_network is off: no client can log in; add a certificate")
		}
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
	srv, err := mailproxy.New(mailproxy.Config{Profile: p, Host: h, Users: users, Tickets: tickets, TLS: tlsCfg, Log: log,
		Limits: mailproxy.LimitsFromProfile(h), Metrics: mailproxy.NewMetrics(reg)})
	if err != nil {
		return err
	}
	ln, err := env.Listen(cluster.SvcPOP3)
	if err != nil {
		return fmt.Errorf("POP3: %w", err)
	}
	env.Go("pop3", func() error { return srv.Serve(ln) })
	tlsAddr := "none"
	if tlsCfg != nil {
		tln, err := env.Listen(cluster.SvcPOP3S)
		if err != nil {
			return fmt.Errorf("POP3S: %w", err)
		}
		tlsAddr = tln.Addr().String()
		env.Go("pop3s", func() error { return srv.ServeTLS(tln) })
	}
	iln, err := env.Listen(cluster.SvcIMAP)
	if err != nil {
		return fmt.Errorf("IMAP: %w", err)
	}
	env.Go("imap", func() error { return srv.ServeIMAP(iln) })
	imapsAddr := "none"
	if tlsCfg != nil {
		tln, err := env.Listen(cluster.SvcIMAPS)
		if err != nil {
			return fmt.Errorf("IMAPS: %w", err)
		}
		imapsAddr = tln.Addr().String()
		env.Go("imaps", func() error { return srv.ServeIMAPS(tln) })
	}
	log.Info("serving POP3 and IMAP proxy", "pop3", ln.Addr().String(), "pop3s", tlsAddr, "imap", iln.Addr().String(), "imaps", imapsAddr,
		"pop3_backends", len(p.Endpoints(cluster.SvcPOP3Backend)), "imap_backends", len(p.Endpoints(cluster.SvcIMAPBackend)))
	return env.Run(srv)
}
