// Command pdeliveryd is the LMTP delivery server of a storage host: it
// writes the messages of the users whose mailboxes live here into their
// Maildirs (see package lmtpd). It listens on the host's LMTP port from
// the profile (24) for the cluster's MX hosts, and on <state>/lmtp.sock
// for local MDAs (pdelivery).
//
//	pdeliveryd -profile hosts/example.toml -host st1 -state /var/lib/correo/pdeliveryd
//
// It runs as one service user that owns the data directory (virtual
// mailboxes, like Dovecot's vmail) and never changes uid per user. Port 24
// is privileged: give the service CAP_NET_BIND_SERVICE rather than root.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"correo/src/cluster"
	"correo/src/daemon"
	"correo/src/delivery"
	"correo/src/lmtpd"
)

func main() {
	daemon.GCPercent(400)
	daemon.Main("pdeliveryd", run)
}

func run(args []string, stderr io.Writer) error {
	f := daemon.NewFlags("pdeliveryd")
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
	// The data directory is created on first start; its parents must
	// exist. Mailboxes below it are created on first delivery.
	if err := os.MkdirAll(h.Storage.DataDir, 0o755); err != nil {
		return fmt.Errorf("mail data directory: %w", err)
	}
	users, _, err := env.Passwd()
	if err != nil {
		return err
	}
	defer users.Close()
	srv, err := lmtpd.New(lmtpd.Config{Profile: p, Host: h, Users: users, SpoolDir: env.StateDir, Log: log})
	if err != nil {
		return err
	}
	tcp, err := env.Listen(cluster.SvcLMTP)
	if err != nil {
		return fmt.Errorf("LMTP: %w", err)
	}
	sock := filepath.Join(env.StateDir, delivery.SocketName)
	created := false
	unix, err := env.Socket(daemon.SocketLMTPUnix, func() (net.Listener, error) {
		ln, err := lmtpd.ListenUnix(sock)
		created = err == nil
		return ln, err
	})
	if err != nil {
		return err
	}
	if created { // ours to remove; a socket systemd passed is systemd's
		defer os.Remove(sock)
	}
	env.Go("lmtp", func() error { return srv.ServeTCP(tcp) })
	env.Go("lmtp "+sock, func() error { return srv.ServeUnix(unix) })
	log.Info("serving LMTP", "tcp", tcp.Addr().String(), "socket", unix.Addr().String(), "data_dir", h.Storage.DataDir,
		"layout", string(p.LayoutScheme()), "network", p.NetworkPrefix().String())
	// Messages already in DATA are written and answered within the grace
	// period; new transactions get 421.
	return env.Run(srv)
}
