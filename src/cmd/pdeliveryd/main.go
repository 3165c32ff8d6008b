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
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"correo/src/cluster"
	"correo/src/daemon"
	"correo/src/delivery"
	"correo/src/lmtpd"
)

// shutdownGrace is how long messages already in DATA get to be written
// and answered after SIGTERM.
const shutdownGrace = 30 * time.Second

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
	addr, err := p.Listen(h.Name, cluster.SvcLMTP)
	if err != nil {
		return err
	}
	tcp, err := net.Listen("tcp", addr.String())
	if err != nil {
		return fmt.Errorf("LMTP: %w", err)
	}
	sock := filepath.Join(env.StateDir, delivery.SocketName)
	unix, err := lmtpd.ListenUnix(sock)
	if err != nil {
		tcp.Close()
		return err
	}
	defer os.Remove(sock)
	errc := make(chan error, 2)
	go func() { errc <- srv.ServeTCP(tcp) }()
	go func() { errc <- srv.ServeUnix(unix) }()
	log.Info("serving LMTP", "tcp", addr.String(), "socket", sock, "data_dir", h.Storage.DataDir,
		"layout", string(p.LayoutScheme()), "network", p.NetworkPrefix().String())
	// Every socket is bound: root is no longer needed.
	if err := env.DropPrivileges(); err != nil {
		return err
	}
	env.Ready()

	select {
	case <-env.Ctx.Done():
		log.Info("stopping: finishing messages in progress", "grace", shutdownGrace.String())
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("stopped before every message in progress was answered", "err", err)
		}
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
