// Command passwdd is the cluster's password server: the primary keeps the
// durable user directory and serves admin commands; the secondary follows
// it and takes over reads when it is gone. Both answer sealed UDP queries
// from memory. Usage: passwdd -profile hosts/example.toml -host pw1.
package main

import (
	"errors"
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
	srv, err := pwserver.New(pwserver.Config{Profile: env.Profile, Host: env.Host, Store: store, StateDir: env.StateDir, Ring: ring, Log: log})
	if err != nil {
		return err
	}
	udpAddr, err := env.Profile.Listen(env.Host.Name, cluster.SvcPasswd)
	if err != nil {
		return err
	}
	tcpAddr, err := env.Profile.Listen(env.Host.Name, cluster.SvcPasswdAdmin)
	if err != nil {
		return err
	}
	uconns, err := pwserver.ListenUDP(udpAddr, runtime.GOMAXPROCS(0))
	if err != nil {
		return fmt.Errorf("passwd queries: %w", err)
	}
	defer func() {
		for _, c := range uconns {
			c.Close()
		}
	}()
	ln, err := net.Listen("tcp", tcpAddr.String())
	if err != nil {
		return fmt.Errorf("passwd admin: %w", err)
	}
	defer ln.Close()

	errc := make(chan error, 2)
	go func() { errc <- srv.ServeUDP(uconns...) }()
	go func() { errc <- srv.ServeAdmin(ln) }()
	if srv.Role() == pwserver.Secondary {
		primary, _ := env.Profile.PasswdServers()
		addr, err := env.Profile.Listen(primary.Name, cluster.SvcPasswdAdmin)
		if err != nil {
			return err
		}
		go srv.FollowPrimary(env.Ctx, addr.String())
	}
	epoch, seq := store.Generation()
	log.Info("serving", "role", string(srv.Role()), "udp", udpAddr.String(), "admin", tcpAddr.String(),
		"users", store.Index().Len(), "epoch", epoch, "seq", seq)
	// Every socket is bound: root is no longer needed.
	if err := env.DropPrivileges(); err != nil {
		return err
	}
	env.Ready()

	tick := time.NewTicker(compactEvery)
	defer tick.Stop()
	for {
		select {
		case <-env.Ctx.Done():
			log.Info("stopping")
			return nil
		case err := <-errc:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				return err
			}
		case <-tick.C:
			if store.JournalSize() > compactAbove {
				if err := store.Compact(); err != nil {
					log.Error("compacting the journal failed", "err", err)
				}
			}
		}
	}
}
