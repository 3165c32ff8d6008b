package remote

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"correo/internal/clustertest"
	"correo/src/delivery"
	"correo/src/tlsconf"
)

// zone is the test DNS server's data: name → records.
type zone map[string][]dns.RR

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// startDNS serves z on a loopback UDP port and returns its address.
func startDNS(t *testing.T, z zone) string {
	t.Helper()
	return clustertest.StartDNS(t, z)
}

// mx is a test MX; received renders what it accepted as
// "from>rcpt1,rcpt2:body", tlsMails counts what came over STARTTLS.
type mx struct{ clustertest.MX }

func (m *mx) received() []string {
	var out []string
	for _, ml := range m.Mails() {
		out = append(out, ml.From+">"+strings.Join(ml.To, ",")+":"+ml.Body)
	}
	return out
}

func (m *mx) tlsMails() int {
	n := 0
	for _, ml := range m.Mails() {
		if ml.TLS {
			n++
		}
	}
	return n
}

// startMX serves m on ip:port, offering STARTTLS when cfg is set.
func startMX(t *testing.T, m *mx, ip string, port int, cfg ...*tls.Config) {
	t.Helper()
	if len(cfg) > 0 {
		m.TLS = cfg[0]
	}
	m.Listen(t, net.JoinHostPort(ip, strconv.Itoa(port)))
}

// freePort finds a port free on every address the test uses.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ok := true
		for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
			l2, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			l2.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// serverTLS is a self-signed certificate for the test MX.
func serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "mx.crt"), filepath.Join(dir, "mx.key")
	if err := tlsconf.SelfSigned(crt, key, []string{"mx.good.test"}, nil); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}
}

type msg struct{ *strings.Reader }

func (m msg) Size() int64 { return m.Reader.Size() }

func newMsg(s string) delivery.Message { return msg{strings.NewReader(s)} }

func newDeliverer(t *testing.T, dnsAddr string, port int) *Deliverer {
	t.Helper()
	d, err := New(Config{Resolvers: []string{dnsAddr}, Port: port, HelloName: "relay1.test",
		DialTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, DNSTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

const body = "Subject: hi\r\n\r\nhello\r\n"

func TestDelivery(t *testing.T) {
	port := freePort(t)
	good := &mx{clustertest.MX{Rcpt: func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}}}
	startMX(t, good, "127.0.0.2", port, serverTLS(t))
	flaky := &mx{clustertest.MX{Data: func(n int) error {
		if n == 1 {
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}}}
	startMX(t, flaky, "127.0.0.3", port)
	z := zone{
		"good.test.":       {rr(t, "good.test. 60 IN MX 10 mx.good.test.")},
		"mx.good.test.":    {rr(t, "mx.good.test. 60 IN A 127.0.0.2")},
		"flaky.test.":      {rr(t, "flaky.test. 60 IN MX 10 mx.flaky.test.")},
		"mx.flaky.test.":   {rr(t, "mx.flaky.test. 60 IN A 127.0.0.3")},
		"null.test.":       {rr(t, "null.test. 60 IN MX 0 .")},
		"noMX.test.":       {rr(t, "nomx.test. 60 IN A 127.0.0.2")},
		"down.test.":       {rr(t, "down.test. 60 IN MX 10 mx.down.test.")},
		"mx.down.test.":    {rr(t, "mx.down.test. 60 IN A 127.0.0.4")},
		"backup.test.":     {rr(t, "backup.test. 60 IN MX 5 mx.down.test."), rr(t, "backup.test. 60 IN MX 20 mx.good.test.")},
		"refuses.test.":    {rr(t, "refuses.test. 60 IN MX 10 mx.good.test.")},
		"mx.nowhere.test.": nil,
	}
	// The zone's keys are looked up lower-cased.
	lz := zone{}
	for k, v := range z {
		lz[strings.ToLower(k)] = v
	}
	d := newDeliverer(t, startDNS(t, lz), port)
	ctx := context.Background()

	t.Run("accepted, and one connection reused", func(t *testing.T) {
		for i := range 3 {
			res := d.Deliver(ctx, delivery.Envelope{From: "ana@example.com", To: []string{"x@good.test", "y@GOOD.test"}}, newMsg(body))
			for _, r := range res {
				if r.Status != delivery.Delivered || r.Code != 250 || r.Host != "mx.good.test" {
					t.Fatalf("message %d: %v", i, r)
				}
			}
		}
		got := good.received()
		if len(got) != 3 || !strings.HasPrefix(got[0], "ana@example.com>x@good.test,y@GOOD.test:Subject: hi") {
			t.Fatalf("received %q", got)
		}
		n, nTLS := good.Sessions(), good.tlsMails()
		if n != 1 {
			t.Errorf("%d SMTP sessions for 3 messages, want 1 (reuse)", n)
		}
		if nTLS != 3 {
			t.Errorf("%d of 3 messages went over STARTTLS", nTLS)
		}
	})
	t.Run("550 per recipient", func(t *testing.T) {
		res := d.Deliver(ctx, delivery.Envelope{From: "ana@example.com", To: []string{"nobody@good.test", "z@good.test"}}, newMsg(body))
		if res[0].Status != delivery.Permanent || res[0].Code != 550 || res[0].Enhanced != "5.1.1" || res[0].Text != "no such user" {
			t.Errorf("nobody: %v", res[0])
		}
		if res[1].Status != delivery.Delivered {
			t.Errorf("z: %v", res[1])
		}
	})
	t.Run("421 then 250", func(t *testing.T) {
		res := d.Deliver(ctx, delivery.Envelope{From: "", To: []string{"a@flaky.test"}}, newMsg(body))
		if res[0].Status != delivery.Temporary || res[0].Code != 421 {
			t.Fatalf("first attempt: %v", res[0])
		}
		res = d.Deliver(ctx, delivery.Envelope{From: "", To: []string{"a@flaky.test"}}, newMsg(body))
		if res[0].Status != delivery.Delivered {
			t.Fatalf("second attempt: %v", res[0])
		}
		if got := flaky.received(); len(got) != 1 {
			t.Fatalf("flaky MX stored %d messages, want 1", len(got))
		}
	})
	t.Run("null MX", func(t *testing.T) {
		res := d.Deliver(ctx, delivery.Envelope{From: "ana@example.com", To: []string{"a@null.test"}}, newMsg(body))
		if res[0].Status != delivery.Permanent || res[0].Code != 556 || res[0].Enhanced != "5.1.10" {
			t.Fatalf("%v", res[0])
		}
	})
	t.Run("no MX: A fallback", func(t *testing.T) {
		before := len(good.received())
		res := d.Deliver(ctx, delivery.Envelope{From: "ana@example.com", To: []string{"a@nomx.test"}}, newMsg(body))
		if res[0].Status != delivery.Delivered || res[0].Host != "nomx.test" {
			t.Fatalf("%v", res[0])
		}
		if len(good.received()) != before+1 {
			t.Fatal("not received")
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		res := d.Deliver(ctx, delivery.Envelope{From: "ana@example.com", To: []string{"a@down.test"}}, newMsg(body))
		if res[0].Status != delivery.Temporary || !strings.Contains(res[0].Text, "refused") {
			t.Fatalf("%v", res[0])
		}
	})
	t.Run("unreachable primary, backup MX", func(t *testing.T) {
		res := d.Deliver(ctx, delivery.Envelope{From: "ana@example.com", To: []string{"a@backup.test"}}, newMsg(body))
		if res[0].Status != delivery.Delivered || res[0].Host != "mx.good.test" {
			t.Fatalf("%v", res[0])
		}
	})
	t.Run("no such domain", func(t *testing.T) {
		res := d.Deliver(ctx, delivery.Envelope{From: "ana@example.com", To: []string{"a@nxdomain.test", "b@good.test"}}, newMsg(body))
		if res[0].Status != delivery.Permanent || res[0].Enhanced != "5.1.2" {
			t.Fatalf("%v", res[0])
		}
		if res[1].Status != delivery.Delivered {
			t.Fatalf("%v", res[1])
		}
	})
	t.Run("DNS down", func(t *testing.T) {
		pc, _ := net.ListenPacket("udp", "127.0.0.1:0") // never answers
		defer pc.Close()
		d2, err := New(Config{Resolvers: []string{pc.LocalAddr().String()}, Port: port, HelloName: "relay1.test", DNSTimeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer d2.Close()
		res := d2.Deliver(ctx, delivery.Envelope{From: "ana@example.com", To: []string{"a@good.test"}}, newMsg(body))
		if res[0].Status != delivery.Temporary {
			t.Fatalf("%v", res[0])
		}
	})
}

func TestMXOrder(t *testing.T) {
	z := zone{
		"multi.test.": {rr(t, "multi.test. 60 IN MX 20 c.test."), rr(t, "multi.test. 60 IN MX 10 a.test."),
			rr(t, "multi.test. 60 IN MX 10 b.test.")},
		"a.test.": {rr(t, "a.test. 60 IN A 192.0.2.1")},
		"b.test.": {rr(t, "b.test. 60 IN A 192.0.2.2"), rr(t, "b.test. 60 IN AAAA 2001:db8::2")},
		"c.test.": {rr(t, "c.test. 60 IN A 192.0.2.3")},
	}
	r := resolver{servers: []string{startDNS(t, z)}, timeout: 2 * time.Second}
	first := map[string]int{}
	for range 40 {
		hosts, err := r.lookup(context.Background(), "multi.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(hosts) != 3 || hosts[2].Name != "c.test" {
			t.Fatalf("%v", hosts)
		}
		first[hosts[0].Name]++
		for _, h := range hosts {
			if h.Name == "b.test" && len(h.Addrs) != 2 {
				t.Fatalf("b.test addresses %v", h.Addrs)
			}
		}
	}
	if first["a.test"] == 0 || first["b.test"] == 0 {
		t.Errorf("equal preferences not shuffled: %v", first)
	}
}

// TestTLSFallbackAndConcurrency: a server whose STARTTLS handshake fails
// still gets the mail in plaintext; at most MaxPerDestination
// transactions run at once to one domain.
func TestTLSFallbackAndConcurrency(t *testing.T) {
	port := freePort(t)
	var mu sync.Mutex
	cur, peak := 0, 0
	slow := &mx{}
	slow.Rcpt = func(string) error {
		mu.Lock()
		cur++
		if cur > peak {
			peak = cur
		}
		mu.Unlock()
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		cur--
		mu.Unlock()
		return nil
	}
	// STARTTLS offered, but no certificate: every handshake fails.
	startMX(t, slow, "127.0.0.2", port, &tls.Config{})
	dnsAddr := startDNS(t, zone{
		"slow.test.":    {rr(t, "slow.test. 60 IN MX 10 mx.slow.test.")},
		"mx.slow.test.": {rr(t, "mx.slow.test. 60 IN A 127.0.0.2")},
	})
	d, err := New(Config{Resolvers: []string{dnsAddr}, Port: port, HelloName: "relay1.test", MaxPerDestination: 2,
		DialTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := d.Deliver(context.Background(), delivery.Envelope{From: "a@b.test", To: []string{"x@slow.test"}}, newMsg(body))
			if res[0].Status != delivery.Delivered {
				t.Errorf("message %d: %v", i, res[0])
			}
		}()
	}
	wg.Wait()
	if n := len(slow.received()); n != 6 {
		t.Errorf("received %d, want 6", n)
	}
	if n := slow.tlsMails(); n != 0 {
		t.Errorf("%d messages over TLS with a broken TLS server", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if peak > 2 {
		t.Errorf("%d transactions at once to one domain, limit 2", peak)
	}
}
