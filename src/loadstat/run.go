package loadstat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Plan says how many operations to run and how.
type Plan struct {
	// N stops after N measured operations (0: no limit); Duration stops
	// the measured phase after that long (0: no limit). At least one
	// must be set; with both, whichever comes first.
	N        int
	Duration time.Duration
	// Warmup runs operations for that long before measuring; they are
	// not recorded (connections, caches and page cache settle).
	Warmup time.Duration
	// Rate > 0 runs open-loop: operations are due at fixed intervals
	// whatever the server does, and each one's latency counts from when
	// it was due, not from when a worker got round to it. A closed loop
	// only measures the server at the pace the server sets, so a stall
	// delays the requests that would have seen it and vanishes from the
	// figures (coordinated omission); an open loop counts it in full.
	// Rate 0 runs closed-loop: each worker starts its next operation as
	// soon as the last one ends.
	Rate float64
	// Concurrency is the number of workers (for an open loop, the most
	// operations in flight; due operations queue beyond it).
	Concurrency int
}

// Validate reports a plan that cannot run.
func (p Plan) Validate() error {
	switch {
	case p.N < 0:
		return fmt.Errorf("the number of operations is %d: give a positive count, or 0 for no limit", p.N)
	case p.Duration < 0 || p.Warmup < 0:
		return errors.New("durations must not be negative")
	case p.N == 0 && p.Duration == 0:
		return errors.New("neither a number of operations nor a duration: give one, or the run never ends")
	case p.Rate < 0:
		return fmt.Errorf("rate %g: must be positive (open loop) or 0 (closed loop)", p.Rate)
	case p.Concurrency < 1:
		return fmt.Errorf("concurrency %d: at least one worker is needed", p.Concurrency)
	}
	return nil
}

// Op runs one operation and says which kind it was (the recorder keeps
// figures per kind). A worker's Op is called by one goroutine only, so it
// may keep a connection between calls.
type Op func(ctx context.Context) (kind string, err error)

// Worker is one goroutine's operation and what to release at the end.
type Worker struct {
	Op    Op
	Close func()
}

// Result is what a run measured.
type Result struct {
	Recorder *Recorder
	// Elapsed is the measured phase: from the end of the warm-up to the
	// end of the last measured operation.
	Elapsed time.Duration
	// Warmup counts the operations run during the warm-up.
	Warmup uint64
	// Interrupted says the context ended the run early.
	Interrupted bool
}

// Intended is when operation i (from 0) of an open loop at rate per
// second starting at start is due.
func Intended(start time.Time, rate float64, i int64) time.Time {
	return start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
}

type slot struct {
	due    time.Time
	warmup bool
}

// Run runs the plan with Concurrency workers made by newWorker, records
// into rec and classifies errors with classify (nil error: success).
func Run(ctx context.Context, p Plan, newWorker func(i int) Worker, classify func(error) string, rec *Recorder) Result {
	start := time.Now()
	measureStart := start.Add(p.Warmup)
	var measureEnd time.Time
	if p.Duration > 0 {
		measureEnd = measureStart.Add(p.Duration)
	}
	var (
		warm     atomic.Uint64
		tickets  atomic.Int64
		lastDone atomic.Int64 // unix nanos of the last measured op's end
		wg       sync.WaitGroup
	)
	record := func(kind string, lat time.Duration, err error) {
		ek := ""
		if err != nil {
			ek = classify(err)
			if ek == "" {
				ek = "other"
			}
		}
		rec.Add(kind, lat, ek)
		now := time.Now().UnixNano()
		for {
			old := lastDone.Load()
			if now <= old || lastDone.CompareAndSwap(old, now) {
				break
			}
		}
	}
	workers := make([]Worker, p.Concurrency)
	for i := range workers {
		workers[i] = newWorker(i)
	}
	if p.Rate > 0 {
		slots := make(chan slot, p.Concurrency)
		wg.Add(1)
		go func() { // the clock: due times advance whether workers keep up or not
			defer wg.Done()
			defer close(slots)
			timer := time.NewTimer(0)
			defer timer.Stop()
			measured := 0
			for i := int64(0); ; i++ {
				due := Intended(start, p.Rate, i)
				isWarm := due.Before(measureStart)
				if !isWarm && (p.N > 0 && measured >= p.N || !measureEnd.IsZero() && !due.Before(measureEnd)) {
					return
				}
				if d := time.Until(due); d > 0 {
					timer.Reset(d)
					select {
					case <-ctx.Done():
						return
					case <-timer.C:
					}
				}
				select {
				case <-ctx.Done():
					return
				case slots <- slot{due: due, warmup: isWarm}:
				}
				if !isWarm {
					measured++
				}
			}
		}()
		for _, w := range workers {
			wg.Add(1)
			go func(w Worker) {
				defer wg.Done()
				for s := range slots {
					kind, err := w.Op(ctx)
					if s.warmup {
						warm.Add(1)
						continue
					}
					if ctx.Err() != nil && err != nil {
						return // cut short by the interruption, not the server's doing
					}
					record(kind, time.Since(s.due), err)
				}
			}(w)
		}
	} else {
		for _, w := range workers {
			wg.Add(1)
			go func(w Worker) {
				defer wg.Done()
				for ctx.Err() == nil {
					began := time.Now()
					isWarm := began.Before(measureStart)
					if !isWarm {
						if p.N > 0 && tickets.Add(1) > int64(p.N) {
							return
						}
						if !measureEnd.IsZero() && !began.Before(measureEnd) {
							return
						}
					}
					kind, err := w.Op(ctx)
					if isWarm {
						warm.Add(1)
						continue
					}
					if ctx.Err() != nil && err != nil {
						return
					}
					record(kind, time.Since(began), err)
				}
			}(w)
		}
	}
	wg.Wait()
	for _, w := range workers {
		if w.Close != nil {
			w.Close()
		}
	}
	res := Result{Recorder: rec, Warmup: warm.Load(), Interrupted: ctx.Err() != nil}
	if ld := lastDone.Load(); ld != 0 {
		res.Elapsed = time.Unix(0, ld).Sub(measureStart)
	}
	if !res.Interrupted && !measureEnd.IsZero() && p.N == 0 {
		// A duration run measured exactly that window (the last op may
		// end a little after it, or, at a low rate, well before it).
		res.Elapsed = max(res.Elapsed, p.Duration)
	}
	return res
}
