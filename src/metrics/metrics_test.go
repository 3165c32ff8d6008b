package metrics

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func TestNamingRules(t *testing.T) {
	cases := []struct {
		name    string
		declare func(r *Registry)
		panics  string
	}{
		{"counter ok", func(r *Registry) { r.Counter("correo_x_total", "h", L("result", "ok")) }, ""},
		{"counter without _total", func(r *Registry) { r.Counter("correo_xy", "h") }, "must end in _total"},
		{"no namespace", func(r *Registry) { r.Counter("x_total", "h") }, "correo_"},
		{"upper case", func(r *Registry) { r.Counter("correo_X_total", "h") }, "correo_"},
		{"no help", func(r *Registry) { r.Counter("correo_x_total", "") }, "no help"},
		{"histogram without unit", func(r *Registry) { r.Histogram("correo_x_latency", "h", LatencyBuckets) }, "unit"},
		{"histogram seconds", func(r *Registry) { r.Histogram("correo_x_seconds", "h", LatencyBuckets) }, ""},
		{"histogram bytes", func(r *Registry) { r.Histogram("correo_x_bytes", "h", SizeBuckets) }, ""},
		{"gauge _total", func(r *Registry) { r.Gauge("correo_x_total", "h") }, "counters"},
		{"gauge func", func(r *Registry) { r.GaugeFunc("correo_queue_messages", "h", func() float64 { return 1 }) }, ""},
		{"unbounded label", func(r *Registry) { r.Counter("correo_x_total", "h", L("user")) }, "no values"},
		{"label le", func(r *Registry) { r.Histogram("correo_x_seconds", "h", nil, L("le", "a")) }, "label"},
		{"label twice", func(r *Registry) { r.Counter("correo_x_total", "h", L("a", "x"), L("a", "y")) }, "label"},
		{"registered twice", func(r *Registry) { r.Counter("correo_x_total", "h"); r.Counter("correo_x_total", "h") }, "duplicate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				p := recover()
				switch {
				case c.panics == "" && p != nil:
					t.Fatalf("panicked: %v", p)
				case c.panics != "" && p == nil:
					t.Fatalf("accepted; want a panic mentioning %q", c.panics)
				case c.panics != "" && !strings.Contains(fmt.Sprint(p), c.panics):
					t.Fatalf("panic %q does not mention %q", p, c.panics)
				}
			}()
			c.declare(New("test"))
		})
	}
}

func gather(t *testing.T, r *Registry) Families {
	t.Helper()
	mfs, err := r.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := Families{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func TestBoundedLabels(t *testing.T) {
	r := New("test")
	c := r.Counter("correo_logins_total", "Logins.", L("protocol", "pop3", "imap"), L("result", "ok", "failed"))
	f := gather(t, r)
	// Every declared combination exists at zero before the first event.
	if n := len(f["correo_logins_total"].GetMetric()); n != 4 {
		t.Fatalf("%d series at start, want 4", n)
	}
	c.Inc("pop3", "ok")
	c.Inc("pop3", "ok")
	c.Add(3, "imap", "failed")
	c.Inc("pop3", "juan@correo.test") // an address must never become a label value
	c.Inc("smtp")                     // nor an undeclared protocol; the missing value too is "other"
	c.Add(-1, "pop3", "ok")           // counters never go down
	f = gather(t, r)
	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"protocol", "pop3", "result", "ok"}, 2},
		{[]string{"protocol", "imap", "result", "failed"}, 3},
		{[]string{"protocol", "pop3", "result", "other"}, 1},
		{[]string{"protocol", "other", "result", "other"}, 1},
	} {
		if v, ok := f.Value("correo_logins_total", tc.labels...); !ok || v != tc.want {
			t.Errorf("%v = %v (found %v), want %v", tc.labels, v, ok, tc.want)
		}
	}
	if n := len(f["correo_logins_total"].GetMetric()); n != 6 {
		t.Errorf("%d series, want 6 (4 declared, 2 other)", n)
	}
	for _, m := range f["correo_logins_total"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if strings.Contains(lp.GetValue(), "@") {
				t.Errorf("an address leaked into a label: %v", m)
			}
		}
	}
}

func TestNilMetricsDoNothing(t *testing.T) {
	var c *Counter
	var h *Histogram
	var g *Gauge
	c.Inc("x")
	c.Add(2)
	h.Observe(1)
	g.Set(1)
	g.Add(1)
}

func TestHistogramAndFuncs(t *testing.T) {
	r := New("test")
	h := r.Histogram("correo_lookup_duration_seconds", "Lookups.", LatencyBuckets, L("result", "found", "not_found"))
	depth := 7.0
	r.GaugeFunc("correo_queue_messages", "Depth.", func() float64 { return depth })
	r.CounterFunc("correo_cache_hits_total", "Hits.", func() float64 { return 42 })
	h.Observe(0.003, "found")
	h.Observe(0.2, "found")
	f := gather(t, r)
	mf := f["correo_lookup_duration_seconds"]
	if mf.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("type %v", mf.GetType())
	}
	if v, _ := f.Value("correo_lookup_duration_seconds", "result", "found"); v != 2 {
		t.Errorf("count %v, want 2", v)
	}
	if v, _ := f.Value("correo_queue_messages"); v != 7 {
		t.Errorf("queue %v", v)
	}
	if f["correo_cache_hits_total"].GetType() != dto.MetricType_COUNTER {
		t.Errorf("counter func type %v", f["correo_cache_hits_total"].GetType())
	}
	if v, _ := f.Value("correo_build_info", "program", "test"); v != 1 {
		t.Errorf("build info %v", v)
	}
	if _, ok := f["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

// serve starts a Server on loopback.
func serve(t *testing.T, r *Registry, allow ...netip.Prefix) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(r, allow, nil)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; err != net.ErrClosed {
			t.Errorf("Serve returned %v, want net.ErrClosed", err)
		}
	})
	return ln.Addr().String()
}

func TestServeOpenMetrics(t *testing.T) {
	r := New("test")
	c := r.Counter("correo_messages_total", "Messages.", L("result", "accepted", "rejected"))
	addr := serve(t, r)
	c.Inc("accepted")
	f, err := Scrape(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Value("correo_messages_total", "result", "accepted"); v != 1 {
		t.Errorf("scraped %v, want 1", v)
	}
	// A Prometheus server asks for OpenMetrics first.
	req, _ := http.NewRequest("GET", "http://"+addr+Path, nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("Content-Type %q", ct)
	}
	text := string(body)
	if !strings.HasSuffix(text, "# EOF\n") || !strings.Contains(text, "# TYPE correo_messages counter") ||
		!strings.Contains(text, `correo_messages_total{result="accepted"} 1`) {
		t.Errorf("not the OpenMetrics exposition:\n%.2000s", text)
	}
}

func TestServeBadRequests(t *testing.T) {
	r := New("test")
	addr := serve(t, r)
	status := func(method, path string) int {
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/", 404},
		{"GET", "/metrics/../../etc/passwd", 404},
		{"GET", "/debug/pprof/", 404},
		{"POST", "/metrics", 405},
		{"DELETE", "/metrics", 405},
		{"HEAD", "/metrics", 200},
		{"GET", "/metrics?x=" + strings.Repeat("a", 2000), 200},
	} {
		if got := status(tc.method, tc.path); got != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, got, tc.want)
		}
	}
	raw := func(req string) string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, req)
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	for _, req := range []string{
		"garbage\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
		"GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 64<<10) + "\r\n\r\n",
		"GET /metrics HTTP/9.9\r\n\r\n",
	} {
		if line := raw(req); !strings.HasPrefix(line, "HTTP/1.1 4") && !strings.HasPrefix(line, "HTTP/1.1 5") && line != "" {
			t.Errorf("%.20q: answered %q, want a refusal or a closed connection", req, line)
		}
	}
	// After all that, scraping still works.
	if _, err := Scrape(context.Background(), addr); err != nil {
		t.Fatalf("scrape after garbage: %v", err)
	}
}

func TestServeRefusesOutsiders(t *testing.T) {
	s := &Server{allow: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")}}
	for addr, want := range map[string]bool{
		"127.0.0.1:5000":          true,
		"[::1]:5000":              true,
		"10.77.0.9:5000":          true,
		"[::ffff:10.77.0.9]:5000": true,
		"10.78.0.9:5000":          false,
		"192.0.2.1:5000":          false,
		"not an address":          false,
	} {
		if got := s.allowed(addr); got != want {
			t.Errorf("allowed(%q) = %v, want %v", addr, got, want)
		}
	}
}
