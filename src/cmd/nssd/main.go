// Command nssd is the per-host agent behind libnss_correo.so.2: it answers
// the NSS module on a Unix socket (cluster.nss.socket) from a cache, and
// asks passwdd through pwclient on a miss. It runs on every host,
// whatever its roles:
//
//	nssd -profile hosts/example.toml -host mx1
//
// With cluster.nss.socketmap set it also answers Postfix's socketmap
// tables from passwdd (src/postfixmap), beside the NSS socket: nssd is on
// every host already, holds the passwd client and the cluster key, and a
// Postfix MX needs nothing else from correo.
//
// The logic is in src/nssd, src/socketmap and src/postfixmap; this file
// only wires them.
package main

import (
	"fmt"
	"io"
	"net"

	"correo/src/daemon"
	"correo/src/nssd"
	"correo/src/postfixmap"
	"correo/src/socketmap"
)

func main() { daemon.Main("nssd", run) }

func run(args []string, _ io.Writer) error {
	env, err := daemon.NewFlags("nssd").Start(args) // no role: every host resolves users
	if err != nil {
		return err
	}
	defer env.Close()
	p := env.Profile
	client, _, err := env.Passwd()
	if err != nil {
		return err
	}
	defer client.Close()

	srv := nssd.FromProfile(p, nssd.PasswdSource{Client: client}, env.Log.Slog())
	ln, err := env.Socket(daemon.SocketNSS, func() (net.Listener, error) { return nssd.Listen(p.Cluster.NSS.Socket) })
	if err != nil {
		return fmt.Errorf("nss socket (cluster.nss.socket): %w", err)
	}
	reg, err := env.Metrics()
	if err != nil {
		return err
	}
	srv.RegisterMetrics(reg)
	env.Go("nss "+p.Cluster.NSS.Socket, func() error { return srv.Serve(ln) })
	env.Log.Info("serving NSS", "socket", p.Cluster.NSS.Socket)
	servers := []daemon.Server{daemon.Immediate(srv)}
	if path := p.Cluster.NSS.Socketmap; path != "" {
		sm := &socketmap.Server{Handler: &postfixmap.Maps{Dir: client, Profile: p, Log: env.Log.Slog()}, Log: env.Log.Slog()}
		ln, err := env.Socket(daemon.SocketSocketmap, func() (net.Listener, error) { return nssd.Listen(path) })
		if err != nil {
			return fmt.Errorf("postfix socketmap (cluster.nss.socketmap): %w", err)
		}
		env.Go("socketmap "+path, func() error { return sm.Serve(ln) })
		env.Log.Info("serving Postfix socketmap", "socket", path)
		servers = append(servers, daemon.Immediate(sm))
	}
	// One answer is one cache lookup or one passwd query: nothing worth
	// waiting for at shutdown.
	return env.Run(servers...)
}
