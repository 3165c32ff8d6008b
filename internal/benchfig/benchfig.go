// Package benchfig gathers the headline figures of every benchmark into
// one table. Each benchmark calls Record with its figures next to the
// baseline it measured in the same run; `make bench` points
// CORREO_BENCH_FIGURES at one file for all of them and prints the table
// (cmd/benchtable). Without CORREO_BENCH_FIGURES, Record does nothing:
// a benchmark run alone prints its own table as before.
package benchfig

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Env names the file Record appends to.
const Env = "CORREO_BENCH_FIGURES"

// Figure is one row: correo's figure, the baseline's in the same run,
// and the target for it.
type Figure struct {
	Bench    string  `json:"bench"`  // the make target that measured it, e.g. "lmtp-bench"
	Figure   string  `json:"figure"` // what, with its conditions
	Unit     string  `json:"unit"`   // "msgs/s", "µs", "MB/s"…
	Correo   float64 `json:"correo"`
	Baseline float64 `json:"baseline,omitempty"` // 0: none
	// BaselineName says what the baseline is ("bare write+fsync",
	// "Postfix", "glibc files"…).
	BaselineName string `json:"baseline_name,omitempty"`
	// Targets, any of them set: on the ratio correo/baseline, or on the
	// figure itself.
	RatioMin float64 `json:"ratio_min,omitempty"`
	RatioMax float64 `json:"ratio_max,omitempty"`
	Max      float64 `json:"max,omitempty"`
	Min      float64 `json:"min,omitempty"`
	// Capacity, when set, says this figure is one host's capacity for a
	// kind of work `mailbench plan` sizes ("smtp", "lmtp", "pop3",
	// "passwd-lookup"): plan --figures reads it from the figures file.
	Capacity string `json:"capacity,omitempty"`
}

// Ratio is correo/baseline, or 0 without a baseline.
func (f Figure) Ratio() float64 {
	if f.Baseline == 0 {
		return 0
	}
	return f.Correo / f.Baseline
}

// Target describes the target, "" when there is none.
func (f Figure) Target() string {
	var t []string
	if f.RatioMin > 0 {
		t = append(t, "ratio ≥ "+num(f.RatioMin))
	}
	if f.RatioMax > 0 {
		t = append(t, "ratio ≤ "+num(f.RatioMax))
	}
	if f.Min > 0 {
		t = append(t, "≥ "+num(f.Min)+" "+f.Unit)
	}
	if f.Max > 0 {
		t = append(t, "≤ "+num(f.Max)+" "+f.Unit)
	}
	return strings.Join(t, ", ")
}

// Met reports whether every target is met; ok is false without targets.
func (f Figure) Met() (met, ok bool) {
	r := f.Ratio()
	met = true
	if f.RatioMin > 0 {
		ok, met = true, met && f.Baseline != 0 && r >= f.RatioMin
	}
	if f.RatioMax > 0 {
		ok, met = true, met && f.Baseline != 0 && r <= f.RatioMax
	}
	if f.Min > 0 {
		ok, met = true, met && f.Correo >= f.Min
	}
	if f.Max > 0 {
		ok, met = true, met && f.Correo <= f.Max
	}
	return met && ok, ok
}

// Record appends f to the file named by CORREO_BENCH_FIGURES, if set.
func Record(f Figure) error {
	path := os.Getenv(Env)
	if path == "" {
		return nil
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("%s=%s: %w", Env, path, err)
	}
	// One write per line: O_APPEND keeps lines from two benchmark
	// processes whole.
	_, err = out.Write(append(b, '\n'))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// Read parses a figures file; a line that is not a figure is an error
// naming it.
func Read(r io.Reader) ([]Figure, error) {
	var out []Figure
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var f Figure
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			return nil, fmt.Errorf("figures line %d: %w", n, err)
		}
		if f.Figure == "" {
			return nil, fmt.Errorf("figures line %d: no figure name", n)
		}
		out = append(out, f)
	}
	return out, sc.Err()
}

// Table writes figs as one Markdown table: figure, correo, baseline,
// ratio, target. A figure recorded twice against the same baseline (a
// benchmark run again) keeps its last value.
func Table(w io.Writer, figs []Figure) error {
	type key struct{ bench, figure, baseline string }
	last := map[key]int{}
	var order []key
	for i, f := range figs {
		k := key{f.Bench, f.Figure, f.BaselineName}
		if _, ok := last[k]; !ok {
			order = append(order, k)
		}
		last[k] = i
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "| figure | correo | baseline | ratio | target |")
	fmt.Fprintln(bw, "|---|---|---|---|---|")
	for _, k := range order {
		f := figs[last[k]]
		base, ratio := "", ""
		if f.Baseline != 0 {
			base = num(f.Baseline) + " " + f.Unit + " (" + f.BaselineName + ")"
			ratio = strconv.FormatFloat(f.Ratio(), 'f', 2, 64)
			if f.Ratio() < 0.01 {
				ratio = strconv.FormatFloat(f.Ratio(), 'g', 2, 64)
			}
		}
		target := f.Target()
		if met, ok := f.Met(); ok {
			if met {
				target += " ✓"
			} else {
				target += " ✗"
			}
		}
		fmt.Fprintf(bw, "| %s (%s) | %s %s | %s | %s | %s |\n", esc(f.Figure), f.Bench, num(f.Correo), f.Unit, esc(base), ratio, target)
	}
	return bw.Flush()
}

// num prints a figure with about three significant digits.
func num(v float64) string {
	switch a := abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func esc(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// ScaleEnv names the file RecordScale appends to (make scale-bench).
const ScaleEnv = "CORREO_SCALE_DATA"

// RecordScale appends one point of a scaling curve, "series x y", to the
// file named by CORREO_SCALE_DATA, if set: gnuplot reads it as it is
// (docs/scaling.gp). series is one word.
func RecordScale(series string, x, y float64) error {
	path := os.Getenv(ScaleEnv)
	if path == "" {
		return nil
	}
	if series == "" || strings.ContainsAny(series, " \t\n") {
		return fmt.Errorf("scaling series %q: want one word", series)
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("%s=%s: %w", ScaleEnv, path, err)
	}
	_, err = fmt.Fprintf(out, "%s %g %g\n", series, x, y)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
