package mailmove

import (
	"testing"
	"time"
)

// The limiter never lets a copy run ahead of its rate (a slower machine
// only makes it later), and costs nothing without one.
func TestLimiter(t *testing.T) {
	l := newLimiter(200_000)
	start := time.Now()
	for i := 0; i < 10; i++ {
		l.wait(10_000) // 100 kB at 200 kB/s: at least half a second
	}
	if el := time.Since(start); el < 450*time.Millisecond {
		t.Errorf("100 kB at 200 kB/s took %s", el)
	}
	if c := l.chunk(); c != 20_000 {
		t.Errorf("chunk at 200 kB/s = %d, want a tenth of a second's worth", c)
	}
	free := newLimiter(0)
	free.wait(1 << 30)
	if free.chunk() != chunkSize {
		t.Error("without a rate the chunk is the frame's")
	}
}
