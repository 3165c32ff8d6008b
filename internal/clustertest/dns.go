package clustertest

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Zone parses records in master-file syntax ("example.net. 60 IN MX 10
// mx.example.net.") into StartDNS's name → records map.
func Zone(t testing.TB, records ...string) map[string][]dns.RR {
	t.Helper()
	z := map[string][]dns.RR{}
	for _, s := range records {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		n := strings.ToLower(r.Header().Name)
		z[n] = append(z[n], r)
	}
	return z
}

// StartDNS serves z (lower-case FQDN → records) on a loopback UDP port
// and returns its address: a resolver for tests of MX lookup. Names not in
// the zone get NXDOMAIN; a name in it without the asked type (or with no
// records at all) gets an empty answer.
func StartDNS(t testing.TB, z map[string][]dns.RR) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		rrs, known := z[strings.ToLower(q.Name)]
		if !known {
			m.Rcode = dns.RcodeNameError
		}
		for _, x := range rrs {
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
