package main

import (
	"encoding/json"
	"fmt"
	"io"

	"correo/src/cluster"
	"correo/src/dnszone"
)

// profileFlags adds the flags every profile-reading command shares.
func loadProfileFlags(name string, args []string, skipFiles bool) (*cluster.Profile, []string, error) {
	fs := newFlags(name)
	path := fs.String("profile", "", "host profile (default: the embedded hosts/dev.toml)")
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 && *path == "" {
		// `correoctl dns zone hosts/example.toml` reads as naturally as the flag.
		*path = fs.Arg(0)
	}
	p, err := cluster.LoadFlag(*path, cluster.Options{SkipFiles: skipFiles})
	return p, fs.Args(), err
}

func runProfileCheck(args []string, stdout, stderr io.Writer) error {
	// A check is for the host that will run it: the key file must be there.
	p, _, err := loadProfileFlags("profile check", args, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok: cluster %s, %d hosts\n", p.Source, p.Cluster.Name, len(p.Hosts))
	return nil
}

func runProfileSettings(args []string, stdout, stderr io.Writer) error {
	p, _, err := loadProfileFlags("profile settings", args, true)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(p.Settings())
}

func runDNSZone(args []string, stdout, stderr io.Writer) error {
	p, _, err := loadProfileFlags("dns zone", args, true)
	if err != nil {
		return err
	}
	z, err := dnszone.Zone(p)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, z)
	return err
}
