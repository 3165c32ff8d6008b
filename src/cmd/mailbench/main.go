// Command mailbench loads every public face of a correo cluster (SMTP,
// submission, LMTP, POP3, IMAP, passwd, getpwnam through NSS), alone or
// as a compressed day's mix, and prints rate and latency percentiles
// with errors by kind; `mailbench plan` turns such figures into the
// number of hosts per role a user count and a peak call for.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"correo/src/loadstat"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mailbench <command> [flags]   (mailbench <command> -h for its flags)")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-11s %s\n", "plan", "hosts per role for --users and --peak-msgs-per-s, from measured figures (--figures) or labelled defaults")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		return 2
	}
	cmd := args[0]
	if cmd == "plan" {
		return exit(runPlan(args[1:], stdout, stderr), "plan", stderr)
	}
	if serviceOf(cmd) == "" && cmd != "nss" && cmd != "mix" {
		fmt.Fprintf(stderr, "mailbench: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
	o, err := parseOptions(cmd, args[1:], stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintf(stderr, "mailbench %s: %v\n", cmd, err)
		return 2
	}
	return exit(runLoad(ctx, o, stdout, stderr), cmd, stderr)
}

// errNothingWorked makes the exit status 1 when every operation failed,
// so a script notices a run against a dead target.
var errNothingWorked = errors.New("no operation succeeded")

func exit(err error, cmd string, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "mailbench %s: %v\n", cmd, err)
	return 1
}

// Summary is what a run prints with --json, and what plan reads back.
type Summary struct {
	Command     string   `json:"command"`
	Mode        string   `json:"mode"` // "closed-loop" or "open-loop"
	Concurrency int      `json:"concurrency"`
	TargetRate  float64  `json:"target_rate_per_s,omitempty"`
	Targets     []string `json:"targets,omitempty"`
	Users       int      `json:"users"`
	WarmupS     float64  `json:"warmup_s"`
	WarmupOps   uint64   `json:"warmup_ops"`
	ElapsedS    float64  `json:"elapsed_s"`
	Interrupted bool     `json:"interrupted,omitempty"`
	loadstat.KindSummary
	// Kinds holds each kind of operation's figures (one for a single
	// command: smtp, submission, lmtp, pop3, imap, passwd-lookup,
	// passwd-auth, nss).
	Kinds map[string]loadstat.KindSummary `json:"kinds"`
	// Mix is the operations per user per day a mix ran with.
	Mix map[string]float64 `json:"mix,omitempty"`
	// Server is the daemons' own counters over the run (--metrics).
	Server []ServerFigure `json:"server,omitempty"`
}

func runLoad(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	e, err := setup(ctx, o)
	if err != nil {
		return err
	}
	defer e.close()
	factory := e.workerFactory
	var mix map[string]float64
	if o.cmd == "mix" {
		var f func(int) loadstat.Worker
		if mix, f, err = e.mixFactory(stderr); err != nil {
			return err
		}
		factory = func() func(int) loadstat.Worker { return f }
	}
	maddrs, err := metricsTargets(ctx, o, e.profile)
	if err != nil {
		return fmt.Errorf("--metrics: %w", err)
	}
	before := scrapeAll(ctx, maddrs, stderr)
	rec := loadstat.NewRecorder()
	stopProgress := startProgress(o, rec, stderr)
	res := loadstat.Run(ctx, o.plan, factory(), classify, rec)
	stopProgress()
	var server []ServerFigure
	if len(maddrs) > 0 {
		// The warm-up's work is in these counters too: they cannot tell
		// it apart. Run without --warmup for figures that match.
		server = serverDeltas(before, scrapeAll(context.WithoutCancel(ctx), maddrs, stderr), res.Elapsed+o.plan.Warmup)
	}
	total, kinds := rec.Summarise(res.Elapsed)
	s := Summary{Command: o.cmd, Mode: "closed-loop", Concurrency: o.plan.Concurrency, Users: len(e.users),
		WarmupS: o.plan.Warmup.Seconds(), WarmupOps: res.Warmup, ElapsedS: res.Elapsed.Seconds(),
		Interrupted: res.Interrupted, KindSummary: total, Kinds: kinds, Mix: mix, Server: server}
	if o.plan.Rate > 0 {
		s.Mode, s.TargetRate = "open-loop", o.plan.Rate
	}
	for _, k := range loadstat.SortedKeys(e.targets) {
		s.Targets = append(s.Targets, e.targets[k]...)
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return err
		}
	} else {
		printSummary(stdout, s)
	}
	if s.OK == 0 && s.Failed > 0 {
		return errNothingWorked
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// startProgress prints a line a second on stderr, rewritten in place,
// while the run goes on; the returned function stops and clears it.
func startProgress(o *options, rec *loadstat.Recorder, stderr io.Writer) func() {
	if o.progress == "never" || o.progress == "auto" && !isTerminal(stderr) {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	begin := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var lastOK uint64
		for {
			select {
			case <-done:
				fmt.Fprint(stderr, "\r\033[K")
				return
			case <-t.C:
				ok, failed := rec.Counts()
				phase := ""
				if time.Since(begin) < o.plan.Warmup {
					phase = " (warm-up)"
				}
				fmt.Fprintf(stderr, "\r\033[K%6.0fs%s  ok %d  failed %d  %.0f/s  p99 %s",
					time.Since(begin).Seconds(), phase, ok, failed, float64(ok-lastOK), fmtMS(ms(rec.Quantile(.99))))
				lastOK = ok
			}
		}
	}()
	return func() { close(done); <-finished }
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func fmtMS(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.3f ms", v)
}

func printSummary(w io.Writer, s Summary) {
	mode := fmt.Sprintf("closed loop, %d workers", s.Concurrency)
	if s.Mode == "open-loop" {
		mode = fmt.Sprintf("open loop at %g/s (latency from each operation's due time), up to %d in flight", s.TargetRate, s.Concurrency)
	}
	fmt.Fprintf(w, "mailbench %s: %s, %d users, %.1f s measured", s.Command, mode, s.Users, s.ElapsedS)
	if s.WarmupS > 0 {
		fmt.Fprintf(w, " after %.1f s warm-up (%d operations)", s.WarmupS, s.WarmupOps)
	}
	if s.Interrupted {
		fmt.Fprint(w, ", interrupted")
	}
	fmt.Fprintf(w, "\n  targets: %s\n", strings.Join(s.Targets, " "))
	fmt.Fprintf(w, "  %-14s %9s %9s %9s %10s %10s %10s %10s %10s\n", "kind", "ok", "failed", "rate/s", "p50", "p90", "p99", "max", "mean")
	line := func(name string, k loadstat.KindSummary) {
		fmt.Fprintf(w, "  %-14s %9d %9d %9.1f %10s %10s %10s %10s %10s\n", name, k.OK, k.Failed, k.Rate,
			fmtMS(k.Latency.P50), fmtMS(k.Latency.P90), fmtMS(k.Latency.P99), fmtMS(k.Latency.Max), fmtMS(k.Latency.Mean))
	}
	for _, k := range loadstat.SortedKeys(s.Kinds) {
		line(k, s.Kinds[k])
	}
	if len(s.Kinds) > 1 {
		line("total", s.KindSummary)
	}
	if len(s.Errors) > 0 {
		fmt.Fprintln(w, "  errors:")
		for _, k := range loadstat.SortedKeys(s.Kinds) {
			for _, ek := range loadstat.SortedKeys(s.Kinds[k].Errors) {
				fmt.Fprintf(w, "    %-14s %-24s %d\n", k, ek, s.Kinds[k].Errors[ek])
			}
		}
	}
	fmt.Fprintln(w, "  latency of successful operations only; failures are counted under errors")
	printServer(w, s.Server)
}
