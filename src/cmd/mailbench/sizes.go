package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// sizeDist is a distribution of message sizes: sizes with weights.
type sizeDist struct {
	sizes   []int
	weights []int
	total   int
}

// parseSize reads "4096", "4k", "2m".
func parseSize(s string) (int, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1<<10, strings.TrimSuffix(t, "k")
	case strings.HasSuffix(t, "m"):
		mult, t = 1<<20, strings.TrimSuffix(t, "m")
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 || n > (64<<20)/mult {
		return 0, fmt.Errorf("message size %q: want a number of bytes from 1 to 64m, with k or m for KiB or MiB", s)
	}
	return n * mult, nil
}

// parseSizeDist reads "4k" (every message 4 KiB) or "2k:60,16k:30,1m:10"
// (sizes with weights: 60 % of 2 KiB ...).
func parseSizeDist(s string) (sizeDist, error) {
	var d sizeDist
	for _, part := range strings.Split(s, ",") {
		sz, w, hasW := strings.Cut(part, ":")
		n, err := parseSize(sz)
		if err != nil {
			return d, err
		}
		weight := 1
		if hasW {
			weight, err = strconv.Atoi(strings.TrimSpace(w))
			if err != nil || weight <= 0 {
				return d, fmt.Errorf("size distribution %q: weight %q must be a positive whole number", s, w)
			}
		}
		d.sizes = append(d.sizes, n)
		d.weights = append(d.weights, weight)
		d.total += weight
	}
	return d, nil
}

func (d sizeDist) pick(r *rand.Rand) int {
	x := r.IntN(d.total)
	for i, w := range d.weights {
		if x < w {
			return d.sizes[i]
		}
		x -= w
	}
	return d.sizes[len(d.sizes)-1]
}

// makeBody builds a message of about size bytes: headers, then lines of
// 76 letters, CRLF-ended, no line starting with a dot (so it needs no
// stuffing).
func makeBody(from, to string, size, seq int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: mailbench %d\r\nMessage-ID: <mb%d.%d@mailbench.invalid>\r\n\r\n", from, to, seq, seq, rand.Uint64())
	line := strings.Repeat("abcdefghijklmnopqrstuvwxyz", 3)[:76] + "\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	if rest := size - b.Len(); rest > 2 {
		b.WriteString(line[:rest-2] + "\r\n")
	}
	return []byte(b.String())
}
