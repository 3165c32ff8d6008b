// Package metrics is how every correo daemon exposes what it is doing:
// one registry per process, served as OpenMetrics (and the Prometheus
// text format for older scrapers) on the daemon's own metrics port of the
// host profile, to the cluster network only.
//
// It wraps github.com/prometheus/client_golang with the house rules, so a
// package that counts something cannot break them:
//
//   - every name starts with "correo_", counters end in "_total", and a
//     histogram names its unit ("_seconds", "_bytes");
//   - every label is declared with the whole list of values it may take.
//     A value outside the list is counted as "other", so a label can
//     never carry a user name, an address or anything else unbounded, and
//     a scrape's size does not grow with traffic;
//   - every declared series exists from the start at zero, so a scraper
//     (and rate()) sees the series before the first event, and the
//     dev-cluster test can check every name and type on an idle cluster.
//
// Counting is cheap (an atomic add on a child looked up once per label
// combination) and a nil *Counter, *Histogram or *Gauge does nothing, so
// packages take their metrics as optional fields and tests that do not
// care pass none.
package metrics

import (
	"fmt"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Other is the value a label takes when the value given is not one it
// declared.
const Other = "other"

// LatencyBuckets are the histogram buckets for request latencies, in
// seconds: from a lookup answered from memory (sub-millisecond) to a
// bcrypt verification queued behind others (seconds).
var LatencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// SizeBuckets are the histogram buckets for message sizes, in bytes:
// 1 KiB to 64 MiB by powers of four.
var SizeBuckets = prometheus.ExponentialBuckets(1024, 4, 9)

// Label is one label of a metric and every value it may take.
type Label struct {
	Name   string
	Values []string
}

// L declares a label.
func L(name string, values ...string) Label { return Label{Name: name, Values: values} }

// Registry holds one process's metrics.
type Registry struct {
	program string
	reg     *prometheus.Registry
}

// New makes the registry of one program, with the Go runtime's and the
// process's standard metrics and correo_build_info.
func New(program string) *Registry {
	r := &Registry{program: program, reg: prometheus.NewRegistry()}
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	version := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				version = s.Value[:12]
			}
		}
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "correo_build_info",
		Help: "Always 1: the program and the version it was built from."}, []string{"program", "version"})
	info.WithLabelValues(program, version).Set(1)
	r.reg.MustRegister(info)
	return r
}

// Program is the program the registry belongs to.
func (r *Registry) Program() string { return r.program }

// Gatherer is the registry as client_golang's handlers and tests take it.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

var nameRE = regexp.MustCompile(`^correo_[a-z][a-z0-9_]*[a-z0-9]$`)

var labelRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// check enforces the naming rules; a violation is a programming error,
// found by the first test that builds the metric.
func check(kind, name, help string, labels []Label) {
	if !nameRE.MatchString(name) {
		panic(fmt.Sprintf("metrics: %s %q: a name is correo_ and lower-case letters, digits and _", kind, name))
	}
	if help == "" {
		panic(fmt.Sprintf("metrics: %s %q has no help text", kind, name))
	}
	switch kind {
	case "counter":
		if !strings.HasSuffix(name, "_total") {
			panic(fmt.Sprintf("metrics: counter %q must end in _total", name))
		}
	case "histogram":
		if !strings.HasSuffix(name, "_seconds") && !strings.HasSuffix(name, "_bytes") {
			panic(fmt.Sprintf("metrics: histogram %q must name its unit (_seconds or _bytes)", name))
		}
	case "gauge":
		if strings.HasSuffix(name, "_total") {
			panic(fmt.Sprintf("metrics: gauge %q must not end in _total (that is for counters)", name))
		}
	}
	seen := map[string]bool{}
	for _, l := range labels {
		if !labelRE.MatchString(l.Name) || l.Name == "le" || l.Name == "quantile" || seen[l.Name] {
			panic(fmt.Sprintf("metrics: %s %q: bad or repeated label %q", kind, name, l.Name))
		}
		seen[l.Name] = true
		if len(l.Values) == 0 {
			panic(fmt.Sprintf("metrics: %s %q: label %q lists no values (labels are bounded: list them all)", kind, name, l.Name))
		}
	}
}

func names(labels []Label) []string {
	out := make([]string, len(labels))
	for i, l := range labels {
		out[i] = l.Name
	}
	return out
}

// bounded maps values onto the declared ones: a value not declared (or a
// missing one) becomes Other.
func bounded(labels []Label, values []string) []string {
	out := make([]string, len(labels))
	for i, l := range labels {
		v := Other
		if i < len(values) && slices.Contains(l.Values, values[i]) {
			v = values[i]
		}
		out[i] = v
	}
	return out
}

// combinations calls f with every combination of the labels' values.
func combinations(labels []Label, f func([]string)) {
	vals := make([]string, len(labels))
	var walk func(int)
	walk = func(i int) {
		if i == len(labels) {
			f(slices.Clone(vals))
			return
		}
		for _, v := range labels[i].Values {
			vals[i] = v
			walk(i + 1)
		}
	}
	walk(0)
}

// Counter is a counter with bounded labels.
type Counter struct {
	labels []Label
	vec    *prometheus.CounterVec
}

// Counter declares a counter; every combination of its labels' values
// starts at zero.
func (r *Registry) Counter(name, help string, labels ...Label) *Counter {
	check("counter", name, help, labels)
	c := &Counter{labels: labels, vec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, names(labels))}
	combinations(labels, func(v []string) { c.vec.WithLabelValues(v...) })
	r.reg.MustRegister(c.vec)
	return c
}

// Inc adds one for the given label values (in the declared order).
func (c *Counter) Inc(values ...string) {
	if c != nil {
		c.vec.WithLabelValues(bounded(c.labels, values)...).Inc()
	}
}

// Add adds n (which must not be negative).
func (c *Counter) Add(n float64, values ...string) {
	if c != nil && n > 0 {
		c.vec.WithLabelValues(bounded(c.labels, values)...).Add(n)
	}
}

// Histogram is a histogram with bounded labels.
type Histogram struct {
	labels []Label
	vec    *prometheus.HistogramVec
}

// Histogram declares a histogram with the given buckets.
func (r *Registry) Histogram(name, help string, buckets []float64, labels ...Label) *Histogram {
	check("histogram", name, help, labels)
	h := &Histogram{labels: labels, vec: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, names(labels))}
	combinations(labels, func(v []string) { h.vec.WithLabelValues(v...) })
	r.reg.MustRegister(h.vec)
	return h
}

// Observe records one value (seconds or bytes, as the name says).
func (h *Histogram) Observe(v float64, values ...string) {
	if h != nil {
		h.vec.WithLabelValues(bounded(h.labels, values)...).Observe(v)
	}
}

// Gauge is a gauge with bounded labels.
type Gauge struct {
	labels []Label
	vec    *prometheus.GaugeVec
}

// Gauge declares a gauge.
func (r *Registry) Gauge(name, help string, labels ...Label) *Gauge {
	check("gauge", name, help, labels)
	g := &Gauge{labels: labels, vec: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, names(labels))}
	combinations(labels, func(v []string) { g.vec.WithLabelValues(v...) })
	r.reg.MustRegister(g.vec)
	return g
}

// Set sets the gauge.
func (g *Gauge) Set(v float64, values ...string) {
	if g != nil {
		g.vec.WithLabelValues(bounded(g.labels, values)...).Set(v)
	}
}

// Add adds v (negative to subtract).
func (g *Gauge) Add(v float64, values ...string) {
	if g != nil {
		g.vec.WithLabelValues(bounded(g.labels, values)...).Add(v)
	}
}

// GaugeFunc declares a gauge read at every scrape, for a figure its
// owner already keeps (a queue's depth): nothing to keep in step.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	check("gauge", name, help, nil)
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// CounterFunc declares a counter read at every scrape, for a count its
// owner already keeps (nssd's cache hits): f must never go down.
func (r *Registry) CounterFunc(name, help string, f func() float64) {
	check("counter", name, help, nil)
	r.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// LoginResults are the values of a login counter's result label, shared
// by pop3d, imapd and mailproxy so one dashboard reads all three.
var LoginResults = []string{"ok", "failed", "locked_out", "tempfail", "in_use", "moving", "wrong_host", "error"}

// LoginResult turns the result a POP3 or IMAP session logs for its login
// into a LoginResults value.
func LoginResult(logged string) string {
	switch logged {
	case "logged in":
		return "ok"
	case "authentication failed", "bad user name", "disabled":
		return "failed"
	case "locked out":
		return "locked_out"
	case "password service unavailable":
		return "tempfail"
	case "in use":
		return "in_use"
	case "mailbox being moved":
		return "moving"
	case "stored on another host":
		return "wrong_host"
	}
	return "error"
}

// Logins counts a mail server's logins (pop3d, imapd) by result
// (LoginResults) and by how the password was trusted. Its methods do
// nothing on a nil *Logins: a server built without metrics counts
// nothing.
type Logins struct {
	c *Counter
}

// NewLogins declares correo_<protocol>_logins_total for daemon in r.
func NewLogins(r *Registry, protocol, daemon string) *Logins {
	return &Logins{c: r.Counter("correo_"+protocol+"_logins_total",
		"Logins to "+daemon+", by result (ok, failed, locked_out, tempfail: passwdd unavailable, in_use, moving: the mailbox is being moved, wrong_host: stored elsewhere, error) and by how the password was trusted (ticket: the proxy's login ticket; password: checked with passwdd).",
		L("result", LoginResults...), L("auth", "ticket", "password"))}
}

// Login counts one login; logged is the result the session logged
// (LoginResult), ticket whether the proxy's ticket spared the check.
func (l *Logins) Login(logged string, ticket bool) {
	if l == nil {
		return
	}
	auth := "password"
	if ticket {
		auth = "ticket"
	}
	l.c.Inc(LoginResult(logged), auth)
}
