// Package usersample makes realistic user names for an Argentine ISP of
// around 2000, for tests, load tools and the layout report. Real login names
// are skewed — many start with "ma", "ju", "jo" — and that skew is what makes
// a first-letters directory layout uneven, so uniform random strings would
// hide the very problem the layout report is meant to show.
package usersample

import (
	_ "embed"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
)

//go:embed firstnames.txt
var firstNamesText string

//go:embed surnames.txt
var surnamesText string

// Nicknames people chose when the ISP let them (apodos); a few per thousand.
var nicknames = []string{
	"pato", "tato", "chino", "flaco", "negro", "gordo", "pupi", "kike", "pepe",
	"lucho", "nacho", "coco", "toto", "cacho", "beto", "fede", "maxi", "gabi",
	"santi", "pancho", "quique", "lalo", "tino", "tito", "mono", "colo", "rulo",
	"pipo", "chacho", "lola", "pochi", "mimi", "cuqui", "nena", "rama", "tucu",
	"cordobes", "gaucho", "tango", "boca", "river", "racing", "elflaco",
}

type weighted struct {
	words []string
	cum   []float64 // cumulative weights
}

// newWeighted gives the i-th word (most common first) a weight of
// 1/(i+8): a gentle Zipf tail, so "juan" and "maria" are common without
// drowning out the rest.
func newWeighted(text string) weighted {
	var w weighted
	total := 0.0
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		total += 1 / float64(len(w.words)+8)
		w.words = append(w.words, line)
		w.cum = append(w.cum, total)
	}
	return w
}

func (w weighted) pick(r *rand.Rand) string {
	x := r.Float64() * w.cum[len(w.cum)-1]
	i := sort.SearchFloat64s(w.cum, x)
	if i >= len(w.words) {
		i = len(w.words) - 1
	}
	return w.words[i]
}

var (
	firstNames = newWeighted(firstNamesText)
	surnames   = newWeighted(surnamesText)
)

// Generate returns n distinct login names, the same for the same seed. Each
// is valid for mailbox.NormalizeName (lower-case a-z 0-9 . _, at most 64
// bytes). Patterns follow what ISP customers picked: jperez, juan.perez,
// juanp, juan72, perezj, juan_perez, jmperez, juanperez and nicknames; a
// taken name gets the lowest free number appended (jperez2), as sign-up
// forms did.
func Generate(n int, seed int64) []string {
	if n <= 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(uint64(seed), 0x636f7272656f)) // "correo"
	out := make([]string, 0, n)
	taken := make(map[string]bool, n)
	nextSuffix := make(map[string]int)
	for len(out) < n {
		base := candidate(r)
		name := base
		if taken[name] {
			k := nextSuffix[base]
			if k < 2 {
				k = 2
			}
			for taken[base+strconv.Itoa(k)] {
				k++
			}
			name = base + strconv.Itoa(k)
			nextSuffix[base] = k + 1
		}
		taken[name] = true
		out = append(out, name)
	}
	return out
}

func candidate(r *rand.Rand) string {
	first := firstNames.pick(r)
	last := surnames.pick(r)
	p := r.Float64()
	switch {
	case p < 0.30:
		return first[:1] + last
	case p < 0.42:
		return first + "." + last
	case p < 0.52:
		return first + last[:1]
	case p < 0.66:
		if r.IntN(3) == 0 {
			return first + strconv.Itoa(1+r.IntN(999))
		}
		return first + strconv.Itoa(50+r.IntN(40)) // birth year
	case p < 0.74:
		return last + first[:1]
	case p < 0.79:
		return first + "_" + last
	case p < 0.85:
		second := firstNames.pick(r)
		return first[:1] + second[:1] + last
	case p < 0.91:
		return first + last
	default:
		nick := nicknames[r.IntN(len(nicknames))]
		if r.IntN(2) == 0 {
			return nick + strconv.Itoa(r.IntN(100))
		}
		return nick
	}
}
