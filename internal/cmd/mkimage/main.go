// Command mkimage builds a correo host's appliance image: the host's tree
// rendered from the profile (correoctl host render), the cached Debian
// rootfs, and the two written together as a raw, bootable disk image.
// `make image PROFILE=hosts/example.toml HOST=store1` runs it; it is a
// build tool, not part of what a host runs.
//
//	mkimage -profile hosts/example.toml -host store1 -bin bin -key images/cluster.key -out images/store1.img
//	mkimage -rootfs-only    # build (or find) the cached rootfs and print its directory
//
// Every host of a cluster must carry the same cluster key: -key names it,
// and a missing key file is created once, so the images built next to it
// share it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"correo/internal/appliance"
	"correo/internal/rootfs"
	"correo/src/keyfile"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "mkimage:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fl.SetOutput(stderr)
	profile := fl.String("profile", "", "host profile (TOML)")
	host := fl.String("host", "", "host of the profile the image is for")
	bin := fl.String("bin", "bin", "directory of the built programs and libnss_correo.so.2 (make build), put into the image")
	keyPath := fl.String("key", "", "cluster key file put into the image; created if missing (every host of a cluster needs the same one)")
	tlsCert := fl.String("tls-cert", "", "the host's TLS certificate (PEM), put at its [host.tls] cert; hosts with [host.tls] need one")
	tlsKey := fl.String("tls-key", "", "the host's TLS private key (PEM), put at its [host.tls] key")
	tree := fl.String("tree", "", "an already rendered tree to use instead of rendering one (-profile, -host, -bin and -key are then ignored)")
	out := fl.String("out", "", "image file to write (default HOST.img)")
	sizeMB := fl.Int("size", 0, "image size in MiB (0: the content plus 512 MiB)")
	espMB := fl.Int("esp", 0, "EFI system partition size in MiB (0: 256)")
	cmdline := fl.String("cmdline", "", "arguments added to the kernel command line")
	rootfsOnly := fl.Bool("rootfs-only", false, "only build (or find) the cached rootfs and print its directory")
	verbose := fl.Bool("v", false, "show mmdebstrap's output")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (mmdebstrap, and mke2fs reading the rootfs's root-only files): run it with sudo")
	}

	var mmLog io.Writer
	if *verbose {
		mmLog = stderr
	}
	t0 := time.Now()
	if _, cached := rootfs.Cached(rootfs.Options{}); !cached {
		fmt.Fprintf(stderr, "mkimage: building the Debian rootfs %s (a minute or two, once)\n", rootfs.Key())
	}
	root, err := rootfs.Ensure(ctx, rootfs.Options{Log: mmLog})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "mkimage: rootfs %s (%s)\n", root, time.Since(t0).Round(100*time.Millisecond))
	if *rootfsOnly {
		fmt.Fprintln(stdout, root)
		return nil
	}

	if *tree == "" {
		if *profile == "" || *host == "" {
			return errors.New("-profile and -host are required (or -tree with a rendered tree)")
		}
		if *keyPath == "" {
			return errors.New("-key is required: the cluster key file every host of the cluster shares (created if missing)")
		}
		if err := ensureKey(*keyPath, stderr); err != nil {
			return err
		}
		dir, err := os.MkdirTemp("", "correo-tree-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		var extra []string
		if *tlsCert != "" || *tlsKey != "" {
			extra = []string{"--tls-cert", *tlsCert, "--tls-key", *tlsKey}
		}
		if err := render(ctx, *bin, *profile, *host, dir, *keyPath, extra...); err != nil {
			return err
		}
		*tree = dir
	}
	if *out == "" {
		name := *host
		if name == "" {
			name = "correo"
		}
		*out = name + ".img"
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	res, err := appliance.Build(ctx, appliance.Options{
		RootFS: root, Tree: *tree, Out: *out, SizeMB: *sizeMB, ESPSizeMB: *espMB,
		Cmdline: strings.Fields(*cmdline), Log: stderr,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "mkimage: %s: %d MiB raw disk image (root PARTUUID %s), in %s\n",
		*out, res.Layout.Size/(1<<20), res.RootGUID, time.Since(t0).Round(100*time.Millisecond))
	fmt.Fprintf(stderr, "mkimage: write it with: dd if=%s of=/dev/DISK bs=4M conv=fsync status=progress\n", *out)
	return nil
}

// ensureKey creates the cluster key file if there is none yet.
func ensureKey(path string, log io.Writer) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if _, err := keyfile.Create(path); err != nil {
		return fmt.Errorf("creating the cluster key %s: %w", path, err)
	}
	fmt.Fprintf(log, "mkimage: created the cluster key %s: build every host of this cluster with it (-key / KEY=)\n", path)
	return nil
}

// render writes the host's tree with the correoctl built into bin, which
// also copies the programs, the NSS module and the key into it.
func render(ctx context.Context, bin, profile, host, dir, key string, extra ...string) error {
	correoctl := filepath.Join(bin, "correoctl")
	if _, err := os.Stat(correoctl); err != nil {
		return fmt.Errorf("%s: %w (run make build first)", correoctl, err)
	}
	args := append([]string{"host", "render", "--profile", profile, "--host", host, "--root", dir, "--bin", bin, "--key", key}, extra...)
	cmd := exec.CommandContext(ctx, correoctl, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("rendering %s from %s: %v\n%s", host, profile, err, b)
	}
	return nil
}
