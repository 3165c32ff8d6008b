// Command popproxy is the cluster's POP3 entry point (package popproxy):
// it listens on the profile's pop3 (110, STLS) and pop3s (995, implicit
// TLS) ports, authenticates each user with passwdd, and connects them to
// the pop3d of their storage host.
//
//	popproxy -profile hosts/example.toml -host mx1 -state /var/lib/correo/popproxy
//
// Without [host.tls] in the profile only port 110 is served, without
// STLS; logins then work only on a trusted_network cluster.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"correo/src/cluster"
	"correo/src/daemon"
	"correo/src/popproxy"
	"correo/src/ticket"
	"correo/src/tlsconf"
)

const shutdownGrace = 10 * time.Second

func main() { daemon.Main("popproxy", run) }

func run(args []string, stderr io.Writer) error {
	f := daemon.NewFlags("popproxy")
	f.FlagSet.SetOutput(stderr)
	var lim popproxy.Limits
	f.FlagSet.DurationVar(&lim.FailDelay, "fail-delay", popproxy.DefaultLimits.FailDelay,
		"delay before answering a failed login; doubles per further failure from the same address")
	f.FlagSet.DurationVar(&lim.MaxFailDelay, "max-fail-delay", popproxy.DefaultLimits.MaxFailDelay, "cap on the failed-login delay")
	f.FlagSet.IntVar(&lim.MaxConnectionsPerClient, "max-conns-per-client", popproxy.DefaultLimits.MaxConnectionsPerClient,
		"concurrent sessions allowed from one client address")
	env, err := f.Start(args, cluster.RolePOPProxy)
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
	tlsCfg, err := tlsconf.ServerConfig(p, h)
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
	srv, err := popproxy.New(popproxy.Config{Profile: p, Host: h, Users: users, Tickets: tickets, TLS: tlsCfg, Log: log, Limits: lim})
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	addr, err := p.Listen(h.Name, cluster.SvcPOP3)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return fmt.Errorf("POP3: %w", err)
	}
	go func() { errc <- srv.Serve(ln) }()
	tlsAddr := "none"
	if tlsCfg != nil {
		a, err := p.Listen(h.Name, cluster.SvcPOP3S)
		if err != nil {
			return err
		}
		tln, err := net.Listen("tcp", a.String())
		if err != nil {
			srv.Close()
			return fmt.Errorf("POP3S: %w", err)
		}
		tlsAddr = a.String()
		go func() { errc <- srv.ServeTLS(tln) }()
	}
	log.Info("serving POP3 proxy", "pop3", addr.String(), "pop3s", tlsAddr, "backends", len(p.Endpoints(cluster.SvcPOP3Backend)))
	// Every socket is bound: root is no longer needed.
	if err := env.DropPrivileges(); err != nil {
		return err
	}
	env.Ready()
	select {
	case <-env.Ctx.Done():
		log.Info("stopping: letting sessions finish", "grace", shutdownGrace.String())
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		srv.Shutdown(ctx)
		log.Info("stopped")
		return nil
	case err := <-errc:
		srv.Close()
		if err == nil || errors.Is(err, net.ErrClosed) {
			return errors.New("a listener closed unexpectedly")
		}
		return err
	}
}
