package smtpd

import (
	"context"
	"crypto"
	"io"
	"log/slog"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"correo/src/cluster"
	"correo/src/dkimkeys"
	"correo/src/dkimsign"
	"correo/src/logging"
	"correo/src/mailauth"
)

// Verify is the mx's mail authentication (package mailauth): SPF, DKIM
// and DMARC of mail from outside the cluster, recorded in an
// Authentication-Results field under the cluster's authserv-id (any such
// field the sender forged is removed). With enforce, DMARC p=reject
// failures are refused at the end of DATA and p=quarantine failures go
// to the recipients' Junk folder.
type Verify struct {
	V       *mailauth.Verifier
	Enforce bool
	s       *Server
}

// NewVerify is the mx filter from the profile's [cluster.mail_auth];
// resolver nil asks the system's name servers.
func NewVerify(s *Server, resolver mailauth.Resolver) *Verify {
	ma := s.cfg.Profile.Cluster.MailAuth
	return &Verify{s: s, Enforce: ma.Inbound == cluster.InboundEnforce,
		V: &mailauth.Verifier{AuthServID: ma.AuthServID, Resolver: resolver}}
}

func (v *Verify) Name() string { return "mail authentication" }

func (v *Verify) Filter(ctx context.Context, in *FilterInput) (Verdict, error) {
	sess := in.Session
	if sess.User != "" || v.s.inNetwork(sess) {
		return Verdict{}, nil // the cluster's own mail: signed, not checked
	}
	res, err := v.V.Check(ctx, mailauth.Input{ClientIP: sess.Client, Helo: sess.Helo, MailFrom: in.From, Message: in.Open()})
	if err != nil {
		return Verdict{}, err
	}
	out := Verdict{Prepend: res.Header, StripAuthResults: v.V.AuthServID}
	attrs := []any{logging.TraceKey, in.Trace, "spf", res.SPF.Result, "dmarc", res.DMARC.Result, "disposition", res.Disposition.String()}
	for _, d := range res.DKIM {
		attrs = append(attrs, "dkim", d.Result+" d="+d.Domain)
	}
	v.s.log.Info("mail authentication", attrs...)
	switch res.Disposition {
	case mailauth.Reject:
		// An oversized header is refused whatever the policy: it is not
		// mail (552 5.3.4).
		if v.Enforce || res.ReplyCode == 552 {
			out.Reject = replyCode(res.ReplyCode, res.ReplyEnhanced, res.ReplyText)
		}
	case mailauth.Quarantine:
		out.Quarantine = v.Enforce
	}
	return out, nil
}

// replyCode is a filter's reply as go-smtp sends it; enhanced ("5.7.1")
// falls back to X.7.1 of the code's class when it is not three numbers.
func replyCode(code int, enhanced, text string) *smtp.SMTPError {
	ec := smtp.EnhancedCode{code / 100, 7, 1}
	if p := strings.Split(enhanced, "."); len(p) == 3 {
		for i := range p {
			ec[i], _ = strconv.Atoi(p[i])
		}
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: text}
}

// Sign adds DKIM signatures (Ed25519 and RSA, package dkimsign) to the
// mail the cluster's users and hosts send from a cluster domain, with the
// keys the profile's records file says sign now (dkimkeys.Signing).
type Sign struct {
	s    *Server
	file dkimkeys.File
	dir  string
	wait time.Duration
	log  *slog.Logger

	mu    sync.Mutex
	cache map[string]crypto.Signer // selector@domain
}

// NewSign is the relay's signer; nil when the profile has no DKIM keys.
func NewSign(s *Server) *Sign {
	p := s.cfg.Profile
	if len(p.DKIM) == 0 {
		return nil
	}
	return &Sign{s: s, file: dkimkeys.File{Keys: p.DKIM}, dir: p.Cluster.MailAuth.DKIMKeyDir,
		wait: p.Cluster.MailAuth.DKIMPublishWait.Std(), log: s.log, cache: map[string]crypto.Signer{}}
}

func (g *Sign) Name() string { return "DKIM signing" }

func (g *Sign) Filter(ctx context.Context, in *FilterInput) (Verdict, error) {
	sess := in.Session
	if sess.User == "" && !g.s.inNetwork(sess) {
		return Verdict{}, nil // mail from outside is verified, not signed
	}
	domain := fromDomain(in.Open())
	if domain == "" || !slices.Contains(g.s.cfg.Profile.Cluster.Domains, domain) {
		return Verdict{}, nil
	}
	var keys []dkimsign.Key
	for _, r := range g.file.Signing(domain, time.Now(), g.wait) {
		k, err := g.key(r)
		if err != nil {
			// Unsigned mail still counts for SPF; refusing it would stop
			// the domain's mail for a file copy an operator forgot.
			g.log.Error("DKIM key unusable: the message goes out without its signature", logging.TraceKey, in.Trace, "domain", domain, "selector", r.Selector, "err", err)
			continue
		}
		keys = append(keys, dkimsign.Key{Domain: domain, Selector: r.Selector, Signer: k})
	}
	if len(keys) == 0 {
		return Verdict{}, nil
	}
	sigs, err := dkimsign.Signatures(in.Open(), keys, nil)
	if err != nil {
		g.log.Warn("DKIM signing failed: the message goes out unsigned", logging.TraceKey, in.Trace, "domain", domain, "err", err)
		return Verdict{}, nil
	}
	return Verdict{Prepend: sigs}, nil
}

func (g *Sign) key(r dkimkeys.Record) (crypto.Signer, error) {
	id := r.Selector + "@" + r.Domain
	g.mu.Lock()
	defer g.mu.Unlock()
	if k, ok := g.cache[id]; ok {
		return k, nil
	}
	k, err := dkimkeys.LoadPrivate(g.dir, r)
	if err != nil {
		return nil, err
	}
	g.cache[id] = k
	return k, nil
}

// fromDomain is the domain of the message's From address, lower-cased;
// "" when there is not exactly one.
func fromDomain(r io.Reader) string {
	m, err := mail.ReadMessage(r)
	if err != nil {
		return ""
	}
	list, err := mail.ParseAddressList(m.Header.Get("From"))
	if err != nil || len(list) != 1 {
		return ""
	}
	return lowerDomain(list[0].Address)
}
