package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"correo/src/cluster"
	"correo/src/keyfile"
	"correo/src/mailmove"
)

// storageFlags are drain's and rebalance's.
type storageFlags struct {
	profile     *string
	dryRun      *bool
	concurrency *int
	rate        *float64
	quiet       *bool
}

func newStorageFlags(name string) (*storageFlags, *flag.FlagSet) {
	fs := newFlags(name)
	return &storageFlags{
		profile:     fs.String("profile", "", "host profile (default: the embedded hosts/dev.toml)"),
		dryRun:      fs.Bool("dry-run", false, "print the plan and change nothing"),
		concurrency: fs.Int("concurrency", 2, "moves at a time"),
		rate:        fs.Float64("rate", 0, "copy each move at most this many MB/s (default: the profile's cluster.moves.rate_limit_mb; 0 there: no cap)"),
		quiet:       fs.Bool("q", false, "no progress line"),
	}, fs
}

// plan loads the profile, passwd's users and every storage host's usage.
func (f *storageFlags) load(ctx context.Context) (*mailmove.Mover, []mailmove.HostLoad, error) {
	p, err := cluster.LoadFlag(*f.profile, cluster.Options{})
	if err != nil {
		return nil, nil, err
	}
	ring, err := keyfile.Load(p.Cluster.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	dir := &mailmove.PasswdDirectory{Profile: p, Ring: ring}
	m := &mailmove.Mover{Profile: p, Ring: ring, Dir: dir, RateLimit: int64(*f.rate * 1_000_000)}
	by, err := dir.ByStorage(ctx)
	if err != nil {
		return nil, nil, err
	}
	loads, err := m.Loads(ctx, by)
	return m, loads, err
}

func runStorageDrain(args []string, stdout, stderr io.Writer) error {
	f, fs := newStorageFlags("storage drain")
	pos, err := parseArgs(fs, args, 1, "one storage host")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, loads, err := f.load(ctx)
	if err != nil {
		return err
	}
	plan, err := mailmove.PlanDrain(loads, pos[0])
	if err != nil {
		return err
	}
	return f.carryOut(ctx, m, loads, plan, "drain "+pos[0], stdout, stderr)
}

func runStorageRebalance(args []string, stdout, stderr io.Writer) error {
	f, fs := newStorageFlags("storage rebalance")
	margin := fs.Float64("margin", 10, "stop when every host's fill is within this many percent of the mean")
	if _, err := parseArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, loads, err := f.load(ctx)
	if err != nil {
		return err
	}
	plan := mailmove.PlanRebalance(loads, *margin/100)
	return f.carryOut(ctx, m, loads, plan, "rebalance", stdout, stderr)
}

// carryOut prints the plan, then (unless -dry-run) moves, with a progress
// line: users and bytes done, rate and the time left at that rate.
func (f *storageFlags) carryOut(ctx context.Context, m *mailmove.Mover, loads []mailmove.HostLoad, plan []mailmove.PlannedMove, what string, stdout, stderr io.Writer) error {
	var total int64
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tFROM\tTO\tBYTES")
	for _, pm := range plan {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", pm.User, pm.From, pm.To, pm.Bytes)
		total += pm.Bytes
	}
	tw.Flush()
	before, mean := mailmove.Spread(loads, nil)
	after, _ := mailmove.Spread(loads, plan)
	fmt.Fprintf(stdout, "%s: %d moves, %d bytes; fill spread %.2f%% of the mean before, %.2f%% after\n",
		what, len(plan), total, pct(before, mean), pct(after, mean))
	if *f.dryRun || len(plan) == 0 {
		return nil
	}
	start := time.Now()
	var doneUsers int
	var doneBytes int64
	failed := m.RunPlan(ctx, plan, *f.concurrency, func(pm mailmove.PlannedMove, rep mailmove.Report, err error) {
		doneUsers++
		doneBytes += pm.Bytes
		if err != nil {
			fmt.Fprintf(stdout, "\n%s: %s -> %s failed: %v\n", pm.User, pm.From, pm.To, err)
		} else if *f.quiet {
			fmt.Fprintf(stdout, "%s: %s -> %s, frozen %s\n", pm.User, rep.From, pm.To, rep.Frozen.Round(time.Millisecond))
		}
		if !*f.quiet {
			rate, eta := rateETA(doneBytes, total, time.Since(start))
			fmt.Fprintf(stderr, "\r%s [%s] %d/%d users %.1f/%.1f MB %.1f MB/s ETA %s ", what,
				progressBar(float64(doneUsers)/float64(len(plan))), doneUsers, len(plan), float64(doneBytes)/1e6, float64(total)/1e6, rate/1e6, eta)
		}
	})
	if !*f.quiet {
		fmt.Fprintln(stderr)
	}
	fmt.Fprintf(stdout, "%s: %d of %d moves done in %s\n", what, len(plan)-failed, len(plan), time.Since(start).Round(time.Millisecond))
	if failed > 0 {
		return fmt.Errorf("%d moves failed (see above); those users stay where they were, or -resume them with correoctl mailbox move", failed)
	}
	return nil
}

func pct(spread, mean float64) float64 {
	if mean == 0 {
		return 0
	}
	return 100 * spread / mean
}
