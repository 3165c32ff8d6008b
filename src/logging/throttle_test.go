package logging

import (
	"testing"
	"time"
)

func TestThrottle(t *testing.T) {
	var th Throttle
	t0 := time.Unix(1_800_000_000, 0)
	if ok, n := th.Allow("a", t0); !ok || n != 0 {
		t.Fatalf("first line: %v %d", ok, n)
	}
	for i := 1; i <= 3; i++ {
		if ok, _ := th.Allow("a", t0.Add(time.Duration(i)*100*time.Millisecond)); ok {
			t.Fatal("second line within the period let through")
		}
	}
	if ok, _ := th.Allow("b", t0); !ok {
		t.Fatal("another kind held back")
	}
	if ok, n := th.Allow("a", t0.Add(time.Second)); !ok || n != 3 {
		t.Fatalf("after the period: %v, suppressed %d, want 3", ok, n)
	}
	slow := Throttle{Every: 10 * time.Second}
	slow.Allow("x", t0)
	if ok, _ := slow.Allow("x", t0.Add(5*time.Second)); ok {
		t.Fatal("Every not honoured")
	}
}
