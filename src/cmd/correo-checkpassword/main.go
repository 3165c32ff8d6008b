// Command correo-checkpassword is Dovecot's checkpassword passdb and
// userdb for a correo storage host: Dovecot serves the host's Maildirs,
// passwdd checks the logins. In dovecot.conf:
//
//	passdb {
//	  driver = checkpassword
//	  args = /usr/libexec/correo/correo-checkpassword -profile /etc/correo/profile.toml -host store1
//	}
//	userdb {
//	  driver = prefetch
//	}
//
// Dovecot appends the path of its checkpassword-reply helper and writes
// the user and password on descriptor 3. The logic is in
// src/checkpassword; this file only wires it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"correo/src/checkpassword"
	"correo/src/cluster"
	"correo/src/keyfile"
	"correo/src/pwclient"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fail := func(code int, format string, a ...any) int {
		// Dovecot logs the program's stderr as the auth process's error.
		fmt.Fprintf(stderr, "correo-checkpassword: "+format+"\n", a...)
		return code
	}
	fs := flag.NewFlagSet("correo-checkpassword", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	profile := fs.String("profile", "/etc/correo/profile.toml", "host profile")
	host := fs.String("host", "", "this storage host's name in the profile: users stored elsewhere are refused (default: any)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		return fail(checkpassword.ExitTempErr, "usage: correo-checkpassword [-profile f] [-host h] checkpassword-reply (run by Dovecot's checkpassword passdb, which adds the last argument)")
	}
	reply := fs.Arg(0)
	fd3 := os.NewFile(3, "checkpassword input")
	req, err := checkpassword.ReadRequest(fd3, os.Getenv)
	if err != nil {
		return fail(checkpassword.ExitTempErr, "%v", err)
	}
	p, err := cluster.Load(*profile, cluster.Options{SkipFiles: true})
	if err != nil {
		return fail(checkpassword.ExitTempErr, "%v", err)
	}
	if *host != "" {
		if h, err := p.Host(*host); err != nil || h.Storage == nil {
			return fail(checkpassword.ExitTempErr, "-host %s is not a storage host of %s", *host, p.Source)
		}
	}
	ring, err := keyfile.Load(p.Cluster.KeyFile)
	if err != nil {
		return fail(checkpassword.ExitTempErr, "cluster key: %v (Dovecot's auth process must read it: service auth { extra_groups = correo-key })", err)
	}
	client, err := pwclient.FromProfile(p, ring, nil)
	if err != nil {
		return fail(checkpassword.ExitTempErr, "%v", err)
	}
	// Failover to the secondary takes the profile's timeout; a little
	// more, and Dovecot (which waits for this process) gets an answer.
	ctx, cancel := context.WithTimeout(context.Background(), 2*p.Cluster.Passwd.Timeout.Std()+time.Second)
	res := (&checkpassword.Checker{Dir: client, Profile: p, Host: *host}).Check(ctx, req)
	cancel()
	client.Close()
	if res.Exit != 0 {
		return fail(res.Exit, "%s: %s", req.User, res.Why)
	}
	err = syscall.Exec(reply, []string{reply}, append(os.Environ(), res.Env...))
	return fail(checkpassword.ExitTempErr, "running Dovecot's reply helper %s: %v", reply, err)
}
