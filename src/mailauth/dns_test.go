package mailauth

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// The tests ask a real DNS server: miekg/dns in this process on a loopback
// UDP port, as internal/clustertest.StartDNS serves the relay tests, with
// one thing more: names that answer SERVFAIL, for temperror.

func txtRR(name string, strs ...string) dns.RR {
	return &dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: strs}
}

func aRR(name, ip string) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip).To4()}
}

func mxRR(name string, pref uint16, host string) dns.RR {
	return &dns.MX{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 60}, Preference: pref, Mx: dns.Fqdn(host)}
}

// servfail is a marker record: its owner name answers SERVFAIL.
func servfail(name string) dns.RR {
	return &dns.ANY{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeANY, Class: dns.ClassINET}}
}

// startDNS serves rrs on 127.0.0.1 over UDP and returns the address.
// Unknown names are NXDOMAIN; a known name without the asked type answers
// NOERROR with no records (NODATA).
func startDNS(t testing.TB, rrs ...dns.RR) string {
	t.Helper()
	zone := map[string][]dns.RR{}
	fail := map[string]bool{}
	for _, r := range rrs {
		n := strings.ToLower(r.Header().Name)
		if r.Header().Rrtype == dns.TypeANY {
			fail[n] = true
			continue
		}
		zone[n] = append(zone[n], r)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		q := r.Question[0]
		n := strings.ToLower(q.Name)
		rs, known := zone[n]
		switch {
		case fail[n]:
			m.Rcode = dns.RcodeServerFailure
		case !known:
			m.Rcode = dns.RcodeNameError
		}
		for _, x := range rs {
			if x.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, x)
			}
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// deadAddr is a loopback UDP address where nothing listens.
func deadAddr(t testing.TB) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := pc.LocalAddr().String()
	pc.Close()
	return a
}
