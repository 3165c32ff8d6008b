// Command nssd is the per-host agent behind libnss_correo.so.2: it answers
// the NSS module on a Unix socket (cluster.nss.socket) from a cache, and
// asks passwdd through pwclient on a miss. It runs on every host,
// whatever its roles:
//
//	nssd -profile hosts/example.toml -host mx1
//
// The logic is in src/nssd; this file only wires it.
package main

import (
	"fmt"
	"io"

	"correo/src/daemon"
	"correo/src/nssd"
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
	ln, err := nssd.Listen(p.Cluster.NSS.Socket)
	if err != nil {
		return fmt.Errorf("nss socket (cluster.nss.socket): %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	env.Log.Info("serving NSS", "socket", p.Cluster.NSS.Socket)
	// Every socket is bound: root is no longer needed.
	if err := env.DropPrivileges(); err != nil {
		return err
	}
	env.Ready()
	select {
	case <-env.Ctx.Done():
		srv.Close()
		<-served
		env.Log.Info("stopped")
		return nil
	case err := <-served:
		srv.Close()
		return fmt.Errorf("serving %s: %w", p.Cluster.NSS.Socket, err)
	}
}
