package smtpd

import (
	"fmt"
	"net"

	"correo/src/cluster"
)

// Listeners opens a host's SMTP ports with their policies: mx on the SMTP
// port; relay on the relay port (the cluster's hosts), submission (587)
// and submissions (465, only with a certificate). When the mx and relay
// ports coincide, one listener serves both (outsiders deliver to local
// users, cluster hosts and authenticated users relay). listen opens (or
// takes from systemd) the socket of one service; auth checks relay
// logins.
func Listeners(srv *Server, auth Authenticator, listen func(cluster.Service) (net.Listener, error)) (out []Listener, err error) {
	p, h := srv.cfg.Profile, srv.cfg.Host
	isMX, isRelay := h.HasRole(cluster.RoleMX), h.HasRole(cluster.RoleRelay)
	defer func() {
		if err != nil {
			for _, l := range out {
				l.Listener.Close()
			}
			out = nil
		}
	}()
	// Every listener gets the host's filters; each picks its messages by
	// session (mail from outside is verified, the cluster's own signed).
	var filters []Filter
	if isMX {
		filters = append(filters, NewVerify(srv, srv.cfg.AuthResolver))
	}
	ms, err := NewMilters(srv)
	if err != nil {
		return nil, err
	}
	if ms != nil {
		filters = append(filters, ms)
	}
	// Signing comes last, over the message as received: a relay milter's
	// header changes must not touch the signed fields (From, Subject...).
	if isRelay {
		if sg := NewSign(srv); sg != nil {
			filters = append(filters, sg)
		}
	}
	open := func(name string, svc cluster.Service, pol Policy, implicit bool) error {
		pol.Filters = filters
		ln, err := listen(svc)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", name, svc, err)
		}
		out = append(out, Listener{Name: name, Listener: ln, Policy: pol, ImplicitTLS: implicit})
		return nil
	}
	var relay *Relay
	if isRelay {
		if relay, err = NewRelay(srv, RelayConfig{Auth: auth}); err != nil {
			return nil, err
		}
	}
	shared := false
	if isMX && isRelay {
		a, _ := p.Listen(h.Name, cluster.SvcSMTP)
		b, _ := p.Listen(h.Name, cluster.SvcRelay)
		shared = a == b
	}
	if isMX {
		pol := Policy{}
		name := "mx"
		if shared {
			pol, name = relay.MXPolicy(), "mx+relay"
		}
		if err := open(name, cluster.SvcSMTP, pol, false); err != nil {
			return out, err
		}
	}
	if !isRelay {
		return out, nil
	}
	if !shared {
		if err := open("relay", cluster.SvcRelay, relay.ClusterPolicy(), false); err != nil {
			return out, err
		}
	}
	if err := open("submission", cluster.SvcSubmission, relay.SubmissionPolicy(), false); err != nil {
		return out, err
	}
	if srv.cfg.TLS == nil {
		srv.Log().Warn("no [host.tls]: submissions (465) not served, and AUTH on 587 only if the profile's trusted_network allows plaintext", "host", h.Name)
		return out, nil
	}
	return out, open("submissions", cluster.SvcSubmissions, relay.SubmissionPolicy(), true)
}
