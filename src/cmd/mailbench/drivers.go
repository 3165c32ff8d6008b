package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"

	"correo/src/cluster"
	"correo/src/keyfile"
	"correo/src/lmtpclient"
	"correo/src/loadstat"
	"correo/src/pwclient"
)

// env is what a run's workers share.
type env struct {
	o       *options
	profile *cluster.Profile
	users   []benchUser
	domain  string
	tls     *tls.Config
	pw      *pwclient.Client // passwd commands and directory users
	nss     *nssLookup
	// targets per kind of operation: checked addresses to dial.
	targets map[string][]string
}

func (e *env) close() {
	if e.pw != nil {
		e.pw.Close()
	}
}

// setup loads the profile, checks every target and finds the users.
func setup(ctx context.Context, o *options) (*env, error) {
	p, err := cluster.LoadFlag(o.profilePath, cluster.Options{})
	if err != nil {
		return nil, err
	}
	e := &env{o: o, profile: p, targets: map[string][]string{}, domain: o.domain}
	if e.domain == "" {
		e.domain = "correo.test"
		if len(p.Cluster.Domains) > 0 {
			e.domain = p.Cluster.Domains[0]
		}
	}
	if o.caFile != "" || o.insecure || o.cmd == "submission" || o.cmd == "mix" || o.starttls {
		e.tls = &tls.Config{InsecureSkipVerify: o.insecure}
		if o.caFile != "" {
			pem, err := os.ReadFile(o.caFile)
			if err != nil {
				return nil, fmt.Errorf("--ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ca %s holds no PEM certificate", o.caFile)
			}
			e.tls.RootCAs = pool
		}
	}
	kinds := []string{o.cmd}
	if o.cmd == "mix" {
		kinds = mixKinds
	}
	for _, k := range kinds {
		svc := serviceOf(k)
		if svc == "" {
			continue
		}
		raw := o.targets
		if len(raw) == 0 || o.cmd == "mix" {
			raw = nil
			for _, ep := range p.Endpoints(svc) {
				raw = append(raw, ep.Addr.String())
			}
		}
		if len(raw) == 0 {
			return nil, fmt.Errorf("%s: no host of %s provides %s, and no --target was given", k, p.Source, svc)
		}
		t, err := checkTargets(ctx, raw, p.NetworkPrefix(), o.allowRemote, systemResolver)
		if err != nil {
			return nil, err
		}
		e.targets[k] = t
	}
	needPasswd := o.cmd == "passwd" || o.cmd == "mix" || o.usersFile == ""
	if needPasswd {
		if err := e.openPasswd(ctx); err != nil {
			return nil, err
		}
	}
	if o.usersFile != "" {
		e.users, err = loadUsersFile(o.usersFile, o.password)
	} else {
		e.users, err = directoryUsers(ctx, e.pw, o.users, o.password)
	}
	if err != nil {
		return nil, err
	}
	if o.cmd == "nss" {
		if o.nssSocket != "" {
			os.Setenv("CORREO_NSS_SOCKET", o.nssSocket)
		}
		if e.nss, err = openNSS(o.nssLib, o.libc); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// openPasswd makes the pwclient: the profile's passwd servers, or the
// --target addresses (primary, then secondary) for the passwd command.
func (e *env) openPasswd(ctx context.Context) error {
	p, o := e.profile, e.o
	kf := o.keyFile
	if kf == "" {
		kf = p.Cluster.KeyFile
	}
	ring, err := keyfile.Load(kf)
	if err != nil {
		return fmt.Errorf("the cluster key (passwd datagrams are sealed with it): %w; give --key or a --users-file", err)
	}
	addrs := e.targets["passwd"]
	if len(addrs) == 0 {
		addrs = e.targets["passwd-lookup"]
	}
	if len(addrs) == 0 {
		var raw []string
		for _, ep := range p.Endpoints(cluster.SvcPasswd) {
			raw = append(raw, ep.Addr.String())
		}
		if addrs, err = checkTargets(ctx, raw, p.NetworkPrefix(), o.allowRemote, systemResolver); err != nil {
			return err
		}
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%s names no passwd server", p.Source)
	}
	cfg := pwclient.Config{Ring: ring, Timeout: p.Cluster.Passwd.Timeout.Std()}
	if cfg.Primary, err = netip.ParseAddrPort(addrs[0]); err != nil {
		return err
	}
	if len(addrs) > 1 {
		if cfg.Secondary, err = netip.ParseAddrPort(addrs[1]); err != nil {
			return err
		}
	}
	e.pw, err = pwclient.New(cfg)
	return err
}

func (e *env) addr(u benchUser) string { return u.Name + "@" + e.domain }

// opFunc is one kind's operation for one worker.
type opFunc func(ctx context.Context) error

// kindWorker makes one worker's operation for kind; r is the worker's own
// random source, i its number (it picks the worker's target).
func (e *env) kindWorker(kind string, i int, r *rand.Rand) (opFunc, func()) {
	o := e.o
	pick := func() benchUser { return e.users[r.IntN(len(e.users))] }
	target := func() string { t := e.targets[kind]; return t[i%len(t)] }
	// STARTTLS (POP3 STLS, IMAP STARTTLS) only when asked for.
	var stls *tls.Config
	if o.starttls {
		stls = e.tls
	}
	switch kind {
	case "smtp", "submission":
		var c *smtpConn
		sent, seq := 0, 0
		closeConn := func() {
			if c != nil {
				c.Close()
				c = nil
			}
		}
		from := o.from
		return func(ctx context.Context) error {
			if c == nil {
				d := smtpDial{Addr: target(), Hello: o.hello, Timeout: o.timeout}
				if kind == "submission" {
					u := pick()
					d.StartTLS, d.TLS, d.User, d.Password, d.PlainAuth = true, e.tls, u.Name, u.Password, o.plainAuth
					from = e.addr(u)
				}
				var err error
				if c, err = dialSMTP(ctx, d); err != nil {
					return err
				}
				sent = 0
			}
			rcpts := make([]string, o.rcpts)
			for j := range rcpts {
				rcpts[j] = e.addr(pick())
			}
			seq++
			err := c.send(from, rcpts, makeBody(from, rcpts[0], o.sizes.pick(r), seq), o.pipelining)
			sent++
			if _, refused := err.(*ReplyError); (err != nil && !refused) || sent >= o.msgsPerSession {
				closeConn()
			}
			return err
		}, closeConn
	case "lmtp":
		var c *lmtpclient.Client
		var conn net.Conn
		sent, seq := 0, 0
		closeConn := func() {
			if c != nil {
				conn.SetDeadline(time.Now().Add(time.Second))
				c.Close()
				c, conn = nil, nil
			}
		}
		return func(ctx context.Context) error {
			if c == nil {
				dl := net.Dialer{Timeout: o.timeout}
				var err error
				if conn, err = dl.DialContext(ctx, "tcp", target()); err != nil {
					return err
				}
				conn.SetDeadline(time.Now().Add(o.timeout))
				if c, err = lmtpclient.New(conn, o.hello); err != nil {
					conn.Close()
					c, conn = nil, nil
					return err
				}
				sent = 0
			}
			rcpts := make([]string, o.rcpts)
			for j := range rcpts {
				rcpts[j] = e.addr(pick())
			}
			seq++
			body := makeBody(o.from, rcpts[0], o.sizes.pick(r), seq)
			conn.SetDeadline(time.Now().Add(o.timeout))
			out, err := c.Send(o.from, int64(len(body)), rcpts, bytes.NewReader(body))
			sent++
			if err == nil {
				if err = lmtpRefusal(out); err != nil {
					if rerr := c.Reset(); rerr != nil {
						closeConn()
					}
				}
			} else {
				closeConn()
			}
			if sent >= o.msgsPerSession {
				closeConn()
			}
			return err
		}, closeConn
	case "pop3":
		return func(ctx context.Context) error {
			u := pick()
			c, err := dialPOP3(ctx, target(), o.timeout, stls)
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.session(u.Name, u.Password, o.retr, o.dele)
			return err
		}, nil
	case "imap":
		return func(ctx context.Context) error {
			u := pick()
			c, err := dialIMAP(ctx, target(), o.timeout, stls)
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.session(u.Name, u.Password, o.fetch, o.idle)
			return err
		}, nil
	case "passwd-lookup":
		return func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, o.timeout)
			defer cancel()
			_, err := e.pw.LookupName(ctx, pick().Name)
			return err
		}, nil
	case "passwd-auth":
		return func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, o.timeout)
			defer cancel()
			u := pick()
			_, err := e.pw.Authenticate(ctx, u.Name, u.Password, "127.0.0.1")
			return err
		}, nil
	case "nss":
		return func(ctx context.Context) error { return e.nss.getpwnam(pick().Name) }, nil
	}
	panic("mailbench: no worker for " + kind)
}

// lmtpRefusal is the first refusal in an LMTP transaction's outcome.
func lmtpRefusal(out *lmtpclient.Outcome) error {
	ref := func(step string, r lmtpclient.Reply) error {
		return &ReplyError{step, r.Code, r.Text}
	}
	if out.Mail.Code != 0 && !out.Mail.OK() {
		return ref("MAIL", out.Mail)
	}
	for _, r := range out.Rcpts {
		if r.Code != 0 && !r.OK() {
			return ref("RCPT", r)
		}
	}
	if out.Data.Code != 0 && out.Data.Code != 354 {
		return ref("DATA", out.Data)
	}
	for i, r := range out.Final {
		if out.Rcpts[i].OK() && !r.OK() {
			return ref("end of data", r)
		}
	}
	return nil
}

// workerFactory builds the scheduler's workers for a single-kind command.
func (e *env) workerFactory() func(int) loadstat.Worker {
	kind := e.o.cmd
	if kind == "passwd" {
		kind = "passwd-lookup"
		if e.o.auth {
			kind = "passwd-auth"
		}
	}
	if kind != e.o.cmd {
		e.targets[kind] = e.targets[e.o.cmd]
	}
	return func(i int) loadstat.Worker {
		r := rand.New(rand.NewPCG(e.o.seed, uint64(i)))
		op, closeFn := e.kindWorker(kind, i, r)
		return loadstat.Worker{
			Op:    func(ctx context.Context) (string, error) { return kind, op(ctx) },
			Close: closeFn,
		}
	}
}
