package mailbox

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"path"
	"sort"
	"strings"
	"text/tabwriter"
)

// LineError is an input line ReadNames could not use.
type LineError struct {
	Line int    // 1-based line number
	Text string // the line as read
	Err  error
}

func (e LineError) Error() string {
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

func (e LineError) Unwrap() error { return e.Err }

// ReadNames reads user names, one per line, or /etc/passwd-format lines whose
// first field is the name. Blank lines and lines starting with '#' are
// skipped. Every name goes through NormalizeName; lines it refuses, and names
// repeated after normalisation, are returned in bad rather than stopping the
// read, so one odd entry in a million-line passwd file does not hide the
// report. err is only for failures reading r.
func ReadNames(r io.Reader) (names []string, bad []LineError, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	first := make(map[string]int)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		s := strings.TrimSpace(text)
		if s == "" || s[0] == '#' {
			continue
		}
		if i := strings.IndexByte(s, ':'); i >= 0 {
			s = s[:i]
		}
		n, nerr := NormalizeName(s)
		if nerr != nil {
			bad = append(bad, LineError{Line: line, Text: text, Err: nerr})
			continue
		}
		if prev, dup := first[n]; dup {
			bad = append(bad, LineError{Line: line, Text: text, Err: fmt.Errorf("user name %q repeats line %d", n, prev)})
			continue
		}
		first[n] = line
		names = append(names, n)
	}
	if err := sc.Err(); err != nil {
		return names, bad, fmt.Errorf("reading user names after line %d: %w", line, err)
	}
	return names, bad, nil
}

// SchemeStats describes how one scheme spreads a set of users over leaf
// directories (the directories that hold the homes, e.g. j/u/a).
type SchemeStats struct {
	Scheme Scheme
	Users  int     // names placed
	Leaves int     // leaf directories holding at least one home
	Mean   float64 // users per used leaf
	P99    int     // 99th percentile (nearest rank) of users per used leaf
	Max    int     // users in the fullest leaf
	StdDev float64 // population standard deviation of users per used leaf
}

// LayoutReport computes, for each scheme, how evenly it spreads names over
// leaf directories: the paper's Fig. 4 comparison. A big Max against a small
// Mean is the directory that gets slow to scan. Names a scheme refuses are
// left out of its counts (ReadNames only returns valid ones).
func LayoutReport(names []string, schemes []Scheme) []SchemeStats {
	out := make([]SchemeStats, 0, len(schemes))
	for _, sc := range schemes {
		leaves := make(map[string]int)
		st := SchemeStats{Scheme: sc}
		for _, n := range names {
			d, err := sc.Dir(n)
			if err != nil {
				continue
			}
			leaves[path.Dir(d)]++
			st.Users++
		}
		st.Leaves = len(leaves)
		if st.Leaves > 0 {
			counts := make([]int, 0, len(leaves))
			for _, c := range leaves {
				counts = append(counts, c)
			}
			sort.Ints(counts)
			st.Mean = float64(st.Users) / float64(st.Leaves)
			rank := int(math.Ceil(0.99 * float64(len(counts))))
			st.P99 = counts[rank-1]
			st.Max = counts[len(counts)-1]
			var ss float64
			for _, c := range counts {
				d := float64(c) - st.Mean
				ss += d * d
			}
			st.StdDev = math.Sqrt(ss / float64(len(counts)))
		}
		out = append(out, st)
	}
	return out
}

// WriteReport prints stats as an aligned table.
func WriteReport(w io.Writer, stats []SchemeStats) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scheme\tusers\tleaves\tmean/leaf\tp99/leaf\tmax/leaf\tstddev")
	for _, s := range stats {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%d\t%d\t%.2f\n",
			s.Scheme, s.Users, s.Leaves, s.Mean, s.P99, s.Max, s.StdDev)
	}
	return tw.Flush()
}
