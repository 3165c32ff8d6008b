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
