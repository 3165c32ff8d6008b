package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"correo/src/cluster"
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := r.Up(ctx); err != nil {
		return err
	}
	defer r.Down()
	r.Summary(stdout)
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
