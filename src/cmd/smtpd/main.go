// Command smtpd is correo's SMTP server, for the mx and relay roles.
//
// On an mx host it receives the cluster's inbound mail on the profile's
// SMTP port (25), checks every recipient with passwdd, queues each message
// durably in <state>/queue before answering 250, and delivers it by LMTP
// to the storage hosts (packages smtpd, queue, delivery).
//
// On a relay host it takes the users' outgoing mail on 587 (STARTTLS,
// then AUTH PLAIN or LOGIN checked by passwdd) and 465 (implicit TLS), and
// the cluster's own hosts' mail on the relay port 25 without AUTH; local
// recipients go to storage like inbound mail, others to their domain's MX
// hosts (package remote) through the same queue, with its retries and
// bounces. A host with both roles serves both; when the mx and relay
// ports are the same address, one listener serves both policies.
//
//	smtpd -profile hosts/example.toml -host mx1 -state /var/lib/correo/smtpd
//
// Inspect the queue with `correoctl queue list -queue <state>/queue`.
// Ports 25, 465 and 587 are privileged: give the service
// CAP_NET_BIND_SERVICE rather than root.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"correo/src/cluster"
	"correo/src/daemon"
	"correo/src/delivery"
	"correo/src/pwclient"
	"correo/src/queue"
	"correo/src/remote"
	"correo/src/smtpd"
	"correo/src/tlsconf"
)

// QueueDir is the queue's directory in the state directory.
const QueueDir = "queue"

// shutdownGrace is how long messages already in DATA, and delivery
// attempts in progress, get after SIGTERM.
const shutdownGrace = 30 * time.Second

func main() {
	daemon.GCPercent(400)
	daemon.Main("smtpd", run)
}

func run(args []string, stderr io.Writer) error {
	f := daemon.NewFlags("smtpd")
	f.FlagSet.SetOutput(stderr)
	cmdTimeout := f.FlagSet.Duration("timeout", smtpd.DefaultLimits.CommandTimeout, "idle timeout for each command and each read of message data")
	dataTimeout := f.FlagSet.Duration("data-timeout", smtpd.DefaultLimits.DataTimeout, "bound on a whole DATA phase")
	workers := f.FlagSet.Int("workers", 32, "messages delivered at once")
	resolvers := f.FlagSet.String("resolvers", "", "relay: comma-separated name servers (host:port) for MX lookups; empty: /etc/resolv.conf")
	remotePort := f.FlagSet.Int("remote-port", 25, "relay: the port of other domains' MX hosts (tests)")
	lmtpSocket := f.FlagSet.String("lmtp-socket", delivery.DefaultSocket, "on a host that is also a storage host: this host's pdeliveryd Unix socket (TCP when it is unusable)")
	env, err := f.Start(args, cluster.RoleMX, cluster.RoleRelay)
	if err != nil {
		return err
	}
	defer env.Close()
	log := env.Log.Logger
	p, h := env.Profile, env.Host
	isMX, isRelay := h.HasRole(cluster.RoleMX), h.HasRole(cluster.RoleRelay)
	users, _, err := env.Passwd()
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
	// On a host that is also a storage host its own mailboxes are reached
	// through pdeliveryd's Unix socket, cheaper than TCP over loopback.
	socket := ""
	if h.HasRole(cluster.RoleStorage) {
		socket = *lmtpSocket
	}
	local, err := delivery.New(delivery.Config{Profile: p, Users: users, Local: h.Name, Socket: socket, HelloName: name, Log: log,
		MaxIdle: *workers})
	if err != nil {
		return err
	}
	defer local.Close()
	// Remote delivery only where the relay role is: an mx host never
	// sends to other domains (its bounces go out through a relay).
	var out queue.Deliverer
	if isRelay {
		var rs []string
		if *resolvers != "" {
			rs = strings.Split(*resolvers, ",")
		}
		rd, err := remote.New(remote.Config{Resolvers: rs, Port: *remotePort, HelloName: name, Log: log,
			CommandTimeout: *cmdTimeout})
		if err != nil {
			return err
		}
		defer rd.Close()
		out = rd
	}
	retry, lifetime := queue.RetryFromProfile(p)
	qdir := filepath.Join(env.StateDir, QueueDir)
	q, err := queue.Open(queue.Config{Dir: qdir, Local: local, Remote: out, Retry: retry, Lifetime: lifetime, Hostname: name,
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
	lns, err := listeners(p, h, srv, users, tlsCfg, isMX, isRelay)
	if err != nil {
		q.Close(context.Background())
		return err
	}
	errc := make(chan error, len(lns))
	lim := srv.Limits()
	for _, l := range lns {
		go func(l smtpd.Listener) { errc <- srv.Serve(l) }(l)
		log.Info("serving SMTP", "listener", l.Name, "listen", l.Listener.Addr().String(), "implicit_tls", l.ImplicitTLS)
	}
	log.Info("smtpd ready", "mx", isMX, "relay", isRelay, "queue", qdir, "queued", q.Len(), "starttls", tlsCfg != nil,
		"max_message_bytes", lim.MaxMessageBytes, "max_recipients", lim.MaxRecipients,
		"max_connections", lim.MaxConnections, "max_connections_per_client", lim.MaxConnectionsPerClient)
	// Every socket is bound: root is no longer needed.
	if err := env.DropPrivileges(); err != nil {
		return err
	}
	env.Ready()

	var runErr error
	select {
	case <-env.Ctx.Done():
		log.Info("stopping: finishing messages in progress", "grace", shutdownGrace.String())
	case err := <-errc:
		if err == nil || errors.Is(err, net.ErrClosed) {
			err = errors.New("an SMTP listener closed unexpectedly")
		}
		runErr = err
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, l := range lns {
		l.Listener.Close()
	}
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("stopped before every message in DATA was answered", "err", err)
	}
	if err := q.Close(ctx); err != nil {
		log.Warn("delivery attempts cut short; they are retried after the restart", "err", err)
	}
	log.Info("stopped")
	return runErr
}

// listeners opens the host's SMTP ports with their policies: mx on the
// SMTP port; relay on the relay port (the cluster's hosts), submission
// (587) and submissions (465, only with a certificate). When the mx and
// relay ports coincide, one listener serves both (outsiders deliver to
// local users, cluster hosts and authenticated users relay).
func listeners(p *cluster.Profile, h *cluster.Host, srv *smtpd.Server, users *pwclient.Client, tlsCfg *tls.Config,
	isMX, isRelay bool) (out []smtpd.Listener, err error) {
	defer func() {
		if err != nil {
			for _, l := range out {
				l.Listener.Close()
			}
			out = nil
		}
	}()
	open := func(name string, svc cluster.Service, pol smtpd.Policy, implicit bool) error {
		addr, err := p.Listen(h.Name, svc)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", addr.String())
		if err != nil {
			return fmt.Errorf("%s (%s): %w", name, svc, err)
		}
		out = append(out, smtpd.Listener{Name: name, Listener: ln, Policy: pol, ImplicitTLS: implicit})
		return nil
	}
	var relay *smtpd.Relay
	if isRelay {
		if relay, err = smtpd.NewRelay(srv, smtpd.RelayConfig{Auth: users}); err != nil {
			return nil, err
		}
	}
	shared := false
	if isMX && isRelay {
		a, _ := p.Listen(h.Name, cluster.SvcSMTP)
		b, _ := p.Listen(h.Name, cluster.SvcRelay)
		shared = a == b
	}
	if isMX {
		pol := smtpd.Policy{}
		name := "mx"
		if shared {
			pol, name = relay.MXPolicy(), "mx+relay"
		}
		if err := open(name, cluster.SvcSMTP, pol, false); err != nil {
			return out, err
		}
	}
	if !isRelay {
		return out, nil
	}
	if !shared {
		if err := open("relay", cluster.SvcRelay, relay.ClusterPolicy(), false); err != nil {
			return out, err
		}
	}
	if err := open("submission", cluster.SvcSubmission, relay.SubmissionPolicy(), false); err != nil {
		return out, err
	}
	if tlsCfg == nil {
		srv.Log().Warn("no [host.tls]: submissions (465) not served, and AUTH on 587 only if the profile's trusted_network allows plaintext", "host", h.Name)
		return out, nil
	}
	return out, open("submissions", cluster.SvcSubmissions, relay.SubmissionPolicy(), true)
}
