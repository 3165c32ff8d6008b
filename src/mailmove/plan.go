package mailmove

import (
	"fmt"
	"sort"
)

// HostLoad is one storage host as drain and rebalance plan with it.
type HostLoad struct {
	Host string
	// Capacity is the size of the file system holding the data_dir;
	// Used is the mail on it (the sum of Users' bytes), so that hosts
	// sharing a disk with other data, or one file system between them
	// (a test cluster), are still compared by their mail.
	Capacity int64
	Users    []UserSize
}

// UserSize is one mailbox and its bytes (mailbox.Usage).
type UserSize struct {
	User  string
	Bytes int64
}

// PlannedMove is one move of a plan.
type PlannedMove struct {
	User, From, To string
	Bytes          int64
}

func (h *HostLoad) used() int64 {
	var n int64
	for _, u := range h.Users {
		n += u.Bytes
	}
	return n
}

// fill is a host's share of its capacity taken by mail.
func fill(used, capacity int64) float64 {
	if capacity <= 0 {
		return 0
	}
	return float64(used) / float64(capacity)
}

// PlanDrain moves every user off the host drain, biggest first, each to
// the other host that will be the least full after it.
func PlanDrain(hosts []HostLoad, drain string) ([]PlannedMove, error) {
	var from *HostLoad
	used := map[string]int64{}
	var others []*HostLoad
	for i := range hosts {
		h := &hosts[i]
		if h.Host == drain {
			from = h
			continue
		}
		used[h.Host] = h.used()
		others = append(others, h)
	}
	if from == nil {
		return nil, fmt.Errorf("%s is not one of the storage hosts %v", drain, hostNames(hosts))
	}
	if len(others) == 0 {
		return nil, fmt.Errorf("%s is the only storage host: there is nowhere to move its users", drain)
	}
	users := append([]UserSize(nil), from.Users...)
	sort.SliceStable(users, func(i, j int) bool { return users[i].Bytes > users[j].Bytes })
	var plan []PlannedMove
	for _, u := range users {
		best := others[0]
		for _, h := range others[1:] {
			if fill(used[h.Host]+u.Bytes, h.Capacity) < fill(used[best.Host]+u.Bytes, best.Capacity) {
				best = h
			}
		}
		used[best.Host] += u.Bytes
		plan = append(plan, PlannedMove{User: u.User, From: drain, To: best.Host, Bytes: u.Bytes})
	}
	return plan, nil
}

// PlanRebalance moves users to the least full host, one at a time, until
// the spread of the hosts' fill (max - min) is within margin of the mean
// fill (0.1: within 10 %). Each step takes the move, from any host, that
// narrows the spread the most (on a tie, the bigger mailbox), so the
// first moves bring the most; it stops when no move narrows it. It is
// greedy: it may stop above the margin when only moving several
// mailboxes at once would help, and Spread tells where it ends.
func PlanRebalance(hosts []HostLoad, margin float64) []PlannedMove {
	if len(hosts) < 2 {
		return nil
	}
	used := make([]int64, len(hosts))
	users := make([][]UserSize, len(hosts))
	total := 0
	for i := range hosts {
		used[i] = hosts[i].used()
		users[i] = append([]UserSize(nil), hosts[i].Users...)
		total += len(users[i])
	}
	spreadWith := func(from, to int, b int64) float64 {
		lo, hi := 2.0, -1.0
		for i := range hosts {
			u := used[i]
			switch i {
			case from:
				u -= b
			case to:
				u += b
			}
			f := fill(u, hosts[i].Capacity)
			lo, hi = min(lo, f), max(hi, f)
		}
		return hi - lo
	}
	var plan []PlannedMove
	for step := 0; step < total; step++ {
		lo := 0
		var sum float64
		for i := range hosts {
			f := fill(used[i], hosts[i].Capacity)
			sum += f
			if f < fill(used[lo], hosts[lo].Capacity) {
				lo = i
			}
		}
		cur := spreadWith(-1, -1, 0)
		if cur <= margin*sum/float64(len(hosts)) {
			break
		}
		bestHost, bestUser, best := -1, -1, cur
		for i := range hosts {
			if i == lo {
				continue
			}
			for k, u := range users[i] {
				if u.Bytes <= 0 {
					continue
				}
				s := spreadWith(i, lo, u.Bytes)
				if s < best || (s == best && bestHost >= 0 && u.Bytes > users[bestHost][bestUser].Bytes) {
					bestHost, bestUser, best = i, k, s
				}
			}
		}
		if bestHost < 0 {
			break
		}
		u := users[bestHost][bestUser]
		users[bestHost] = append(users[bestHost][:bestUser], users[bestHost][bestUser+1:]...)
		users[lo] = append(users[lo], u)
		used[bestHost] -= u.Bytes
		used[lo] += u.Bytes
		plan = append(plan, PlannedMove{User: u.User, From: hosts[bestHost].Host, To: hosts[lo].Host, Bytes: u.Bytes})
	}
	return plan
}

// Spread is the hosts' fill spread (max - min) and mean once plan is
// carried out.
func Spread(hosts []HostLoad, plan []PlannedMove) (spread, mean float64) {
	used := map[string]int64{}
	for i := range hosts {
		used[hosts[i].Host] = hosts[i].used()
	}
	for _, m := range plan {
		used[m.From] -= m.Bytes
		used[m.To] += m.Bytes
	}
	lo, hi := 2.0, -1.0
	for _, h := range hosts {
		f := fill(used[h.Host], h.Capacity)
		lo, hi = min(lo, f), max(hi, f)
		mean += f
	}
	return hi - lo, mean / float64(len(hosts))
}

func hostNames(hosts []HostLoad) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, h.Host)
	}
	return out
}
