package mailmove

import "time"

// limiter paces a copy to a rate in bytes per second, so that a move
// leaves the disks and the network to mail (cluster.moves.rate_limit_mb).
type limiter struct {
	rate  int64
	start time.Time
	sent  int64
}

func newLimiter(rate int64) *limiter { return &limiter{rate: rate, start: time.Now()} }

// wait accounts n more bytes and sleeps while the copy is ahead of the
// rate.
func (l *limiter) wait(n int64) {
	if l.rate <= 0 {
		return
	}
	l.sent += n
	due := l.start.Add(time.Duration(float64(l.sent) / float64(l.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}

// chunk is how much to read before the next wait: small enough that a
// slow rate is paced within a fraction of a second, not per 256 KiB.
func (l *limiter) chunk() int {
	if l.rate <= 0 {
		return chunkSize
	}
	return int(max(4096, min(int64(chunkSize), l.rate/10)))
}
