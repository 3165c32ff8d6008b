package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"correo/src/cluster"
	"correo/src/directory"
	"correo/src/keyfile"
	"correo/src/pwadmin"
	"correo/src/runner"
)

// runClusterUp boots every host of a loopback profile on this machine and
// keeps it running until Ctrl-C or SIGTERM, or until a process dies.
func runClusterUp(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cluster up")
	path := fs.String("profile", "", "host profile (default: the embedded hosts/dev.toml)")
	state := fs.String("state", ".dev/run", "state directory: configs, pids and logs per host")
	bin := fs.String("bin", "bin", "directory holding the built correo programs")
	netns := fs.Bool("netns", false, "boot every host in its own network namespace with the profile's addresses (root)")
	echo := fs.Bool("echo", false, "also print every daemon's log lines here")
	demo := fs.String("demo", "", "create (or reset) this user with a random password and print how to use it")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 && *path == "" {
		*path = fs.Arg(0)
	}
	// Files are checked by the runner itself, which creates a missing key.
	p, err := cluster.LoadFlag(*path, cluster.Options{SkipFiles: true})
	if err != nil {
		return err
	}
	absBin, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	r := &runner.Runner{Profile: p, ProfilePath: *path, StateDir: *state, BinDir: absBin,
		Log: slog.New(slog.NewTextHandler(stderr, nil))}
	if *netns {
		r.Netns = &runner.Netns{}
	}
	if *echo {
		r.Echo = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := r.Up(ctx); err != nil {
		return err
	}
	defer r.Down()
	r.Summary(stdout)
	if *demo != "" {
		if err := demoUser(r.Profile, *demo, r.Netns, stdout); err != nil {
			return fmt.Errorf("creating the demo user: %w", err)
		}
	}
	fmt.Fprintln(stdout, "press Ctrl-C to stop")
	select {
	case <-ctx.Done():
		fmt.Fprintln(stdout, "stopping")
		return nil
	case why := <-r.Exited():
		return fmt.Errorf("%s; stopping the cluster", why)
	}
}

// runClusterDown stops what a crashed or killed `cluster up` left: its
// processes and, with -netns, its namespaces and links.
func runClusterDown(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cluster down")
	path := fs.String("profile", "", "host profile (default: the embedded hosts/dev.toml)")
	state := fs.String("state", ".dev/run", "state directory of the run to clean up")
	netns := fs.Bool("netns", false, "also remove the run's network namespaces and links")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 && *path == "" {
		*path = fs.Arg(0)
	}
	p, err := cluster.LoadFlag(*path, cluster.Options{SkipFiles: true})
	if err != nil {
		return err
	}
	r := &runner.Runner{Profile: p, StateDir: *state, Log: slog.New(slog.NewTextHandler(stderr, nil))}
	if *netns {
		r.Netns = &runner.Netns{}
	}
	if err := r.Clean(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "cleaned up", *state)
	return nil
}

// demoUser adds (or resets the password of) a user on the running
// cluster's primary passwdd and prints how to mail it and read its mail.
// With namespaces, the profile's addresses exist only inside them: the
// admin connection is made from the primary's own namespace, since from
// here it would leave through the machine's default route toward the
// real network, and the printed commands run in the "outside" namespace.
func demoUser(p *cluster.Profile, name string, netns *runner.Netns, stdout io.Writer) error {
	ring, err := keyfile.Load(p.Cluster.KeyFile)
	if err != nil {
		return err
	}
	prim, _ := p.PasswdServers()
	addr, err := p.Listen(prim.Name, cluster.SvcPasswdAdmin)
	if err != nil {
		return err
	}
	raw := make([]byte, 10)
	rand.Read(raw)
	password := strings.ToLower(base32.StdEncoding.EncodeToString(raw))
	setPassword := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pwadmin.Dial(ctx, addr.String(), ring)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Do(pwadmin.Request{Op: pwadmin.OpUserShow, Name: name})
		switch {
		case err == nil:
			_, err = c.Do(pwadmin.Request{Op: pwadmin.OpUserPasswd, Name: name, Password: password})
		case pwadmin.IsCode(err, pwadmin.CodeNotFound):
			_, err = c.Do(pwadmin.Request{Op: pwadmin.OpUserAdd, Password: password, User: &directory.User{Name: name, Gecos: "correo demo user"}})
		}
		return err
	}
	run := ""
	if netns != nil {
		err = runner.InNetns(netns.Name(prim.Name), setPassword)
		run = "ip netns exec " + netns.Name("outside") + " "
	} else {
		err = setPassword()
	}
	if err != nil {
		return err
	}
	mail := name + "@" + p.Cluster.Domains[0]
	fmt.Fprintf(stdout, "\ndemo user %s, password %s\n", mail, password)
	for _, e := range p.Endpoints(cluster.SvcSMTP) {
		fmt.Fprintf(stdout, "  send:  %sswaks --server %s --from you@example.org --to %s\n", run, e.Addr, mail)
		break
	}
	for _, e := range p.Endpoints(cluster.SvcPOP3) {
		fmt.Fprintf(stdout, "  fetch: %scurl -u %s:%s pop3://%s/1\n", run, name, password, e.Addr)
		break
	}
	return nil
}
