package logging

import (
	"sync"
	"time"
)

// Throttle lets one log line of each kind through per period and counts
// the ones it holds back, so a client sending garbage in a loop (or a
// flood of forged datagrams) cannot flood the log; the next line that
// passes reports how many were suppressed. The zero value allows one
// line per second per kind.
type Throttle struct {
	Every time.Duration

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

// Allow reports whether a line of the given kind may be logged now and,
// if so, how many of its kind were held back since the last one.
func (t *Throttle) Allow(kind string, now time.Time) (ok bool, suppressed int) {
	every := t.Every
	if every <= 0 {
		every = time.Second
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == nil {
		t.last, t.suppressed = map[string]time.Time{}, map[string]int{}
	}
	if last, seen := t.last[kind]; seen && now.Sub(last) < every {
		t.suppressed[kind]++
		return false, 0
	}
	t.last[kind] = now
	n := t.suppressed[kind]
	t.suppressed[kind] = 0
	return true, n
}
