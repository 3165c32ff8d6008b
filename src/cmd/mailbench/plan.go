package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"correo/internal/benchfig"
)

// capacity is one per-host figure plan divides by, with where it came
// from.
type capacity struct {
	Value  float64
	Source string
}

// builtinCapacity are figures to plan with before anything was measured.
// They are round numbers of the order the project's benchmarks printed
// on a 2-core test machine, and plan labels every one it uses as a
// default, not a measurement: measure (mailbench ... --json > f) and
// pass --figures f.
var builtinCapacity = map[string]float64{
	"smtp":          400,   // messages/s accepted by one MX (queue fsync included)
	"submission":    200,   // messages/s submitted with TLS and AUTH to one relay
	"lmtp":          800,   // deliveries/s into Maildirs on one storage host
	"pop3":          1000,  // POP3 sessions/s through one mailproxy
	"imap":          600,   // IMAP sessions/s through one mailproxy
	"passwd-lookup": 50000, // lookups/s one passwd server answers
	"passwd-auth":   2000,  // authentications/s one passwd server answers (credential cache warm)
}

// planInput is everything the arithmetic uses.
type planInput struct {
	Users         int
	PeakMsgs      float64 // inbound messages/s at the peak hour
	MsgsPerDay    float64 // inbound messages per user per day (for the peak/mean check)
	RcptsPerMsg   float64 // deliveries per inbound message
	OutboundShare float64 // submitted messages per inbound one
	SessionsDay   float64 // POP3/IMAP sessions per user per day
	IMAPShare     float64 // share of those sessions that are IMAP
	SessionPeak   float64 // peak-hour sessions over the day's mean
	MailboxMB     float64 // average mailbox size
	DiskGB        float64 // usable mail disk per storage host
	Headroom      float64 // fraction of measured capacity to plan on
	Cap           map[string]capacity
}

// planRow is one role's answer.
type planRow struct {
	Role  string
	Hosts int
	Load  string // what it carries at the peak
	Why   string // the division that gave Hosts
}

func ceilDiv(load, perHost float64) int {
	if load <= 0 {
		return 0
	}
	return int(math.Ceil(load/perHost - 1e-9))
}

// computePlan does the arithmetic. Each role needs enough hosts that
// none carries more than Headroom of its measured capacity; roles that
// must survive a host's loss (mx, relay, mailproxy: DNS round robin; and
// passwd's primary and secondary) never get fewer than two.
func computePlan(in planInput) []planRow {
	h := in.Headroom
	c := func(k string) float64 { return in.Cap[k].Value * h }
	var rows []planRow
	mx := max(ceilDiv(in.PeakMsgs, c("smtp")), 2)
	rows = append(rows, planRow{"mx", mx, fmt.Sprintf("%.0f msg/s", in.PeakMsgs),
		fmt.Sprintf("%.0f / (%.0f × %.2f), at least 2", in.PeakMsgs, in.Cap["smtp"].Value, h)})
	out := in.PeakMsgs * in.OutboundShare
	relay := max(ceilDiv(out, c("submission")), 2)
	rows = append(rows, planRow{"relay", relay, fmt.Sprintf("%.0f msg/s", out),
		fmt.Sprintf("%.0f / (%.0f × %.2f), at least 2", out, in.Cap["submission"].Value, h)})
	deliv := in.PeakMsgs * in.RcptsPerMsg
	byRate := ceilDiv(deliv, c("lmtp"))
	store := float64(in.Users) * in.MailboxMB / 1000 // GB
	byDisk := ceilDiv(store, in.DiskGB*h)
	rows = append(rows, planRow{"storage", max(byRate, byDisk, 1), fmt.Sprintf("%.0f deliveries/s, %.0f GB", deliv, store),
		fmt.Sprintf("max(%.0f / (%.0f × %.2f) = %d by rate, %.0f GB / (%.0f GB × %.2f) = %d by disk)", deliv, in.Cap["lmtp"].Value, h, byRate, store, in.DiskGB, h, byDisk)})
	sess := float64(in.Users) * in.SessionsDay / 86400 * in.SessionPeak
	imapS, popS := sess*in.IMAPShare, sess*(1-in.IMAPShare)
	// A proxy host's time is shared: each protocol takes its fraction.
	proxyLoad := popS/in.Cap["pop3"].Value + imapS/in.Cap["imap"].Value
	proxy := max(ceilDiv(proxyLoad, h), 2)
	rows = append(rows, planRow{"mailproxy", proxy, fmt.Sprintf("%.0f POP3 + %.0f IMAP sessions/s", popS, imapS),
		fmt.Sprintf("(%.0f / %.0f + %.0f / %.0f) / %.2f, at least 2", popS, in.Cap["pop3"].Value, imapS, in.Cap["imap"].Value, h)})
	// Each delivery is a lookup at the MX; each session and submission an
	// authentication.
	lookups, auths := deliv, sess+out
	pwLoad := lookups/in.Cap["passwd-lookup"].Value + auths/in.Cap["passwd-auth"].Value
	pw := max(ceilDiv(pwLoad, h), 2)
	rows = append(rows, planRow{"passwd", pw, fmt.Sprintf("%.0f lookups/s + %.0f auths/s", lookups, auths),
		fmt.Sprintf("(%.0f / %.0f + %.0f / %.0f) / %.2f, at least 2 (primary and secondary)", lookups, in.Cap["passwd-lookup"].Value, auths, in.Cap["passwd-auth"].Value, h)})
	return rows
}

// readFigures takes the best rate per kind from mailbench --json files
// and from the figures files of make bench (.bench/figures.jsonl: rows
// that name the capacity they measure).
func readFigures(paths []string, caps map[string]capacity) error {
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		take := func(kind string, rate float64, src string) {
			if _, known := builtinCapacity[kind]; !known || rate <= 0 {
				return
			}
			if old, ok := caps[kind]; !ok || strings.HasPrefix(old.Source, "built-in") || rate > old.Value {
				caps[kind] = capacity{rate, src}
			}
		}
		var s Summary
		if err := json.Unmarshal(b, &s); err != nil {
			figs, ferr := benchfig.Read(bytes.NewReader(b))
			if ferr != nil || len(figs) == 0 {
				return fmt.Errorf("%s: neither a mailbench --json summary (%v) nor a make bench figures file (%v)", p, err, ferr)
			}
			for _, f := range figs {
				if f.Capacity != "" {
					take(f.Capacity, f.Correo, fmt.Sprintf("measured: %s, %s: %q", p, f.Bench, f.Figure))
				}
			}
			continue
		}
		if len(s.Kinds) == 0 {
			return fmt.Errorf("%s: a summary without kinds of operations (was it written by mailbench --json?)", p)
		}
		for k, ks := range s.Kinds {
			src := fmt.Sprintf("measured: %s (%s, %d ok, %d failed)", p, s.Mode, ks.OK, ks.Failed)
			if s.Mode == "open-loop" {
				src += "; an open loop's rate is what it offered, a floor of capacity"
			}
			take(k, ks.Rate, src)
		}
	}
	return nil
}

func runPlan(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mailbench plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := planInput{}
	var figures []string
	fs.IntVar(&in.Users, "users", 0, "users the cluster serves (required)")
	fs.Float64Var(&in.PeakMsgs, "peak-msgs-per-s", 0, "inbound messages per second at the peak (required)")
	fs.Float64Var(&in.MsgsPerDay, "msgs-per-user-per-day", 20, "inbound messages per user per day (to check the peak against the day's mean)")
	fs.Float64Var(&in.RcptsPerMsg, "rcpts-per-msg", 1.2, "local deliveries per inbound message")
	fs.Float64Var(&in.OutboundShare, "outbound-share", 0.15, "messages submitted through the relay per inbound message")
	fs.Float64Var(&in.SessionsDay, "sessions-per-user-per-day", 24, "POP3 and IMAP sessions per user per day")
	fs.Float64Var(&in.IMAPShare, "imap-share", 0.5, "share of sessions that are IMAP")
	fs.Float64Var(&in.SessionPeak, "session-peak-factor", 3, "peak-hour sessions over the day's mean")
	fs.Float64Var(&in.MailboxMB, "mailbox-mb", 200, "average mailbox size, MB")
	fs.Float64Var(&in.DiskGB, "disk-gb", 2000, "usable mail disk per storage host, GB")
	fs.Float64Var(&in.Headroom, "headroom", 0.6, "plan each host at this fraction of its measured capacity (peaks, a host down, slower disks)")
	fs.Var(listFlag{&figures}, "figures", "mailbench --json output files, or make bench's .bench/figures.jsonl, to take per-host capacities from (repeatable)")
	jsonOut := fs.Bool("json", false, "print the plan as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	switch {
	case in.Users <= 0 || in.PeakMsgs <= 0:
		return errors.New("give --users N and --peak-msgs-per-s M, both positive")
	case in.Headroom <= 0 || in.Headroom > 1:
		return fmt.Errorf("--headroom %g: want a fraction above 0, at most 1", in.Headroom)
	case in.IMAPShare < 0 || in.IMAPShare > 1:
		return fmt.Errorf("--imap-share %g: want a fraction from 0 to 1", in.IMAPShare)
	case in.RcptsPerMsg <= 0 || in.OutboundShare < 0 || in.SessionsDay < 0 || in.SessionPeak <= 0 || in.MailboxMB < 0 || in.DiskGB <= 0 || in.MsgsPerDay <= 0:
		return errors.New("the per-user figures must be positive (shares and sessions may be 0)")
	}
	in.Cap = map[string]capacity{}
	for k, v := range builtinCapacity {
		in.Cap[k] = capacity{v, "built-in default, not measured here"}
	}
	if err := readFigures(figures, in.Cap); err != nil {
		return err
	}
	rows := computePlan(in)
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"input": in, "hosts": rows})
	}
	fmt.Fprintf(stdout, "mailbench plan: %d users, peak %.0f inbound messages/s\n\n", in.Users, in.PeakMsgs)
	fmt.Fprintf(stdout, "%-10s %6s  %-36s %s\n", "role", "hosts", "peak load", "arithmetic")
	for _, r := range rows {
		fmt.Fprintf(stdout, "%-10s %6d  %-36s %s\n", r.Role, r.Hosts, r.Load, r.Why)
	}
	mean := float64(in.Users) * in.MsgsPerDay / 86400
	fmt.Fprintf(stdout, "\nassumptions:\n")
	fmt.Fprintf(stdout, "  headroom %.2f: no host planned above %.0f %% of its capacity\n", in.Headroom, in.Headroom*100)
	fmt.Fprintf(stdout, "  %.1f inbound messages per user per day: a mean of %.1f/s, so the peak given is %.1f× the mean\n", in.MsgsPerDay, mean, in.PeakMsgs/mean)
	fmt.Fprintf(stdout, "  %.2f deliveries per inbound message; %.2f submitted per inbound\n", in.RcptsPerMsg, in.OutboundShare)
	fmt.Fprintf(stdout, "  %.1f POP3/IMAP sessions per user per day (%.0f %% IMAP), peak hour %.1f× the mean\n", in.SessionsDay, in.IMAPShare*100, in.SessionPeak)
	fmt.Fprintf(stdout, "  mailboxes of %.0f MB on %.0f GB of mail disk per storage host\n", in.MailboxMB, in.DiskGB)
	fmt.Fprintf(stdout, "  per-host capacity:\n")
	for _, k := range []string{"smtp", "submission", "lmtp", "pop3", "imap", "passwd-lookup", "passwd-auth"} {
		fmt.Fprintf(stdout, "    %-14s %10.1f/s  %s\n", k, in.Cap[k].Value, in.Cap[k].Source)
	}
	fmt.Fprintln(stdout, "  figures measured with the whole cluster and mailbench on one machine understate what a dedicated host does")
	return nil
}
