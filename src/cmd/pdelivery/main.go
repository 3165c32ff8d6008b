// Command pdelivery is correo's mail delivery agent for MTAs: it reads one
// message on standard input and delivers it by LMTP to the pdeliveryd of
// the storage host holding the recipient's mailbox, then exits with a
// sysexits(3) code the MTA understands.
//
//	pdelivery [-profile f] [-f sender] [-a original-address] -d user
//	pdelivery [-profile f] [-f sender] user
//
// -f MAILER-DAEMON (no domain: how Sendmail passes the null sender of
// a bounce) is the null sender, like -f "<>".
//
// user is a bare name (juan, delivered to juan@<first cluster domain>) or
// an address at a cluster domain. A leading mbox "From " line on the
// input is dropped.
//
// With the cluster key readable (run as root or as the service user) the
// storage host comes from passwdd. Without it (Postfix runs
// mailbox_command as the recipient) the message goes to this host's
// pdeliveryd when this is a storage host, or to the first storage host,
// which names the right one ("451 4.3.0 <u> is stored on H") and pdelivery
// follows. This host's pdeliveryd is reached over its Unix socket when
// permitted, else by TCP (allowed from the cluster network).
//
// Exit codes: 0 delivered; 67 EX_NOUSER (no such user or address); 65
// EX_DATAERR (the message or sender is unacceptable: too large, bad
// line); 69 EX_UNAVAILABLE (a permanent refusal: mailbox disabled, over
// quota); 75 EX_TEMPFAIL (try again later — also for configuration and
// command-line errors, so a typo in the MTA's configuration keeps mail
// queued instead of bouncing it); 70 EX_SOFTWARE (an internal error).
// One line on standard error says what happened; MTAs put it in the log
// or the bounce.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"correo/src/cluster"
	"correo/src/delivery"
	"correo/src/keyfile"
	"correo/src/lmtpd"
	"correo/src/logging"
	"correo/src/pwclient"
)

// sysexits(3).
const (
	exOK          = 0
	exDataErr     = 65
	exNoUser      = 67
	exUnavailable = 69
	exSoftware    = 70
	exTempFail    = 75
)

// deliveryTimeout bounds the whole delivery: an MTA waits for its MDA,
// and a stuck one holds a delivery slot.
const deliveryTimeout = 5 * time.Minute

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stderr))
}

// exitError is a failure with its exit code.
type exitError struct {
	code int
	msg  string
}

func fail(code int, format string, a ...any) *exitError {
	return &exitError{code, fmt.Sprintf(format, a...)}
}

func run(args []string, stdin io.Reader, stderr io.Writer) int {
	e := deliver(args, stdin)
	if e.code != exOK || e.msg != "" {
		fmt.Fprintf(stderr, "pdelivery: %s\n", e.msg)
	}
	return e.code
}

type options struct {
	profile, host, socket string
	from, orig, user      string
}

func parseArgs(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("pdelivery", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.profile, "profile", "", "host profile (default: the embedded hosts/dev.toml)")
	fs.StringVar(&o.host, "host", "", "this host's name in the profile (default: the host whose address is on this machine)")
	fs.StringVar(&o.socket, "socket", delivery.DefaultSocket, "pdeliveryd's Unix socket on this host")
	fs.StringVar(&o.from, "f", "", "envelope sender (empty or <> for the null sender)")
	fs.StringVar(&o.orig, "a", "", "original recipient address, as the MTA received it (logged)")
	fs.StringVar(&o.user, "d", "", "recipient: a user name or an address at a cluster domain")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case o.user == "" && fs.NArg() == 1:
		o.user = fs.Arg(0)
	case o.user != "" && fs.NArg() == 0:
	case fs.NArg() > 1 || (o.user != "" && fs.NArg() > 0):
		return o, errors.New("exactly one recipient is supported")
	default:
		return o, errors.New("no recipient: use -d user")
	}
	o.from = strings.TrimSuffix(strings.TrimPrefix(o.from, "<"), ">")
	// Sendmail hands its local mailer the null sender of a bounce as $g =
	// MAILER-DAEMON, without a domain; refusing it would lose every DSN
	// for a local user.
	if strings.EqualFold(o.from, "MAILER-DAEMON") {
		o.from = ""
	}
	return o, nil
}

func deliver(args []string, stdin io.Reader) *exitError {
	o, err := parseArgs(args)
	if err != nil {
		return fail(exTempFail, "usage: %v; usage: pdelivery [-profile f] [-f sender] [-a original] -d user (nothing delivered)", err)
	}
	p, err := cluster.LoadFlag(o.profile, cluster.Options{SkipFiles: true})
	if err != nil {
		return fail(exTempFail, "configuration: %v", oneLine(err))
	}
	rcpt := o.user
	if !strings.Contains(rcpt, "@") {
		if len(p.Cluster.Domains) == 0 {
			return fail(exTempFail, "configuration: %s lists no cluster.domains", p.Source)
		}
		rcpt += "@" + p.Cluster.Domains[0]
	}
	msg, xerr := readMessage(stdin, lmtpd.DefaultLimits.MaxMessageBytes)
	if xerr != nil {
		return xerr
	}
	local := o.host
	if local == "" {
		local = localHost(p)
	} else if _, err := p.Host(local); err != nil {
		return fail(exTempFail, "configuration: %v", err)
	}
	cfg := delivery.Config{Profile: p, Local: local, Socket: o.socket}
	// With the key, ask passwdd; without it, let the storage hosts say
	// where the mailbox is.
	if ring, err := keyfile.Load(p.Cluster.KeyFile); err == nil {
		pw, err := pwclient.FromProfile(p, ring, nil)
		if err != nil {
			return fail(exTempFail, "configuration: %v", err)
		}
		defer pw.Close()
		cfg.Users = pw
	} else if h, err := p.Host(local); err == nil && h.HasRole(cluster.RoleStorage) {
		cfg.Fallback = local
	}
	d, err := delivery.New(cfg)
	if err != nil {
		return fail(exTempFail, "configuration: %v", err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout)
	defer cancel()
	trace := logging.NewTraceID()
	res := d.Deliver(ctx, delivery.Envelope{From: o.from, To: []string{rcpt}, Trace: trace}, bytes.NewReader(msg))
	if len(res) != 1 {
		return fail(exSoftware, "internal error: %d results for one recipient", len(res))
	}
	return outcome(res[0], o.orig)
}

// outcome maps a delivery result to an exit code and the stderr line.
func outcome(r delivery.Result, orig string) *exitError {
	what := r.Rcpt
	if orig != "" && orig != r.Rcpt {
		what += " (originally " + orig + ")"
	}
	line := fmt.Sprintf("%s: %d %s %s", what, r.Code, r.Enhanced, r.Text)
	if r.Host != "" {
		line += " [" + r.Host + "]"
	}
	switch r.Status {
	case delivery.Delivered:
		return &exitError{exOK, ""}
	case delivery.Temporary:
		return &exitError{exTempFail, line}
	case delivery.Permanent:
		switch {
		case r.Enhanced == "5.1.7" || r.Enhanced == "5.3.4" || strings.HasPrefix(r.Enhanced, "5.6.") || r.Enhanced == "5.5.2":
			return &exitError{exDataErr, line}
		case strings.HasPrefix(r.Enhanced, "5.1."):
			return &exitError{exNoUser, line}
		default:
			return &exitError{exUnavailable, line}
		}
	}
	return &exitError{exSoftware, "internal error: no outcome for " + line}
}

// readMessage reads the message, dropping a leading mbox "From " line
// (Sendmail's and Postfix's local delivery may add one), and refuses one
// over max bytes.
func readMessage(r io.Reader, max int64) ([]byte, *exitError) {
	br := bufio.NewReaderSize(r, 64<<10)
	if peek, _ := br.Peek(5); string(peek) == "From " {
		if _, err := br.ReadSlice('\n'); err != nil && !errors.Is(err, bufio.ErrBufferFull) && !errors.Is(err, io.EOF) {
			return nil, fail(exTempFail, "reading the message: %v", err)
		}
	}
	msg, err := io.ReadAll(io.LimitReader(br, max+1))
	if err != nil {
		return nil, fail(exTempFail, "reading the message: %v", err)
	}
	if int64(len(msg)) > max {
		return nil, fail(exDataErr, "message larger than %d bytes; not delivered", max)
	}
	return msg, nil
}

// localHost finds the profile host whose address is on this machine: the
// host whose pdeliveryd the Unix socket belongs to. "" when none is.
func localHost(p *cluster.Profile) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	var nets []*net.IPNet
	for _, a := range addrs {
		if pn, ok := a.(*net.IPNet); ok {
			nets = append(nets, pn)
		}
	}
	isMine := func(ip netip.Addr) bool {
		for _, n := range nets {
			// All of 127.0.0.0/8 answers on lo, not just the listed address.
			if n.IP.Equal(ip.AsSlice()) || (n.IP.IsLoopback() && n.Contains(ip.AsSlice())) {
				return true
			}
		}
		return false
	}
	// A storage host first: that is the one whose socket matters.
	for _, h := range p.HostsWithRole(cluster.RoleStorage) {
		if isMine(h.Addr()) {
			return h.Name
		}
	}
	for i := range p.Hosts {
		if isMine(p.Hosts[i].Addr()) {
			return p.Hosts[i].Name
		}
	}
	return ""
}

// oneLine joins a multi-line error (profile errors list every problem).
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
