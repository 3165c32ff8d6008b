package directory

import (
	"errors"
	"fmt"

	"correo/src/cluster"
	"correo/src/mailbox"
)

// StorageHost is a storage host as placement sees it, in profile order.
type StorageHost struct {
	Name   string
	Weight int
}

// StorageHosts lists p's storage hosts in profile order with their weights.
func StorageHosts(p *cluster.Profile) []StorageHost {
	var hs []StorageHost
	for _, h := range p.HostsWithRole(cluster.RoleStorage) {
		w := cluster.DefaultStorageWeight
		if h.Storage != nil && h.Storage.Weight > 0 {
			w = h.Storage.Weight
		}
		hs = append(hs, StorageHost{Name: h.Name, Weight: w})
	}
	return hs
}

// Place chooses the storage host for a NEW user. It is consulted only when
// a user is created without one: an existing user's Storage is never
// recomputed, so adding a storage host moves nobody (moving a mailbox is
// an explicit operation).
//
// Policies (cluster.PlacementLetters, cluster.PlacementLeastUsers):
//
//   - "letters", the paper's rule: the 26 letters a..z are split into
//     contiguous ranges over the hosts in profile order, each range sized by
//     the host's share of the total weight (host i gets the letters from
//     floor(26·W(i-1)/W) to floor(26·Wi/W), Wi the cumulative weight). A
//     name starting with a digit, '_' or any other non-letter goes with 'a'
//     (these sort before the letters, so the ranges stay contiguous in name
//     order). A host whose share is under 1/26 may get no letter.
//   - "least-users": the host with the smallest count/weight (counts as from
//     Index.CountByStorage; ties go to the earlier host in profile order).
func Place(policy string, hosts []StorageHost, counts map[string]int, name string) (string, error) {
	if len(hosts) == 0 {
		return "", errors.New("placement: no storage hosts")
	}
	total := 0
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		if h.Weight <= 0 {
			return "", fmt.Errorf("placement: storage host %q has weight %d, must be positive", h.Name, h.Weight)
		}
		if h.Name == "" || seen[h.Name] {
			return "", fmt.Errorf("placement: storage host name %q empty or repeated", h.Name)
		}
		seen[h.Name] = true
		total += h.Weight
	}
	switch policy {
	case cluster.PlacementLetters:
		n, err := mailbox.NormalizeName(name)
		if err != nil {
			return "", err
		}
		letter := 0
		if c := n[0]; 'a' <= c && c <= 'z' {
			letter = int(c - 'a')
		}
		cum := 0
		for _, h := range hosts {
			start := 26 * cum / total
			cum += h.Weight
			end := 26 * cum / total
			if start <= letter && letter < end {
				return h.Name, nil
			}
		}
		return hosts[len(hosts)-1].Name, nil // unreachable: the last end is 26
	case cluster.PlacementLeastUsers:
		best := 0
		for i := 1; i < len(hosts); i++ {
			// counts[i]/w[i] < counts[best]/w[best], without division
			if int64(counts[hosts[i].Name])*int64(hosts[best].Weight) < int64(counts[hosts[best].Name])*int64(hosts[i].Weight) {
				best = i
			}
		}
		return hosts[best].Name, nil
	}
	return "", fmt.Errorf("placement: unknown policy %q (expected %q or %q)", policy, cluster.PlacementLetters, cluster.PlacementLeastUsers)
}

// AssignStorage fills in Storage for the users that have none, with Place,
// counting the batch's users (placed or not) on top of counts (users
// outside the batch; may be nil, not modified) so least-users spreads a
// batch. Users that have a Storage keep it.
func AssignStorage(users []User, policy string, hosts []StorageHost, counts map[string]int) error {
	c := make(map[string]int, len(hosts))
	for k, v := range counts {
		c[k] = v
	}
	for _, u := range users {
		if u.Storage != "" {
			c[u.Storage]++
		}
	}
	for i := range users {
		if users[i].Storage != "" {
			continue
		}
		h, err := Place(policy, hosts, c, users[i].Name)
		if err != nil {
			return fmt.Errorf("user %q: %w", users[i].Name, err)
		}
		users[i].Storage = h
		c[h]++
	}
	return nil
}
