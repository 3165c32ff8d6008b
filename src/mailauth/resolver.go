package mailauth

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
)

// Resolver is the DNS a Verifier asks: SPF needs all four lookups (TXT for
// records, MX, A/AAAA and PTR for the mechanisms), DKIM and DMARC only TXT.
// *net.Resolver has these methods; NewResolver makes one that asks given
// servers (the cluster's own DNS) instead of /etc/resolv.conf's.
//
// A lookup that finds no name or no record of the type must return a
// *net.DNSError with IsNotFound set, as net.Resolver does: that is "none",
// not an error. Every other failure is taken as temporary (RFC 7208
// section 4.4, RFC 6376 section 6.1.2): a temperror, never a fail.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// NewResolver returns a resolver that sends every query to the given
// servers ("192.0.2.53:53", "[2001:db8::53]:53"), in turn, over UDP and
// over TCP when an answer is truncated; timeouts and attempts are
// /etc/resolv.conf's (5 s, 2 by default). It uses Go's own stub resolver,
// so the answers are those servers' and not the C library's.
func NewResolver(servers ...string) *net.Resolver {
	var next atomic.Uint32
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			if len(servers) == 0 {
				return nil, &net.OpError{Op: "dial", Net: network, Err: errNoServers}
			}
			s := servers[int(next.Add(1)-1)%len(servers)]
			return d.DialContext(ctx, network, s)
		},
	}
}

type constError string

func (e constError) Error() string { return string(e) }

const errNoServers = constError("no DNS servers configured")

// dnsCtx binds a Resolver to one check: names are made absolute (so
// resolv.conf's search list never adds queries or answers), and errors are
// made what the SPF, DKIM and DMARC code expect: *net.DNSError, IsNotFound
// for "no such name or record", temporary for anything else.
type dnsCtx struct {
	r Resolver
}

func fqdn(name string) string {
	if name == "" || strings.HasSuffix(name, ".") {
		return name
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return name
	}
	return name + "."
}

func normErr(err error, name string) error {
	if err == nil {
		return nil
	}
	if de, ok := err.(*net.DNSError); ok {
		if de.IsNotFound || de.Temporary() {
			return de
		}
		c := *de
		c.IsTemporary = true
		return &c
	}
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}

func (d dnsCtx) LookupTXT(ctx context.Context, name string) ([]string, error) {
	v, err := d.r.LookupTXT(ctx, fqdn(name))
	return v, normErr(err, name)
}

func (d dnsCtx) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	v, err := d.r.LookupMX(ctx, fqdn(name))
	return v, normErr(err, name)
}

func (d dnsCtx) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	v, err := d.r.LookupIPAddr(ctx, fqdn(host))
	return v, normErr(err, host)
}

func (d dnsCtx) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	v, err := d.r.LookupAddr(ctx, addr)
	return v, normErr(err, addr)
}

// txtFunc is the context-less TXT lookup go-msgauth's dkim and dmarc
// packages take, bound to ctx.
func (d dnsCtx) txtFunc(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) { return d.LookupTXT(ctx, name) }
}
