package pwserver

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

func TestLimiterLocksAndGrows(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l := NewLimiter(LimitPolicy{MaxFailures: 3, Window: time.Minute, Lockout: 10 * time.Second, MaxLockout: 35 * time.Second, MaxEntries: 1000})
	l.now = clk.now
	for i := 1; i <= 2; i++ {
		if l.Fail("juan") || l.Locked("juan") {
			t.Fatalf("locked after %d failures", i)
		}
	}
	if !l.Fail("juan") || !l.Locked("juan") {
		t.Fatal("not locked after 3 failures")
	}
	if l.Locked("maria") {
		t.Fatal("another key locked")
	}
	clk.add(11 * time.Second)
	if l.Locked("juan") {
		t.Fatal("still locked after the first lockout")
	}
	// A further failure doubles the lock: 20 s.
	l.Fail("juan")
	clk.add(15 * time.Second)
	if !l.Locked("juan") {
		t.Fatal("second lock did not double")
	}
	clk.add(6 * time.Second)
	if l.Locked("juan") {
		t.Fatal("second lock longer than 20 s")
	}
	// The cap: 35 s however many failures.
	for i := 0; i < 10; i++ {
		l.Fail("juan")
	}
	clk.add(36 * time.Second)
	if l.Locked("juan") {
		t.Fatal("lock exceeds MaxLockout")
	}
	// Failures older than the window are forgotten.
	clk.add(2 * time.Minute)
	if l.Fail("juan") {
		t.Fatal("old failures were not forgotten")
	}
	l.Succeed("juan")
	if l.Len() != 0 {
		t.Fatalf("Succeed left %d entries", l.Len())
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	l := NewLimiter(LimitPolicy{MaxFailures: 3, Window: time.Hour, Lockout: time.Minute, MaxLockout: time.Hour, MaxEntries: 640})
	for i := 0; i < 100_000; i++ {
		l.Fail(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	if n := l.Len(); n > 640 {
		t.Fatalf("limiter grew to %d entries, bound is 640", n)
	}
}

func TestSourceKey(t *testing.T) {
	tests := map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"not an ip":            "?not an ip",
		"":                     "?",
	}
	for in, want := range tests {
		if got := SourceKey(in); got != want {
			t.Errorf("SourceKey(%q) = %q, want %q", in, got, want)
		}
	}
}
