package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"correo/src/cluster"
	"correo/src/metrics"
)

// ServerFigure is one daemon counter's change over the measured run, as
// the daemon itself counted it (its metrics endpoint, scraped before and
// after): what the servers saw next to what mailbench saw.
type ServerFigure struct {
	Endpoint string  `json:"endpoint"`
	Series   string  `json:"series"` // name{label="value",...}
	Delta    float64 `json:"delta"`
	PerS     float64 `json:"per_s"`
	// MeanS is a histogram's mean observation over the run, in its unit
	// (seconds for the *_seconds histograms); 0 for counters.
	Mean float64 `json:"mean,omitempty"`
}

// metricsTargets resolves --metrics: "profile" stands for every metrics
// endpoint of the profile's hosts. Each address passes the same check as
// the load's targets.
func metricsTargets(ctx context.Context, o *options, p *cluster.Profile) ([]string, error) {
	var raw []string
	for _, m := range o.metrics {
		if m != "profile" {
			raw = append(raw, m)
			continue
		}
		for _, s := range cluster.MetricsServices() {
			for _, ep := range p.Endpoints(s) {
				raw = append(raw, ep.Addr.String())
			}
		}
	}
	if len(raw) == 0 {
		return nil, nil
	}
	return checkTargets(ctx, raw, p.NetworkPrefix(), o.allowRemote, systemResolver)
}

// scrapeAll scrapes each endpoint; one that fails is left out with a
// warning, so a daemon that is not running costs its figures only.
func scrapeAll(ctx context.Context, addrs []string, stderr io.Writer) map[string]metrics.Families {
	out := map[string]metrics.Families{}
	for _, a := range addrs {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		f, err := metrics.Scrape(ctx, a)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "mailbench: metrics of %s left out: %v\n", a, err)
			continue
		}
		out[a] = f
	}
	return out
}

// serverDeltas lists every correo counter and histogram series that moved
// between the two scrapes of each endpoint, sorted.
func serverDeltas(before, after map[string]metrics.Families, elapsed time.Duration) []ServerFigure {
	var out []ServerFigure
	for ep, fa := range after {
		fb := before[ep]
		if fb == nil {
			continue
		}
		for name, mf := range fa {
			if !strings.HasPrefix(name, "correo_") {
				continue
			}
			old := map[string]*dto.Metric{}
			if b := fb[name]; b != nil {
				for _, m := range b.GetMetric() {
					old[seriesName(name, m)] = m
				}
			}
			for _, m := range mf.GetMetric() {
				series := seriesName(name, m)
				o := old[series]
				var d, mean float64
				switch {
				case m.Counter != nil:
					d = m.Counter.GetValue()
					if o != nil && o.Counter != nil {
						d -= o.Counter.GetValue()
					}
				case m.Histogram != nil:
					n, sum := float64(m.Histogram.GetSampleCount()), m.Histogram.GetSampleSum()
					if o != nil && o.Histogram != nil {
						n -= float64(o.Histogram.GetSampleCount())
						sum -= o.Histogram.GetSampleSum()
					}
					d = n
					if n > 0 {
						mean = sum / n
					}
				default:
					continue // gauges are states, not work done
				}
				if d <= 0 {
					continue
				}
				out = append(out, ServerFigure{Endpoint: ep, Series: series, Delta: d, PerS: d / elapsed.Seconds(), Mean: mean})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Endpoint != out[j].Endpoint {
			return out[i].Endpoint < out[j].Endpoint
		}
		return out[i].Series < out[j].Series
	})
	return out
}

func seriesName(name string, m *dto.Metric) string {
	var ls []string
	for _, l := range m.GetLabel() {
		ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(ls)
	if len(ls) == 0 {
		return name
	}
	return name + "{" + strings.Join(ls, ",") + "}"
}

func printServer(w io.Writer, figs []ServerFigure) {
	if len(figs) == 0 {
		return
	}
	fmt.Fprintf(w, "  server side (the daemons' own counters over the measured run):\n")
	fmt.Fprintf(w, "    %-22s %-70s %10s %10s %10s\n", "endpoint", "series", "delta", "rate/s", "mean")
	for _, f := range figs {
		mean := ""
		if f.Mean != 0 {
			mean = fmtMS(f.Mean * 1000)
		}
		fmt.Fprintf(w, "    %-22s %-70s %10.0f %10.1f %10s\n", f.Endpoint, f.Series, f.Delta, f.PerS, mean)
	}
}
