package runner

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// probeDNS asks the server for the zone's SOA: ready means the zone is
// loaded and answered authoritatively, not merely that a port is open.
func probeDNS(ctx context.Context, server netip.AddrPort, zone string) error {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	c := &dns.Client{Timeout: 500 * time.Millisecond}
	in, _, err := c.ExchangeContext(ctx, m, server.String())
	if err != nil {
		return err
	}
	if in.Rcode != dns.RcodeSuccess || !in.Authoritative || len(in.Answer) == 0 {
		return fmt.Errorf("zone %s not served yet (rcode %s, aa %v)", zone, dns.RcodeToString[in.Rcode], in.Authoritative)
	}
	return nil
}
