// Command smtpd is correo's SMTP server. On an mx host it receives the
// cluster's inbound mail on the profile's SMTP port (25), checks every
// recipient with passwdd, queues each message durably in <state>/queue
// before answering 250, and delivers it by LMTP to the storage hosts
// (packages smtpd, queue, delivery).
//
//	smtpd -profile hosts/example.toml -host mx1 -state /var/lib/correo/smtpd
//
// The relay role (submission, AUTH, delivery to other domains) is not
// built yet: a relay-only host refuses to start, a host with both roles
// serves the mx role and says so. Inspect the queue with
// `correoctl queue list -queue <state>/queue`. Port 25 is privileged:
// give the service CAP_NET_BIND_SERVICE rather than root.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"time"

	"correo/src/cluster"
	"correo/src/daemon"
	"correo/src/delivery"
	"correo/src/keyfile"
	"correo/src/pwclient"
	"correo/src/queue"
	"correo/src/smtpd"
	"correo/src/tlsconf"
)

// QueueDir is the queue's directory in the state directory.
const QueueDir = "queue"

// shutdownGrace is how long messages already in DATA, and delivery
// attempts in progress, get after SIGTERM.
const shutdownGrace = 30 * time.Second

func main() { daemon.Main("smtpd", run) }

func run(args []string, stderr io.Writer) error {
	f := daemon.NewFlags("smtpd")
	f.FlagSet.SetOutput(stderr)
	cmdTimeout := f.FlagSet.Duration("timeout", smtpd.DefaultLimits.CommandTimeout, "idle timeout for each command and each read of message data")
	dataTimeout := f.FlagSet.Duration("data-timeout", smtpd.DefaultLimits.DataTimeout, "bound on a whole DATA phase")
	workers := f.FlagSet.Int("workers", 32, "messages delivered at once")
	env, err := f.Start(args, cluster.RoleMX, cluster.RoleRelay)
	if err != nil {
		return err
	}
	defer env.Close()
	log := env.Log.Logger
	p, h := env.Profile, env.Host
	if !h.HasRole(cluster.RoleMX) {
		return fmt.Errorf("%s: host %s has only the relay role, which smtpd does not serve yet (issue 7); give it role mx or do not start smtpd there", p.Source, h.Name)
	}
	if h.HasRole(cluster.RoleRelay) {
		log.Warn("the relay role is not built yet: serving the mx role only", "host", h.Name)
	}
	ring, err := keyfile.Load(p.Cluster.KeyFile)
	if err != nil {
		return err
	}
	users, err := pwclient.FromProfile(p, ring, log)
	if err != nil {
		return err
	}
	defer users.Close()
	name := h.Name
	if z := p.Cluster.DNS.Zone; z != "" {
		name += "." + z
	}
	// One kept connection per worker: every worker may be talking to
	// the same storage host, and a dial plus LHLO per message would cost
	// more than the delivery.
	local, err := delivery.New(delivery.Config{Profile: p, Users: users, Local: h.Name, HelloName: name, Log: log,
		MaxIdle: *workers})
	if err != nil {
		return err
	}
	defer local.Close()
	retry, lifetime := queue.RetryFromProfile(p)
	qdir := filepath.Join(env.StateDir, QueueDir)
	q, err := queue.Open(queue.Config{Dir: qdir, Local: local, Retry: retry, Lifetime: lifetime, Hostname: name,
		Workers: *workers, Log: log, Route: func(addr string) queue.Route {
			if d, _ := smtpd.Classify(p, addr); d == smtpd.Remote {
				return queue.RouteRemote
			}
			return queue.RouteLocal
		}})
	if err != nil {
		return err
	}
	tlsCfg, err := tlsconf.ServerConfig(p, h)
	switch {
	case errors.Is(err, tlsconf.ErrNoTLS):
		log.Warn("no [host.tls] in the profile: STARTTLS not offered", "host", h.Name)
		tlsCfg = nil
	case err != nil:
		q.Close(context.Background())
		return err
	}
	srv, err := smtpd.New(smtpd.Config{Profile: p, Host: h, Queue: q, Users: users, TLS: tlsCfg, Log: log,
		Limits: smtpd.Limits{CommandTimeout: *cmdTimeout, DataTimeout: *dataTimeout}})
	if err != nil {
		q.Close(context.Background())
		return err
	}
	addr, err := p.Listen(h.Name, cluster.SvcSMTP)
	if err != nil {
		q.Close(context.Background())
		return err
	}
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		q.Close(context.Background())
		return fmt.Errorf("SMTP: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(smtpd.Listener{Name: "mx", Listener: ln}) }()
	lim := srv.Limits()
	log.Info("serving SMTP (mx)", "listen", addr.String(), "queue", qdir, "queued", q.Len(), "starttls", tlsCfg != nil,
		"max_message_bytes", lim.MaxMessageBytes, "max_recipients", lim.MaxRecipients,
		"max_connections", lim.MaxConnections, "max_connections_per_client", lim.MaxConnectionsPerClient)
	env.Ready()

	var runErr error
	select {
	case <-env.Ctx.Done():
		log.Info("stopping: finishing messages in progress", "grace", shutdownGrace.String())
	case err := <-errc:
		if err == nil || errors.Is(err, net.ErrClosed) {
			err = errors.New("the SMTP listener closed unexpectedly")
		}
		runErr = err
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	ln.Close()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("stopped before every message in DATA was answered", "err", err)
	}
	if err := q.Close(ctx); err != nil {
		log.Warn("delivery attempts cut short; they are retried after the restart", "err", err)
	}
	log.Info("stopped")
	return runErr
}
