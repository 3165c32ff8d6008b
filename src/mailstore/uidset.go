package mailstore

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// UIDRange is Lo:Hi inclusive.
type UIDRange struct{ Lo, Hi uint32 }

// UIDSet is a sorted list of disjoint, non-adjacent ranges: the compact
// form IMAP sends in COPYUID and VANISHED.
type UIDSet []UIDRange

// SetOf builds a set from UIDs in any order.
func SetOf(uids []uint32) UIDSet {
	if len(uids) == 0 {
		return nil
	}
	s := append([]uint32(nil), uids...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var out UIDSet
	for _, u := range s {
		if n := len(out); n > 0 && uint64(u) <= uint64(out[n-1].Hi)+1 {
			if u > out[n-1].Hi {
				out[n-1].Hi = u
			}
			continue
		}
		out = append(out, UIDRange{u, u})
	}
	return out
}

// UIDs lists the members in order.
func (s UIDSet) UIDs() []uint32 {
	var out []uint32
	for _, r := range s {
		for u := r.Lo; ; u++ {
			out = append(out, u)
			if u == r.Hi {
				break
			}
		}
	}
	return out
}

// Contains reports whether uid is in the set.
func (s UIDSet) Contains(uid uint32) bool {
	i := sort.Search(len(s), func(i int) bool { return s[i].Hi >= uid })
	return i < len(s) && s[i].Lo <= uid
}

// Intersect is the UIDs in both sets, computed on the ranges (a range
// of a billion UIDs costs one step).
func (s UIDSet) Intersect(t UIDSet) UIDSet {
	var out UIDSet
	for i, j := 0, 0; i < len(s) && j < len(t); {
		lo, hi := max(s[i].Lo, t[j].Lo), min(s[i].Hi, t[j].Hi)
		if lo <= hi {
			out = append(out, UIDRange{lo, hi})
		}
		if s[i].Hi < t[j].Hi {
			i++
		} else {
			j++
		}
	}
	return out
}

// String is IMAP's sequence-set syntax, "1:3,7".
func (s UIDSet) String() string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(r.Lo), 10))
		if r.Hi != r.Lo {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(r.Hi), 10))
		}
	}
	return b.String()
}

// parseUIDSet reads what String writes, strictly: ascending, disjoint,
// no zero.
func parseUIDSet(s string) (UIDSet, error) {
	var out UIDSet
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		l, err := strconv.ParseUint(lo, 10, 32)
		if err != nil || l == 0 {
			return nil, fmt.Errorf("bad UID %q in set %q", lo, s)
		}
		h := l
		if isRange {
			h, err = strconv.ParseUint(hi, 10, 32)
			if err != nil || h <= l {
				return nil, fmt.Errorf("bad range %q in set %q", part, s)
			}
		}
		if n := len(out); n > 0 && l <= uint64(out[n-1].Hi)+1 {
			return nil, fmt.Errorf("set %q is not ascending and disjoint", s)
		}
		out = append(out, UIDRange{uint32(l), uint32(h)})
	}
	return out, nil
}

// size counts the members.
func (s UIDSet) size() int {
	n := 0
	for _, r := range s {
		n += int(r.Hi-r.Lo) + 1
	}
	return n
}
