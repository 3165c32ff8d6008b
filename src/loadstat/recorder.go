package loadstat

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Recorder collects the results of many goroutines' operations, per
// kind (one kind per protocol in a mix). Latency is recorded for
// successful operations only: a refusal or a timeout is counted under its
// error instead, so that a fast 550 does not make the figures look better
// and a 30 s timeout does not hide in p99.
type Recorder struct {
	mu    sync.Mutex
	kinds map[string]*kindStats
	// Live counters for a progress line, read without the lock.
	ok, failed atomic.Uint64
	all        Histogram // every kind, for the progress line and the total
}

type kindStats struct {
	hist   Histogram
	ok     uint64
	errors map[string]uint64
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{kinds: map[string]*kindStats{}} }

// Add records one operation of kind: errKind is "" for success, else the
// error's class ("5xx:550", "timeout", "connection", ...).
func (r *Recorder) Add(kind string, latency time.Duration, errKind string) {
	r.mu.Lock()
	k := r.kinds[kind]
	if k == nil {
		k = &kindStats{errors: map[string]uint64{}}
		r.kinds[kind] = k
	}
	if errKind == "" {
		k.ok++
		k.hist.Record(latency)
		r.all.Record(latency)
	} else {
		k.errors[errKind]++
	}
	r.mu.Unlock()
	if errKind == "" {
		r.ok.Add(1)
	} else {
		r.failed.Add(1)
	}
}

// Counts returns the successes and failures so far (cheap: no lock).
func (r *Recorder) Counts() (ok, failed uint64) { return r.ok.Load(), r.failed.Load() }

// Quantile is the latency quantile over every kind so far.
func (r *Recorder) Quantile(q float64) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.all.Quantile(q)
}

// Latency is a histogram's figures in milliseconds, for people and JSON.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// LatencyOf summarises h.
func LatencyOf(h *Histogram) Latency {
	return Latency{P50: ms(h.Quantile(.5)), P90: ms(h.Quantile(.9)), P99: ms(h.Quantile(.99)),
		Max: ms(h.Max()), Mean: ms(h.Mean())}
}

// KindSummary is one kind's figures.
type KindSummary struct {
	Ops     uint64            `json:"ops"`
	OK      uint64            `json:"ok"`
	Failed  uint64            `json:"failed"`
	Rate    float64           `json:"rate_per_s"` // successful operations per second
	Latency Latency           `json:"latency_ms"` // successful operations only
	Errors  map[string]uint64 `json:"errors"`
}

// Summarise returns the total and each kind's figures over elapsed.
func (r *Recorder) Summarise(elapsed time.Duration) (total KindSummary, kinds map[string]KindSummary) {
	r.mu.Lock()
	defer r.mu.Unlock()
	kinds = map[string]KindSummary{}
	var all Histogram
	total.Errors = map[string]uint64{}
	for name, k := range r.kinds {
		ks := KindSummary{OK: k.ok, Latency: LatencyOf(&k.hist), Errors: map[string]uint64{}}
		for e, n := range k.errors {
			ks.Errors[e] = n
			ks.Failed += n
			total.Errors[e] += n
		}
		ks.Ops = ks.OK + ks.Failed
		ks.Rate = rate(ks.OK, elapsed)
		kinds[name] = ks
		all.Merge(&k.hist)
		total.OK += ks.OK
		total.Failed += ks.Failed
	}
	total.Ops = total.OK + total.Failed
	total.Rate = rate(total.OK, elapsed)
	total.Latency = LatencyOf(&all)
	return total, kinds
}

func rate(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// SortedKeys returns m's keys in order (stable output for people).
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
