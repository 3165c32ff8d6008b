package mailmove

import (
	"reflect"
	"testing"
)

func TestPlanDrain(t *testing.T) {
	hosts := []HostLoad{
		{Host: "s1", Capacity: 1000, Users: []UserSize{{"a", 100}, {"b", 300}, {"c", 50}}},
		{Host: "s2", Capacity: 1000, Users: []UserSize{{"d", 200}}},
		{Host: "s3", Capacity: 2000, Users: []UserSize{{"e", 200}}},
	}
	plan, err := PlanDrain(hosts, "s1")
	if err != nil {
		t.Fatal(err)
	}
	// Biggest first, each to the host least full after it: b (300) to s3
	// (0.25 vs 0.5), a (100) to s3 (0.30 vs 0.30: the first wins... s2
	// is 0.30 too, s2 comes first only if strictly less), c to s2.
	want := []PlannedMove{{"b", "s1", "s3", 300}, {"a", "s1", "s2", 100}, {"c", "s1", "s3", 50}}
	if !reflect.DeepEqual(plan, want) {
		t.Errorf("plan %v\nwant %v", plan, want)
	}
	if _, err := PlanDrain(hosts, "s9"); err == nil {
		t.Error("draining an unknown host must fail")
	}
	if _, err := PlanDrain(hosts[:1], "s1"); err == nil {
		t.Error("draining the only host must fail")
	}
}

func TestPlanRebalance(t *testing.T) {
	tests := []struct {
		name   string
		hosts  []HostLoad
		margin float64
		want   []PlannedMove
	}{
		{"balanced already", []HostLoad{
			{Host: "s1", Capacity: 1000, Users: []UserSize{{"a", 100}}},
			{Host: "s2", Capacity: 1000, Users: []UserSize{{"b", 105}}},
		}, 0.1, nil},
		// a to s4 narrows the spread to 350, then f to s4 to 200; no single
		// move narrows it further (greedy: e then b would reach 50).
		{"a new empty host takes the moves that narrow the spread most", []HostLoad{
			{Host: "s1", Capacity: 1000, Users: []UserSize{{"a", 300}, {"b", 200}, {"c", 100}, {"d", 50}}},
			{Host: "s2", Capacity: 1000, Users: []UserSize{{"e", 400}, {"f", 250}}},
			{Host: "s4", Capacity: 1000},
		}, 0.1, []PlannedMove{{"a", "s1", "s4", 300}, {"f", "s2", "s4", 250}}},
		{"capacity counts", []HostLoad{
			{Host: "s1", Capacity: 1000, Users: []UserSize{{"a", 100}, {"b", 100}, {"c", 100}}},
			{Host: "big", Capacity: 3000},
		}, 0.1, []PlannedMove{{"a", "s1", "big", 100}, {"b", "s1", "big", 100}}},
		{"one mailbox bigger than any gain stays", []HostLoad{
			{Host: "s1", Capacity: 1000, Users: []UserSize{{"huge", 900}}},
			{Host: "s2", Capacity: 1000, Users: []UserSize{{"x", 10}}},
		}, 0.1, nil},
		{"empty mailboxes are not moved", []HostLoad{
			{Host: "s1", Capacity: 1000, Users: []UserSize{{"a", 0}, {"b", 0}, {"c", 500}}},
			{Host: "s2", Capacity: 1000},
		}, 0.1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanRebalance(tt.hosts, tt.margin)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("plan %v\nwant %v", got, tt.want)
			}
			before, _ := Spread(tt.hosts, nil)
			for i := range got {
				after, _ := Spread(tt.hosts, got[:i+1])
				if after >= before {
					t.Errorf("move %d (%v) does not narrow the spread: %.3f then %.3f", i, got[i], before, after)
				}
				before = after
			}
		})
	}
}
