// Package loadstat keeps a load generator's figures: a latency histogram
// that stays small and exact enough at any count (HDR-style: log-linear
// buckets), a recorder that counts results by kind and error, and the
// scheduler that runs operations open-loop (at a target rate) or
// closed-loop (at a concurrency).
package loadstat

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the precision: every power of two is split into 2^subBits
// buckets, so a quantile is within 1/128 (under 0.8 %) of the true value
// whatever the scale, from nanoseconds to hours, in a fixed 60 KB. A
// sorted sample would be exact but grows with the run; a load tool that
// runs for hours at 100 k ops/s must not.
const (
	subBits  = 7
	subCount = 1 << subBits
	// Values below 2*subCount have a bucket each (exact).
	exactLimit = 2 * subCount
	maxShift   = 63 - subBits - 1
	numBuckets = exactLimit + maxShift*subCount
)

// Histogram records durations. The zero value is ready to use; it is not
// safe for concurrent use (Recorder guards its own).
type Histogram struct {
	counts   []uint64
	n        uint64
	min, max int64
	sum      float64
}

func bucketOf(v int64) int {
	if v < exactLimit {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - (subBits + 1)
	mant := v >> shift
	return exactLimit + (shift-1)*subCount + int(mant-subCount)
}

// highest is the largest value that falls in bucket i.
func highest(i int) int64 {
	if i < exactLimit {
		return int64(i)
	}
	shift := (i-exactLimit)/subCount + 1
	mant := int64((i-exactLimit)%subCount + subCount)
	return (mant+1)<<shift - 1
}

// Record adds one duration; negative ones count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds o's records to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of records.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest record, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Min is the smallest record, exactly.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Mean is the average record.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile is the value at or below which the fraction q of the records
// fall (q in [0, 1]): the highest value of the bucket holding that rank,
// never above the exact maximum, so a reported p99 is never optimistic.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	q = math.Min(math.Max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(max(highest(i), h.min), h.max))
		}
	}
	return time.Duration(h.max)
}
