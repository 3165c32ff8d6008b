package remote

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// mxHost is one place to try for a domain, in order.
type mxHost struct {
	Name  string       // the MX target (or the domain itself: implicit MX)
	Addrs []netip.Addr // its addresses, IPv4 first
}

// lookupError is a DNS answer that decides the recipients' fate.
type lookupError struct {
	permanent bool
	code      int
	enhanced  string
	text      string
}

func (e *lookupError) Error() string { return e.text }

// resolver asks the configured name servers directly (miekg/dns), so
// tests and the cluster DNS can be pointed at without touching the host's
// stub resolver.
type resolver struct {
	servers []string
	timeout time.Duration
}

// serversFromResolvConf reads the nameserver lines of path.
func serversFromResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("remote: reading name servers from %s: %w", path, err)
	}
	var out []string
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("remote: no nameserver in %s: add one, or configure the resolvers", path)
	}
	return out, nil
}

// query asks each server in turn until one answers with NOERROR or
// NXDOMAIN; anything else (timeouts, SERVFAIL) is a temporary failure.
func (r *resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	c := &dns.Client{Timeout: r.timeout}
	var last error
	for _, s := range r.servers {
		in, _, err := c.ExchangeContext(ctx, m, s)
		if err == nil && in.Truncated {
			tc := &dns.Client{Net: "tcp", Timeout: r.timeout}
			in, _, err = tc.ExchangeContext(ctx, m, s)
		}
		if err != nil {
			last = fmt.Errorf("%s: %w", s, err)
			continue
		}
		if in.Rcode == dns.RcodeSuccess || in.Rcode == dns.RcodeNameError {
			return in, nil
		}
		last = fmt.Errorf("%s answered %s", s, dns.RcodeToString[in.Rcode])
	}
	if last == nil {
		last = errors.New("no name server configured")
	}
	return nil, last
}

// lookup returns the hosts to try for domain, in the order RFC 5321 §5.1
// asks: MX records by preference (equal preferences shuffled, to spread
// the load), or the domain's own addresses when it has no MX. A null MX
// (RFC 7505) and a non-existent domain are permanent failures.
func (r *resolver) lookup(ctx context.Context, domain string) ([]mxHost, error) {
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		lit := strings.TrimPrefix(domain[1:len(domain)-1], "IPv6:")
		ip, err := netip.ParseAddr(lit)
		if err != nil {
			return nil, &lookupError{permanent: true, code: 550, enhanced: "5.1.2", text: "bad address literal " + domain}
		}
		return []mxHost{{Name: domain, Addrs: []netip.Addr{ip.Unmap()}}}, nil
	}
	in, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, &lookupError{code: 451, enhanced: "4.4.3", text: "MX lookup for " + domain + " failed: " + err.Error()}
	}
	if in.Rcode == dns.RcodeNameError {
		return nil, &lookupError{permanent: true, code: 550, enhanced: "5.1.2", text: "domain " + domain + " does not exist"}
	}
	var mxs []*dns.MX
	for _, rr := range in.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, mx)
		}
	}
	if len(mxs) == 1 && mxs[0].Mx == "." {
		return nil, &lookupError{permanent: true, code: 556, enhanced: "5.1.10",
			text: "domain " + domain + " does not accept mail (null MX)"}
	}
	if len(mxs) == 0 {
		// RFC 5321 §5.1: no MX, the domain itself is the implicit MX.
		addrs, err := r.addrs(ctx, domain)
		if err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, &lookupError{permanent: true, code: 550, enhanced: "5.1.2",
				text: "domain " + domain + " has neither MX nor address records"}
		}
		return []mxHost{{Name: domain, Addrs: addrs}}, nil
	}
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Preference < mxs[j].Preference })
	var hosts []mxHost
	var lastErr error
	for _, mx := range mxs {
		if mx.Mx == "." {
			continue // a null MX among real ones is a misconfiguration: skip it
		}
		name := strings.TrimSuffix(mx.Mx, ".")
		addrs, err := r.addrs(ctx, name)
		if err != nil {
			lastErr = err
			continue
		}
		if len(addrs) > 0 {
			hosts = append(hosts, mxHost{Name: name, Addrs: addrs})
		}
	}
	if len(hosts) == 0 {
		if lastErr != nil {
			return nil, lastErr
		}
		// MX targets without addresses may be a transient zone error.
		return nil, &lookupError{code: 451, enhanced: "4.4.4", text: "no MX host of " + domain + " has an address"}
	}
	return hosts, nil
}

// addrs resolves A then AAAA records of name. NXDOMAIN is an empty list;
// a failed query is a temporary error.
func (r *resolver) addrs(ctx context.Context, name string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	var out []netip.Addr
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		in, err := r.query(ctx, name, t)
		if err != nil {
			if t == dns.TypeAAAA && len(out) > 0 {
				break // IPv4 is enough to proceed
			}
			return nil, &lookupError{code: 451, enhanced: "4.4.3", text: "address lookup for " + name + " failed: " + err.Error()}
		}
		for _, rr := range in.Answer {
			switch a := rr.(type) {
			case *dns.A:
				if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
					out = append(out, ip)
				}
			case *dns.AAAA:
				if ip, ok := netip.AddrFromSlice(a.AAAA); ok {
					out = append(out, ip)
				}
			}
		}
	}
	return out, nil
}
