package imapwire

import (
	"fmt"
	"testing"
)

func TestParseSeqSet(t *testing.T) {
	tests := []struct {
		in   string
		want string // String() of the result, or "error"
	}{
		{"1", "1"},
		{"1,3:5,7:*", "1,3:5,7:*"},
		{"*", "*"},
		{"*:4", "*:4"},
		{"5:3", "5:3"},
		{"$", "$"},
		{"4294967295", "4294967295"},
		{"1:4294967295", "1:4294967295"},
		{"0", "error"},
		{"1:0", "error"},
		{"4294967296", "error"},
		{"99999999999999999999", "error"},
		{"01", "error"},
		{"", "error"},
		{",", "error"},
		{"1,", "error"},
		{"1:", "error"},
		{":1", "error"},
		{"1:2:3", "error"},
		{"1,$", "error"},
		{"$:3", "error"},
		{"-1", "error"},
		{"+1", "error"},
		{"1 ", "error"},
		{"a", "error"},
	}
	for _, tc := range tests {
		s, err := ParseSeqSet(tc.in)
		got := s.String()
		if err != nil {
			got = "error"
		}
		if got != tc.want {
			t.Errorf("ParseSeqSet(%q) = %q (%v), want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestSeqSetEvaluate(t *testing.T) {
	tests := []struct {
		set    string
		max    uint32
		ranges string
		in     []uint32
		out    []uint32
	}{
		{"1:*", 5, "[{1 5}]", []uint32{1, 5}, []uint32{0, 6}},
		// RFC 9051: "*" on an empty mailbox is no number at all.
		{"1:*", 0, "[]", nil, []uint32{0, 1}},
		{"*", 0, "[]", nil, []uint32{0, 1}},
		{"1:3,*", 0, "[{1 3}]", []uint32{1, 3}, []uint32{4}},
		// "100:*" when the largest UID is 50 is 50:100 (ranges are unordered).
		{"100:*", 50, "[{50 100}]", []uint32{50, 75, 100}, []uint32{49, 101}},
		{"7:5,1,2,3:4,10", 10, "[{1 7} {10 10}]", []uint32{1, 6, 7, 10}, []uint32{8, 9}},
		{"1:4294967295", 3, "[{1 4294967295}]", []uint32{4294967295}, []uint32{0}},
		{"4294967295,1:*", 4294967295, "[{1 4294967295}]", []uint32{1, 4294967295}, nil},
		{"$", 10, "[]", nil, []uint32{1}},
	}
	for _, tc := range tests {
		s, err := ParseSeqSet(tc.set)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(s.Ranges(tc.max)); got != tc.ranges {
			t.Errorf("%q max %d: Ranges = %s, want %s", tc.set, tc.max, got, tc.ranges)
		}
		for _, n := range tc.in {
			if !s.Contains(n, tc.max) {
				t.Errorf("%q max %d: should contain %d", tc.set, tc.max, n)
			}
		}
		for _, n := range tc.out {
			if s.Contains(n, tc.max) {
				t.Errorf("%q max %d: should not contain %d", tc.set, tc.max, n)
			}
		}
	}
}

func TestCheckSeq(t *testing.T) {
	for _, tc := range []struct {
		set   string
		count uint32
		ok    bool
	}{
		{"1:*", 0, false}, {"*", 0, false}, {"1", 0, false}, {"1:*", 3, true}, {"3", 3, true},
		{"4", 3, false}, {"2:4", 3, false}, {"4294967295", 3, false}, {"$", 0, true},
	} {
		s, err := ParseSeqSet(tc.set)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CheckSeq(tc.count); (err == nil) != tc.ok {
			t.Errorf("CheckSeq(%q, %d) = %v", tc.set, tc.count, err)
		}
	}
}
