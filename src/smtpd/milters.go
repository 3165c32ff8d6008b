package smtpd

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emersion/go-smtp"

	"correo/src/cluster"
	"correo/src/logging"
	"correo/src/milter"
)

// Milters hands each message to the profile's milters ([[cluster.milter]]):
// mail from outside to those of the mx role, the cluster's own mail to
// those of the relay role. A milter down, slow or talking garbage gets its
// on_failure: a 451 the sender retries, or the message queued unfiltered
// (package milter logs which).
type Milters struct {
	s         *Server
	mx, relay *milter.Chain
}

// NewMilters builds the chains of this host's roles; nil when none of
// the profile's milters serves them.
func NewMilters(s *Server) (*Milters, error) {
	p, h := s.cfg.Profile, s.cfg.Host
	chain := func(role cluster.Role) (*milter.Chain, error) {
		if !h.HasRole(role) {
			return nil, nil
		}
		var cfgs []milter.Config
		for _, m := range p.Cluster.Milters {
			for _, r := range m.Roles {
				if r != role {
					continue
				}
				pol, err := milter.ParsePolicy(m.OnFailure)
				if err != nil {
					return nil, err
				}
				cfgs = append(cfgs, milter.Config{Name: m.Name, Addr: m.Address, Timeout: m.Timeout.Std(), OnFailure: pol})
			}
		}
		if len(cfgs) == 0 {
			return nil, nil
		}
		return milter.NewChain(cfgs, s.log)
	}
	mx, err := chain(cluster.RoleMX)
	if err != nil {
		return nil, fmt.Errorf("smtpd: mx milters: %w", err)
	}
	relay, err := chain(cluster.RoleRelay)
	if err != nil {
		return nil, fmt.Errorf("smtpd: relay milters: %w", err)
	}
	if mx == nil && relay == nil {
		return nil, nil
	}
	return &Milters{s: s, mx: mx, relay: relay}, nil
}

func (m *Milters) Name() string { return "milters" }

func (m *Milters) Filter(ctx context.Context, in *FilterInput) (Verdict, error) {
	sess := in.Session
	chain, name := m.mx, "mx"
	if sess.User != "" || m.s.inNetwork(sess) {
		chain, name = m.relay, "relay"
	}
	if chain == nil {
		return Verdict{}, nil
	}
	env := milter.Envelope{Client: netip.AddrPortFrom(sess.Client, 0), Helo: sess.Helo, From: in.From, Rcpts: in.Rcpts,
		AuthUser: sess.User, QueueID: in.QueueID, Hostname: m.s.name}
	v, err := chain.Check(ctx, in.Trace, env, in.Open())
	m.s.cfg.Metrics.milter(name, v, err)
	if err != nil {
		return Verdict{}, err
	}
	if len(v.Unfiltered) > 0 {
		m.s.log.Warn("queued without a milter's check (on_failure accept)", logging.TraceKey, in.Trace, "milters", strings.Join(v.Unfiltered, ","))
	}
	switch v.Action {
	case milter.Reject, milter.Tempfail:
		m.s.log.Info("message refused by a milter", logging.TraceKey, in.Trace, "milter", v.By, "code", v.Code, "reply", v.Text)
		return Verdict{Reject: milterReply(v)}, nil
	case milter.Discard:
		m.s.log.Info("message discarded by a milter", logging.TraceKey, in.Trace, "milter", v.By)
		return Verdict{Discard: true}, nil
	case milter.Quarantine:
		m.s.log.Info("message quarantined by a milter", logging.TraceKey, in.Trace, "milter", v.By, "reason", v.Reason)
		return Verdict{Quarantine: true, Changes: v.Changes}, nil
	}
	return Verdict{Changes: v.Changes}, nil
}

func milterReply(v milter.Verdict) *smtp.SMTPError { return replyCode(v.Code, v.Enhanced, v.Text) }
