package loadstat

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueInOrder(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<40 + 12345, 1<<62 + 1, 1<<63 - 1} {
		i := bucketOf(v)
		if i < prev || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d (previous %d, %d buckets)", v, i, prev, numBuckets)
		}
		if h := highest(i); h < v {
			t.Fatalf("highest(bucketOf(%d)) = %d, below the value", v, h)
		}
		if i > 0 && highest(i-1) >= v {
			t.Fatalf("value %d also fits bucket %d", v, i-1)
		}
		prev = i
	}
}

func TestQuantilesAgainstASortedSample(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		gen  func() time.Duration
	}{
		{"uniform µs", func() time.Duration { return time.Duration(r.IntN(5000)) * time.Microsecond }},
		{"exponential ms", func() time.Duration { return time.Duration(r.ExpFloat64() * float64(3*time.Millisecond)) }},
		{"tiny", func() time.Duration { return time.Duration(r.IntN(200)) }},
		{"one outlier", func() time.Duration {
			if r.IntN(1000) == 0 {
				return 10 * time.Second
			}
			return time.Millisecond
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			var sample []time.Duration
			for i := 0; i < 20000; i++ {
				d := tc.gen()
				h.Record(d)
				sample = append(sample, d)
			}
			slices.Sort(sample)
			for _, q := range []float64{0, .5, .9, .99, .999, 1} {
				idx := max(int(float64(len(sample))*q+0.999999)-1, 0)
				want := sample[idx]
				got := h.Quantile(q)
				if got < want || float64(got-want) > float64(want)/100+1 {
					t.Errorf("q%g = %v, sorted sample says %v (allowed: up to 1%% above)", q, got, want)
				}
			}
			if h.Max() != sample[len(sample)-1] || h.Min() != sample[0] || h.Count() != uint64(len(sample)) {
				t.Errorf("max %v min %v count %d; want %v %v %d", h.Max(), h.Min(), h.Count(), sample[len(sample)-1], sample[0], len(sample))
			}
		})
	}
}

func TestMergeEqualsRecordingTogether(t *testing.T) {
	var a, b, both Histogram
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i*i) * time.Microsecond
		both.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(&Histogram{})
	for _, q := range []float64{.1, .5, .9, .99, 1} {
		if m.Quantile(q) != both.Quantile(q) {
			t.Errorf("q%g: merged %v, together %v", q, m.Quantile(q), both.Quantile(q))
		}
	}
	if m.Count() != both.Count() || m.Mean() != both.Mean() || m.Min() != both.Min() {
		t.Errorf("merged %d/%v/%v, together %d/%v/%v", m.Count(), m.Mean(), m.Min(), both.Count(), both.Mean(), both.Min())
	}
}

func TestEmptyHistogram(t *testing.T) {
	var h Histogram
	if h.Quantile(.99) != 0 || h.Max() != 0 || h.Mean() != 0 || h.Count() != 0 {
		t.Fatal("an empty histogram reports figures")
	}
	h.Record(-5)
	if h.Max() != 0 || h.Count() != 1 {
		t.Fatal("a negative duration is not recorded as zero")
	}
}

func TestRecorderCountsErrorsByKind(t *testing.T) {
	r := NewRecorder()
	r.Add("smtp", time.Millisecond, "")
	r.Add("smtp", 3*time.Millisecond, "")
	r.Add("smtp", time.Hour, "5xx:550")
	r.Add("pop3", 2*time.Millisecond, "")
	r.Add("pop3", 0, "timeout")
	r.Add("pop3", 0, "timeout")
	total, kinds := r.Summarise(2 * time.Second)
	if total.Ops != 6 || total.OK != 3 || total.Failed != 3 || total.Rate != 1.5 {
		t.Errorf("total %+v", total)
	}
	if total.Errors["timeout"] != 2 || total.Errors["5xx:550"] != 1 {
		t.Errorf("errors %v", total.Errors)
	}
	if kinds["smtp"].OK != 2 || kinds["smtp"].Errors["5xx:550"] != 1 || kinds["pop3"].Failed != 2 {
		t.Errorf("kinds %+v", kinds)
	}
	// A failure's latency is not in the figures: the hour-long 550 is not the max.
	if total.Latency.Max != 3 {
		t.Errorf("max latency %v ms, want 3 (failures are not timed)", total.Latency.Max)
	}
	if ok, failed := r.Counts(); ok != 3 || failed != 3 {
		t.Errorf("live counts %d %d", ok, failed)
	}
}

func TestPlanValidate(t *testing.T) {
	for _, tc := range []struct {
		p  Plan
		ok bool
	}{
		{Plan{N: 10, Concurrency: 1}, true},
		{Plan{Duration: time.Second, Rate: 100, Concurrency: 4}, true},
		{Plan{Concurrency: 1}, false},
		{Plan{N: -1, Concurrency: 1}, false},
		{Plan{N: 1, Concurrency: 0}, false},
		{Plan{N: 1, Rate: -1, Concurrency: 1}, false},
		{Plan{N: 1, Warmup: -time.Second, Concurrency: 1}, false},
	} {
		if err := tc.p.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.p, err)
		}
	}
}

func TestIntendedTimes(t *testing.T) {
	s := time.Unix(1000, 0)
	for _, tc := range []struct {
		rate float64
		i    int64
		want time.Duration
	}{
		{100, 0, 0}, {100, 1, 10 * time.Millisecond}, {100, 250, 2500 * time.Millisecond},
		{3, 1, 333333333}, {0.5, 3, 6 * time.Second},
	} {
		if got := Intended(s, tc.rate, tc.i).Sub(s); got != tc.want {
			t.Errorf("rate %g, op %d: due at +%v, want +%v", tc.rate, tc.i, got, tc.want)
		}
	}
}

func worker(op Op) func(int) Worker { return func(int) Worker { return Worker{Op: op} } }

func classify(err error) string { return err.Error() }

func TestClosedLoopRunsExactlyN(t *testing.T) {
	var calls atomic.Int64
	res := Run(context.Background(), Plan{N: 500, Concurrency: 8}, worker(func(context.Context) (string, error) {
		if calls.Add(1)%10 == 0 {
			return "x", errors.New("boom")
		}
		return "x", nil
	}), classify, NewRecorder())
	total, _ := res.Recorder.Summarise(res.Elapsed)
	if total.Ops != 500 || calls.Load() != 500 || total.Errors["boom"] != 50 {
		t.Fatalf("ops %d, calls %d, errors %v; want 500, 500, 50 boom", total.Ops, calls.Load(), total.Errors)
	}
}

func TestOpenLoopCountsFromTheDueTime(t *testing.T) {
	// One worker, an op of 20 ms, due every 10 ms: the k-th op cannot
	// start before k*20 ms but was due at k*10 ms, so its latency is at
	// least k*10 ms + 20 ms. A closed loop would report 20 ms throughout.
	const n, opTime = 20, 20 * time.Millisecond
	var calls atomic.Int64
	res := Run(context.Background(), Plan{N: n, Rate: 100, Concurrency: 1}, worker(func(context.Context) (string, error) {
		calls.Add(1)
		time.Sleep(opTime)
		return "x", nil
	}), classify, NewRecorder())
	total, _ := res.Recorder.Summarise(res.Elapsed)
	if total.OK != n || calls.Load() != n {
		t.Fatalf("%d ops recorded, %d run; want %d", total.OK, calls.Load(), n)
	}
	minMax := float64((n-1)*10*time.Millisecond+opTime) / 1e6
	if total.Latency.Max < minMax {
		t.Fatalf("max latency %.1f ms; the last op was due %.0f ms before it could end", total.Latency.Max, minMax)
	}
}

func TestOpenLoopWarmupIsNotRecorded(t *testing.T) {
	var calls atomic.Int64
	res := Run(context.Background(), Plan{N: 10, Rate: 1000, Warmup: 50 * time.Millisecond, Concurrency: 2}, worker(func(context.Context) (string, error) {
		calls.Add(1)
		return "x", nil
	}), classify, NewRecorder())
	total, _ := res.Recorder.Summarise(res.Elapsed)
	// 1000/s for 50 ms: exactly 50 due times fall in the warm-up.
	if total.OK != 10 || res.Warmup != 50 || calls.Load() != 60 {
		t.Fatalf("recorded %d, warm-up %d, calls %d; want 10, 50, 60", total.OK, res.Warmup, calls.Load())
	}
}

func TestClosedLoopDurationAndInterrupt(t *testing.T) {
	res := Run(context.Background(), Plan{Duration: 100 * time.Millisecond, Concurrency: 3}, worker(func(context.Context) (string, error) {
		time.Sleep(time.Millisecond)
		return "x", nil
	}), classify, NewRecorder())
	if total, _ := res.Recorder.Summarise(res.Elapsed); total.OK == 0 || res.Elapsed < 100*time.Millisecond || res.Interrupted {
		t.Fatalf("duration run: %d ops in %v (interrupted %v)", total.OK, res.Elapsed, res.Interrupted)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res = Run(ctx, Plan{Duration: time.Hour, Rate: 50, Concurrency: 2}, worker(func(ctx context.Context) (string, error) {
		<-ctx.Done()
		return "x", ctx.Err()
	}), classify, NewRecorder())
	if !res.Interrupted {
		t.Fatal("an interrupted run does not say so")
	}
	if total, _ := res.Recorder.Summarise(res.Elapsed); total.Failed != 0 {
		t.Fatalf("operations cut short by the interruption counted as failures: %v", total.Errors)
	}
}
