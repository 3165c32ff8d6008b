package main

import (
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"correo/src/cluster"
	"correo/src/dkimkeys"
)

// dkimFlags parses `correoctl dkim VERB [-profile P] [-selector S] DOMAIN`
// and loads the profile and its DKIM records file.
func dkimFlags(name string, args []string, needDomain bool) (*cluster.Profile, *dkimkeys.File, string, string, error) {
	fs := newFlags(name)
	path := fs.String("profile", "", "host profile (default: the embedded hosts/dev.toml)")
	selector := fs.String("selector", "", "retire this selector now, even if it still signs (a leaked key)")
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, "", "", err
	}
	domain := ""
	switch {
	case fs.NArg() == 1:
		domain = fs.Arg(0)
	case fs.NArg() > 1 || needDomain:
		return nil, nil, "", "", fmt.Errorf("%w: correoctl %s [-profile P] DOMAIN", errUsage, name)
	}
	p, err := cluster.LoadFlag(*path, cluster.Options{SkipFiles: true})
	if err != nil {
		return nil, nil, "", "", err
	}
	if p.Cluster.MailAuth.DKIMRecords == "" {
		return nil, nil, "", "", fmt.Errorf("%s has no [cluster.mail_auth] dkim_records: name the file that will hold the public keys (e.g. \"dkim.toml\", beside the profile)", p.Source)
	}
	if domain != "" && !slices.Contains(p.Cluster.Domains, domain) {
		return nil, nil, "", "", fmt.Errorf("%q is not one of the cluster's domains %v", domain, p.Cluster.Domains)
	}
	f, err := dkimkeys.Load(p.DKIMRecordsPath())
	if err != nil {
		return nil, nil, "", "", err
	}
	return p, f, domain, *selector, nil
}

// keyGroup is the group that may read the cluster key and the DKIM keys
// (correo-key on a rendered host); -1 where it does not exist (an
// operator's workstation).
func keyGroup() int {
	g, err := user.LookupGroup("correo-key")
	if err != nil {
		return -1
	}
	gid, _ := strconv.Atoi(g.Gid)
	return gid
}

func runDKIMNew(args []string, stdout, stderr io.Writer) error {
	p, f, domain, _, err := dkimFlags("dkim new", args, true)
	if err != nil {
		return err
	}
	now := time.Now()
	dir := p.Cluster.MailAuth.DKIMKeyDir
	recs, err := dkimkeys.New(f, dir, domain, now, keyGroup())
	if err != nil {
		return err
	}
	f.Keys = append(f.Keys, recs...)
	if err := f.Save(p.DKIMRecordsPath()); err != nil {
		return err
	}
	wait := p.Cluster.MailAuth.DKIMPublishWait.Std()
	for _, r := range recs {
		fmt.Fprintf(stdout, "%s\t%s\t%s\n", domain, r.Selector, r.Algorithm)
	}
	signing := f.Signing(domain, now.Add(wait), wait)
	starts := "at once (the domain's first keys)"
	if len(f.Of(domain)) > len(recs) {
		starts = "from " + now.Add(wait).UTC().Format(time.RFC3339) + " (dkim_publish_wait after now)"
	}
	fmt.Fprintf(stdout, "Published in the zone from its next generation (correoctl dns zone; re-render the dns hosts).\n"+
		"Private keys: %s/%s/ — copy them to every relay host (0640 root:correo-key).\n"+
		"The relays sign with %s and %s %s; then run `correoctl dkim retire %s`.\n",
		dir, domain, signing[0].Selector, signing[len(signing)-1].Selector, starts, domain)
	return nil
}

func runDKIMList(args []string, stdout, stderr io.Writer) error {
	p, f, domain, _, err := dkimFlags("dkim list", args, false)
	if err != nil {
		return err
	}
	now := time.Now()
	wait := p.Cluster.MailAuth.DKIMPublishWait.Std()
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tSELECTOR\tALGORITHM\tCREATED\tSTATE")
	for _, d := range p.Cluster.Domains {
		if domain != "" && d != domain {
			continue
		}
		signing, old := f.Signing(d, now, wait), f.Superseded(d, now, wait)
		for _, k := range f.Of(d) {
			state := "published, signs from " + k.Created.Add(wait).UTC().Format(time.RFC3339)
			switch {
			case slices.Contains(signing, k):
				state = "signing"
			case slices.Contains(old, k):
				state = "superseded: retire it"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d, k.Selector, k.Algorithm, k.Created.UTC().Format(time.RFC3339), state)
		}
	}
	return tw.Flush()
}

func runDKIMRetire(args []string, stdout, stderr io.Writer) error {
	p, f, domain, selector, err := dkimFlags("dkim retire", args, true)
	if err != nil {
		return err
	}
	wait := p.Cluster.MailAuth.DKIMPublishWait.Std()
	gone := f.Superseded(domain, time.Now(), wait)
	if selector != "" {
		gone = nil
		for _, k := range f.Of(domain) {
			if k.Selector == selector {
				gone = append(gone, k)
			}
		}
		if len(gone) == 0 {
			return fmt.Errorf("%s has no DKIM selector %q (correoctl dkim list %s)", domain, selector, domain)
		}
	}
	if len(gone) == 0 {
		fmt.Fprintf(stdout, "%s: no key to retire: every key still signs or waits to (correoctl dkim list %s)\n", domain, domain)
		return nil
	}
	f.Remove(gone)
	// The records file first: once the zone no longer has a key nobody
	// may sign with it, so the private key goes right after.
	if err := f.Save(p.DKIMRecordsPath()); err != nil {
		return err
	}
	for _, k := range gone {
		path := dkimkeys.KeyPath(p.Cluster.MailAuth.DKIMKeyDir, k.Domain, k.Selector)
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			fmt.Fprintf(stderr, "removing %s: %v\n", path, err)
		}
		fmt.Fprintf(stdout, "%s\t%s\tretired\n", k.Domain, k.Selector)
	}
	if len(f.Signing(domain, time.Now(), wait)) == 0 {
		fmt.Fprintf(stdout, "%s now has no DKIM key: its mail goes out unsigned until `correoctl dkim new %s`.\n", domain, domain)
	}
	fmt.Fprintln(stdout, "Regenerate the zone and remove the retired keys' files from the relay hosts.")
	return nil
}
