// Package udpload measures a one-datagram-in, one-datagram-out server:
// closed-loop workers, each on its own connected socket, send a request,
// wait for the answer and record the latency. It also provides the plain
// echo server that is the ceiling for such a server on a given machine, so
// a benchmark can print both figures from the same run.
package udpload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
)

// Config describes one load run.
type Config struct {
	Addr        string
	Concurrency int
	Duration    time.Duration
	// Requests bounds the run by count instead of (or as well as) time;
	// zero means no bound.
	Requests int
	// Timeout per request; a request that gets no answer counts as lost.
	Timeout time.Duration
	// Request writes the i-th request of worker w into buf and returns it.
	Request func(w, i int, buf []byte) ([]byte, error)
	// Check validates an answer; nil accepts any.
	Check func(w, i int, resp []byte) error
}

// Result is what a run measured.
type Result struct {
	OK, Failed, Lost int
	Elapsed          time.Duration
	P50, P99, Max    time.Duration
	FirstError       error
}

// Rate is successful requests per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

func (r Result) String() string {
	return fmt.Sprintf("%d ok, %d failed, %d lost in %v: %.0f req/s, p50 %v, p99 %v, max %v",
		r.OK, r.Failed, r.Lost, r.Elapsed.Round(time.Millisecond), r.Rate(), r.P50, r.P99, r.Max)
}

// Run drives the load until Duration passes, Requests are done or ctx ends.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Concurrency < 1 {
		cfg.Concurrency = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Duration == 0 && cfg.Requests == 0 {
		return Result{}, errors.New("udpload: set Duration or Requests, or the run never ends")
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	type workerResult struct {
		lat              []time.Duration
		ok, failed, lost int
		firstErr         error
	}
	results := make([]workerResult, cfg.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	take := func() bool {
		if cfg.Requests == 0 {
			return true
		}
		mu.Lock()
		defer mu.Unlock()
		if next >= cfg.Requests {
			return false
		}
		next++
		return true
	}
	start := time.Now()
	for w := 0; w < cfg.Concurrency; w++ {
		conn, err := net.Dial("udp", cfg.Addr)
		if err != nil {
			return Result{}, fmt.Errorf("udpload: dial %s: %w", cfg.Addr, err)
		}
		wg.Add(1)
		go func(w int, conn net.Conn) {
			defer wg.Done()
			defer conn.Close()
			r := &results[w]
			out := make([]byte, 0, 2048)
			in := make([]byte, 65536)
			for i := 0; ctx.Err() == nil && take(); i++ {
				req, err := cfg.Request(w, i, out[:0])
				if err != nil {
					r.failed++
					if r.firstErr == nil {
						r.firstErr = err
					}
					continue
				}
				t0 := time.Now()
				conn.SetDeadline(t0.Add(cfg.Timeout))
				if _, err := conn.Write(req); err != nil {
					r.lost++
					continue
				}
				n, err := conn.Read(in)
				if err != nil {
					r.lost++
					if r.firstErr == nil && ctx.Err() == nil {
						r.firstErr = err
					}
					continue
				}
				r.lat = append(r.lat, time.Since(t0))
				if cfg.Check != nil {
					if err := cfg.Check(w, i, in[:n]); err != nil {
						r.failed++
						if r.firstErr == nil {
							r.firstErr = err
						}
						continue
					}
				}
				r.ok++
			}
		}(w, conn)
	}
	wg.Wait()
	res := Result{Elapsed: time.Since(start)}
	var all []time.Duration
	for _, r := range results {
		res.OK += r.ok
		res.Failed += r.failed
		res.Lost += r.lost
		if res.FirstError == nil {
			res.FirstError = r.firstErr
		}
		all = append(all, r.lat...)
	}
	if len(all) > 0 {
		slices.Sort(all)
		res.P50 = all[len(all)/2]
		res.P99 = all[len(all)*99/100]
		res.Max = all[len(all)-1]
	}
	return res, nil
}

// Echo serves a plain UDP echo on addr until ctx ends, with the given
// number of reader goroutines: the ceiling a datagram server written in Go
// can reach on this machine. It returns the bound address.
func Echo(ctx context.Context, addr string, readers int) (string, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return "", err
	}
	uc := pc.(*net.UDPConn)
	if readers < 1 {
		readers = 1
	}
	for i := 0; i < readers; i++ {
		go func() {
			buf := make([]byte, 65536)
			for {
				n, from, err := uc.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				uc.WriteToUDPAddrPort(buf[:n], from)
			}
		}()
	}
	go func() {
		<-ctx.Done()
		uc.Close()
	}()
	return uc.LocalAddr().String(), nil
}
