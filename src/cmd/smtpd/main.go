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
// Limits and timeouts are the profile's [host.smtpd]. The flags besides
// -profile, -host and -state are aids: -resolvers and -remote-port point
// the relay at test name servers and MX hosts, -lmtp-socket at a
// pdeliveryd whose state directory is not the default.
//
// Inspect the queue with `correoctl queue list -queue <state>/queue`.
// Ports 25, 465 and 587 are privileged: give the service
// CAP_NET_BIND_SERVICE rather than root.
package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"

	"correo/src/cluster"
	"correo/src/daemon"
	"correo/src/delivery"
	"correo/src/mailauth"
	"correo/src/queue"
	"correo/src/remote"
	"correo/src/smtpd"
	"correo/src/tlsconf"
)

// QueueDir is the queue's directory in the state directory.
const QueueDir = "queue"

func main() {
	daemon.GCPercent(400)
	daemon.Main("smtpd", run)
}

func run(args []string, stderr io.Writer) error {
	f := daemon.NewFlags("smtpd")
	f.FlagSet.SetOutput(stderr)
	resolvers := f.FlagSet.String("resolvers", "", "for tests: comma-separated name servers (host:port) for the relay's MX lookups and the mx's SPF, DKIM and DMARC checks; empty: /etc/resolv.conf")
	remotePort := f.FlagSet.Int("remote-port", 25, "relay, for tests: the port of other domains' MX hosts")
	lmtpSocket := f.FlagSet.String("lmtp-socket", delivery.DefaultSocket, "on a host that is also a storage host: this host's pdeliveryd Unix socket (TCP when it is unusable)")
	env, err := f.Start(args, cluster.RoleMX, cluster.RoleRelay)
	if err != nil {
		return err
	}
	defer env.Close()
	log := env.Log.Logger
	p, h := env.Profile, env.Host
	lim := h.SMTPD // filled in by the profile loader on every mx and relay host
	users, ring, err := env.Passwd()
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
		MaxIdle: lim.Workers, Ring: ring})
	if err != nil {
		return err
	}
	defer local.Close()
	// Remote delivery only where the relay role is: an mx host never
	// sends to other domains (its bounces go out through a relay).
	var out queue.Deliverer
	if h.HasRole(cluster.RoleRelay) {
		var rs []string
		if *resolvers != "" {
			rs = strings.Split(*resolvers, ",")
		}
		rd, err := remote.New(remote.Config{Resolvers: rs, Port: *remotePort, HelloName: name, Log: log,
			CommandTimeout: lim.CommandTimeout.Std()})
		if err != nil {
			return err
		}
		defer rd.Close()
		out = rd
	}
	reg, err := env.Metrics()
	if err != nil {
		return err
	}
	var milterNames []string
	for _, m := range p.Cluster.Milters {
		milterNames = append(milterNames, m.Name)
	}
	retry, lifetime := queue.RetryFromProfile(p)
	qdir := filepath.Join(env.StateDir, QueueDir)
	q, err := queue.Open(queue.Config{Dir: qdir, Local: local, Remote: out, Retry: retry, Lifetime: lifetime, Hostname: name,
		Workers: lim.Workers, Log: log, Route: smtpd.QueueRoute(p), Metrics: queue.NewMetrics(reg)})
	if err != nil {
		return err
	}
	q.RegisterMetrics(reg)
	// After SIGTERM: stop taking mail (messages in DATA are answered),
	// then give delivery attempts in progress the rest of the grace
	// period; whatever is cut short is retried after the restart.
	stopQueue := daemon.StopFunc(q.Close)
	tlsCfg, err := env.TLS()
	switch {
	case errors.Is(err, tlsconf.ErrNoTLS):
		log.Warn("no [host.tls] in the profile: STARTTLS not offered", "host", h.Name)
		tlsCfg = nil
	case err != nil:
		q.Close(context.Background())
		return err
	}
	var authDNS mailauth.Resolver
	if *resolvers != "" {
		authDNS = mailauth.NewResolver(strings.Split(*resolvers, ",")...)
	}
	srv, err := smtpd.New(smtpd.Config{Profile: p, Host: h, Queue: q, Users: users, TLS: tlsCfg, Log: log,
		AuthResolver: authDNS, SpoolDir: env.StateDir, Metrics: smtpd.NewMetrics(reg, milterNames)})
	if err != nil {
		q.Close(context.Background())
		return err
	}
	lns, err := smtpd.Listeners(srv, users, env.Listen)
	if err != nil {
		q.Close(context.Background())
		return err
	}
	for _, l := range lns {
		env.Go(l.Name, func() error { return srv.Serve(l) })
		log.Info("serving SMTP", "listener", l.Name, "listen", l.Listener.Addr().String(), "implicit_tls", l.ImplicitTLS)
	}
	sl := srv.Limits()
	log.Info("smtpd serving", "mx", h.HasRole(cluster.RoleMX), "relay", h.HasRole(cluster.RoleRelay), "queue", qdir, "queued", q.Len(),
		"starttls", tlsCfg != nil, "max_message_bytes", sl.MaxMessageBytes, "max_recipients", sl.MaxRecipients,
		"max_connections", sl.MaxConnections, "max_connections_per_client", sl.MaxConnectionsPerClient,
		"command_timeout", sl.CommandTimeout.String(), "data_timeout", sl.DataTimeout.String(), "workers", lim.Workers)
	return env.Run(srv, stopQueue)
}
