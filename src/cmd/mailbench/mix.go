package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"correo/src/loadstat"
)

// mixKinds are what a mix runs, each against the profile's hosts for it.
var mixKinds = []string{"smtp", "submission", "pop3", "imap", "passwd-lookup"}

// defaultMix is an ISP user's day, per user: about 20 messages in, 3
// sent, a mail client polling POP3 or IMAP every hour or so over the
// waking day, and the passwd lookups other hosts' programs do (getpwnam
// by nssd, shells, cron) beyond the ones MX and proxies already make.
const defaultMix = "smtp=20,submission=3,pop3=12,imap=12,passwd-lookup=10"

// parseMix reads "kind=per-user-per-day,...".
func parseMix(s string) (map[string]float64, error) {
	m := map[string]float64{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		known := false
		for _, mk := range mixKinds {
			known = known || mk == k
		}
		if !ok || !known {
			return nil, fmt.Errorf("--mix %q: %q is not kind=number (kinds: %s)", s, part, strings.Join(mixKinds, ", "))
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return nil, fmt.Errorf("--mix %q: %s=%q is not a number of operations per user per day", s, k, v)
		}
		if f > 0 {
			m[k] = f
		}
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("--mix %q: every kind is zero", s)
	}
	return m, nil
}

// mixRate is the rate that runs users' day of mix in day.
func mixRate(users int, mix map[string]float64, daySeconds float64) float64 {
	var perDay float64
	for _, v := range mix {
		perDay += v
	}
	return float64(users) * perDay / daySeconds
}

// mixFactory makes the workers of a mix: each operation draws its kind
// with the mix's weights, so every kind sees the same users and the
// proportions hold over any stretch of the run. Unless --rate is given,
// the run is open-loop at the rate that fits a day of the mix for every
// user into --day (default --duration): the offered load a real day
// would bring, compressed.
func (e *env) mixFactory(stderr io.Writer) (map[string]float64, func(int) loadstat.Worker, error) {
	o := e.o
	mix, err := parseMix(o.mixSpec)
	if err != nil {
		return nil, nil, err
	}
	if !o.starttls && !e.profile.Cluster.TrustedNetwork {
		o.starttls = true // logins in the clear are refused outside a trusted network
	}
	if o.plan.Rate == 0 {
		day := o.day
		if day == 0 {
			day = o.plan.Duration
		}
		if day <= 0 {
			return nil, nil, fmt.Errorf("a mix needs --duration (or --day) to compress a day into, or an explicit --rate")
		}
		o.plan.Rate = mixRate(len(e.users), mix, day.Seconds())
		fmt.Fprintf(stderr, "mailbench mix: %d users × %s per day in %v: %.1f operations/s (open loop)\n", len(e.users), o.mixSpec, day, o.plan.Rate)
	}
	var kinds []string
	for k := range mix {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var total float64
	for _, k := range kinds {
		total += mix[k]
	}
	return mix, func(i int) loadstat.Worker {
		r := rand.New(rand.NewPCG(o.seed, uint64(i)))
		ops := make([]opFunc, len(kinds))
		var closers []func()
		for j, k := range kinds {
			op, c := e.kindWorker(k, i, r)
			ops[j] = op
			if c != nil {
				closers = append(closers, c)
			}
		}
		return loadstat.Worker{
			Op: func(ctx context.Context) (string, error) {
				x := r.Float64() * total
				j := 0
				for ; j < len(kinds)-1 && x >= mix[kinds[j]]; j++ {
					x -= mix[kinds[j]]
				}
				return kinds[j], ops[j](ctx)
			},
			Close: func() {
				for _, c := range closers {
					c()
				}
			},
		}
	}, nil
}
