// Command passwdd is the cluster's password server: the primary keeps the
// durable user directory and serves admin commands; the secondary follows
// it and takes over reads when it is gone. Both answer sealed UDP queries
// from memory. Usage: passwdd -profile hosts/example.toml -host pw1.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"time"

	"correo/src/cluster"
	"correo/src/daemon"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/pwserver"
)

// compactEvery and compactAbove bound the journal: replaying a long
// journal slows a restart, and a secondary that falls far behind resyncs
// from a snapshot anyway.
const (
	compactEvery = 10 * time.Minute
	compactAbove = 64 << 20
)

func main() { daemon.Main("passwdd", run) }

func run(args []string, stderr io.Writer) error {
	f := daemon.NewFlags("passwdd")
	f.FlagSet.SetOutput(stderr)
	env, err := f.Start(args, cluster.RolePasswdPrimary, cluster.RolePasswdSecondary)
	if err != nil {
		return err
	}
	defer env.Close()
	log := env.Log.Logger
	// The key seals every answer: refuse to run with one that others can
	// read, or none.
	ring, err := keyfile.Load(env.Profile.Cluster.KeyFile)
	if err != nil {
		return err
	}
	store, err := directory.Open(env.StateDir)
	if err != nil {
		return fmt.Errorf("opening the user directory in %s: %w", env.StateDir, err)
	}
	defer store.Close()
	for _, n := range store.Notes() {
		log.Warn("directory recovery", "note", n)
	}
	reg, err := env.Metrics()
	if err != nil {
		return err
	}
	reg.GaugeFunc("correo_passwd_users", "Users in the directory this server answers from.", func() float64 { return float64(store.Index().Len()) })
	srv, err := pwserver.New(pwserver.Config{Profile: env.Profile, Host: env.Host, Store: store, StateDir: env.StateDir, Ring: ring, Log: log,
		Metrics: pwserver.NewMetrics(reg)})
	if err != nil {
		return err
	}
	udpAddr, err := env.Profile.Listen(env.Host.Name, cluster.SvcPasswd)
	if err != nil {
		return err
	}
	// One socket per core, sharing the port: see pwserver.ListenUDP.
	uconns, err := env.UDP(string(cluster.SvcPasswd), func() ([]*net.UDPConn, error) {
		return pwserver.ListenUDP(udpAddr, runtime.GOMAXPROCS(0))
	})
	if err != nil {
		return fmt.Errorf("passwd queries: %w", err)
	}
	ln, err := env.Listen(cluster.SvcPasswdAdmin)
	if err != nil {
		return fmt.Errorf("passwd admin: %w", err)
	}
	env.Go("passwd", func() error { return srv.ServeUDP(uconns...) })
	env.Go("passwd_admin", func() error { return srv.ServeAdmin(ln) })
	if srv.Role() == pwserver.Secondary {
		primary, _ := env.Profile.PasswdServers()
		addr, err := env.Profile.Listen(primary.Name, cluster.SvcPasswdAdmin)
		if err != nil {
			return err
		}
		go srv.FollowPrimary(env.Ctx, addr.String())
	}
	// Compaction must be over before the deferred store.Close.
	compacted := make(chan struct{})
	go func() { defer close(compacted); compact(env, store) }()
	defer func() { <-compacted }()
	epoch, seq := store.Generation()
	log.Info("serving", "role", string(srv.Role()), "udp", uconns[0].LocalAddr().String(), "admin", ln.Addr().String(),
		"users", store.Index().Len(), "epoch", epoch, "seq", seq)
	// Every answer comes from memory and every admin change is durable
	// before its "ok": closing the sockets is a complete stop.
	return env.Run(daemon.StopFunc(func(context.Context) error {
		for _, c := range uconns {
			c.Close()
		}
		return ln.Close()
	}))
}

// compact keeps the journal short until the daemon stops.
func compact(env *daemon.Env, store *directory.Store) {
	tick := time.NewTicker(compactEvery)
	defer tick.Stop()
	for {
		select {
		case <-env.Ctx.Done():
			return
		case <-tick.C:
			if store.JournalSize() > compactAbove {
				if err := store.Compact(); err != nil {
					env.Log.Error("compacting the journal failed", "err", err)
				}
			}
		}
	}
}
