// Command pdeliveryd is the LMTP delivery server of a storage host: it
// writes the messages of the users whose mailboxes live here into their
// Maildirs (see package lmtpd). It listens on the host's LMTP port from
// the profile (24) for the cluster's MX hosts, and on <state>/lmtp.sock
// for local MDAs (pdelivery). On the mailbox_move port (4424) it moves
// mailboxes to and from the other storage hosts (package mailmove,
// driven by `correoctl mailbox move`).
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
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"correo/src/cluster"
	"correo/src/daemon"
	"correo/src/dedup"
	"correo/src/delivery"
	"correo/src/lmtpd"
	"correo/src/mailbox"
	"correo/src/mailmove"
)

// KeyLog is the delivery key record in the state directory (package
// dedup): which recipients of which queued messages are stored here.
const KeyLog = "delivery-keys"

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
	users, ring, err := env.Passwd()
	if err != nil {
		return err
	}
	defer users.Close()
	// One gate for deliveries and moves: a freeze waits out the
	// deliveries already writing to the mailbox it freezes.
	gate := new(mailbox.Gate)
	keys, info, err := dedup.Open(filepath.Join(env.StateDir, KeyLog))
	if err != nil {
		return err
	}
	defer keys.Close()
	if info.Truncated > 0 {
		log.Warn("cut the torn tail of the delivery key log (a crash during an append: those deliveries were not acknowledged)",
			"file", filepath.Join(env.StateDir, KeyLog), "bytes", info.Truncated)
	}
	log.Info("delivery key log loaded", "keys", info.Keys)
	reg, err := env.Metrics()
	if err != nil {
		return err
	}
	srv, err := lmtpd.New(lmtpd.Config{Profile: p, Host: h, Users: users, SpoolDir: env.StateDir, Log: log, Gate: gate,
		Ring: ring, Keys: keys, Metrics: lmtpd.NewMetrics(reg)})
	if err != nil {
		return err
	}
	mover, err := mailmove.New(mailmove.Config{Profile: p, Host: h, Ring: ring, Gate: gate, Log: log})
	if err != nil {
		return err
	}
	moveLn, err := env.Listen(cluster.SvcMailboxMove)
	if err != nil {
		return fmt.Errorf("mailbox moves: %w", err)
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
	env.Go("mailbox_move", func() error { return mover.Serve(moveLn) })
	go sweepMoved(mover, log)
	log.Info("serving LMTP", "tcp", tcp.Addr().String(), "socket", unix.Addr().String(), "data_dir", h.Storage.DataDir,
		"layout", string(p.LayoutScheme()), "network", p.NetworkPrefix().String())
	// Messages already in DATA are written and answered within the grace
	// period; new transactions get 421.
	return env.Run(srv, mover)
}

// sweepMoved deletes the mailboxes moved away from this host once their
// grace period is over: at start, then hourly.
func sweepMoved(m *mailmove.Server, log *slog.Logger) {
	for {
		if n, err := m.Sweep(); err != nil {
			log.Error("sweeping moved mailboxes failed", "err", err)
		} else if n > 0 {
			log.Info("swept moved mailboxes", "deleted", n)
		}
		time.Sleep(time.Hour)
	}
}
