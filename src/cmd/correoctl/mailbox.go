package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"correo/src/cluster"
	"correo/src/keyfile"
	"correo/src/mailmove"
)

// runMailboxMove moves a user's mailbox to another storage host, or
// resumes or aborts a journaled move.
func runMailboxMove(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("mailbox move")
	profile := fs.String("profile", "", "host profile (default: the embedded hosts/dev.toml)")
	to := fs.String("to", "", "the storage host to move the mailbox to")
	resume := fs.Bool("resume", false, "finish the journaled move of USER (every unfinished one without USER)")
	abort := fs.Bool("abort", false, "roll back the journaled move of USER, if it has not reached its commit")
	rate := fs.Float64("rate", 0, "copy at most this many MB/s (default: the profile's cluster.moves.rate_limit_mb; 0 there: no cap)")
	quiet := fs.Bool("q", false, "no progress line")
	pos, err := parseArgs(fs, args, -1, "")
	if err != nil {
		return err
	}
	switch {
	case *resume && *abort:
		return fmt.Errorf("%w: -resume and -abort exclude each other", errUsage)
	case *resume || *abort:
		if len(pos) > 1 || *to != "" {
			return fmt.Errorf("%w: correoctl mailbox move -resume|-abort [USER]", errUsage)
		}
		if *abort && len(pos) != 1 {
			return fmt.Errorf("%w: correoctl mailbox move -abort USER", errUsage)
		}
	case len(pos) != 1 || *to == "":
		return fmt.Errorf("%w: correoctl mailbox move USER -to HOST", errUsage)
	}
	p, err := cluster.LoadFlag(*profile, cluster.Options{})
	if err != nil {
		return err
	}
	ring, err := keyfile.Load(p.Cluster.KeyFile)
	if err != nil {
		return err
	}
	m := &mailmove.Mover{Profile: p, Ring: ring, Dir: &mailmove.PasswdDirectory{Profile: p, Ring: ring},
		RateLimit: int64(*rate * 1_000_000),
		Note:      func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }}
	if !*quiet {
		m.Progress = progressLine(stderr)
	}
	// An interrupt between steps is what -resume is for; say so.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch {
	case *abort:
		return m.Abort(ctx, pos[0])
	case *resume:
		users := pos
		if len(users) == 0 {
			if users, err = m.Pending(); err != nil {
				return err
			}
			if len(users) == 0 {
				fmt.Fprintf(stdout, "no unfinished move is journaled in %s\n", p.Cluster.Moves.JournalDir)
				return nil
			}
		}
		for _, u := range users {
			rep, err := m.Resume(ctx, u)
			if err != nil {
				return err
			}
			report(stdout, rep)
		}
		return nil
	}
	rep, err := m.Move(ctx, pos[0], *to)
	if err != nil {
		return err
	}
	report(stdout, rep)
	return nil
}

func report(w io.Writer, r mailmove.Report) {
	var files, bytes int64
	for _, p := range r.Live {
		files += p.Files
		bytes += p.Bytes
	}
	files += r.Delta.Files
	bytes += r.Delta.Bytes
	rateMB := 0.0
	if r.Took > 0 {
		rateMB = float64(bytes) / 1e6 / r.Took.Seconds()
	}
	fmt.Fprintf(w, "%s: %s -> %s, %d files, %d bytes copied (%.1f MB/s), %d verified; frozen %s, took %s\n",
		r.User, r.From, r.To, files, bytes, rateMB, r.Verified.Files, r.Frozen.Round(time.Millisecond), r.Took.Round(time.Millisecond))
}

// progressLine draws one line, rewritten in place: files, bytes, MB/s and
// the time left at the current rate.
func progressLine(w io.Writer) func(user, phase string, p mailmove.Progress) {
	start := map[string]time.Time{}
	return func(user, phase string, p mailmove.Progress) {
		key := user + phase
		if _, ok := start[key]; !ok {
			start[key] = time.Now()
		}
		rate, eta := rateETA(p.Bytes, p.TotalBytes, time.Since(start[key]))
		pct := 100.0
		if p.TotalBytes > 0 {
			pct = 100 * float64(p.Bytes) / float64(p.TotalBytes)
		}
		bar := progressBar(pct / 100)
		fmt.Fprintf(w, "\r%s %s [%s] %3.0f%% %d/%d files %.1f MB/s ETA %s ", user, phase, bar, pct, p.Files, p.TotalFiles, rate/1e6, eta)
	}
}

// progressBar is a 20-character bar for done, a fraction of 1.
func progressBar(done float64) string {
	n := min(20, max(0, int(done*20)))
	return strings.Repeat("#", n) + strings.Repeat(".", 20-n)
}

// rateETA is the rate (bytes/s) of done bytes in elapsed, and the time
// the rest of total takes at it ("?" before anything is done).
func rateETA(done, total int64, elapsed time.Duration) (float64, string) {
	if done <= 0 || elapsed <= 0 {
		return 0, "?"
	}
	rate := float64(done) / elapsed.Seconds()
	return rate, time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
}
