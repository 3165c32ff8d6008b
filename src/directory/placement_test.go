package directory

import (
	"fmt"
	"strings"
	"testing"

	"correo/src/cluster"
)

func TestPlaceLetters(t *testing.T) {
	three := []StorageHost{{"s1", 1}, {"s2", 1}, {"s3", 1}}
	tests := []struct {
		hosts []StorageHost
		name  string
		want  string
	}{
		{three, "ana", "s1"},
		{three, "Hector", "s1"}, // a..h (0-7): floor(26/3)=8
		{three, "ines", "s2"},
		{three, "pedro", "s2"}, // i..q (8-16)
		{three, "rosa", "s3"},
		{three, "zoe", "s3"},
		{three, "9lives", "s1"}, // digits go with 'a'
		{three, "_x", "s1"},
		{[]StorageHost{{"big", 3}, {"small", 1}}, "s", "big"}, // 0..19 (floor(78/4)=19)
		{[]StorageHost{{"big", 3}, {"small", 1}}, "t", "small"},
		{[]StorageHost{{"only", 1}}, "zz", "only"},
	}
	for _, tt := range tests {
		got, err := Place(cluster.PlacementLetters, tt.hosts, nil, tt.name)
		if err != nil || got != tt.want {
			t.Errorf("letters %v %q = %q, %v; want %q", tt.hosts, tt.name, got, err, tt.want)
		}
	}
	// Every letter lands somewhere, in contiguous ranges in host order.
	prev := 0
	for c := 'a'; c <= 'z'; c++ {
		h, _ := Place(cluster.PlacementLetters, three, nil, string(c))
		i := int(h[1] - '1')
		if i < prev {
			t.Fatalf("letter %c on %s: ranges not contiguous", c, h)
		}
		prev = i
	}
}

func TestPlaceLeastUsers(t *testing.T) {
	hosts := []StorageHost{{"s1", 1}, {"s2", 2}, {"s3", 1}}
	tests := []struct {
		counts map[string]int
		want   string
	}{
		{nil, "s1"}, // all zero: profile order
		{map[string]int{"s1": 1}, "s2"},
		{map[string]int{"s1": 1, "s2": 1, "s3": 1}, "s2"}, // 1/2 < 1/1
		{map[string]int{"s1": 1, "s2": 2, "s3": 1}, "s1"}, // tie 1/1 = 2/2 = 1/1: first
		{map[string]int{"s1": 5, "s2": 9, "s3": 4}, "s3"},
	}
	for _, tt := range tests {
		got, err := Place(cluster.PlacementLeastUsers, hosts, tt.counts, "x")
		if err != nil || got != tt.want {
			t.Errorf("least-users %v = %q, %v; want %q", tt.counts, got, err, tt.want)
		}
	}
}

func TestPlaceErrors(t *testing.T) {
	for _, tt := range []struct {
		policy string
		hosts  []StorageHost
		name   string
		want   string
	}{
		{"letters", nil, "a", "no storage hosts"},
		{"random", []StorageHost{{"s", 1}}, "a", "unknown policy"},
		{"letters", []StorageHost{{"s", 0}}, "a", "weight 0"},
		{"letters", []StorageHost{{"s", 1}, {"s", 1}}, "a", "repeated"},
		{"letters", []StorageHost{{"s", 1}}, "../a", "invalid user name"},
	} {
		if _, err := Place(tt.policy, tt.hosts, nil, tt.name); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt, err, tt.want)
		}
	}
}

// Adding a storage host moves nobody: only users without a host are placed.
func TestAddingHostMovesNobody(t *testing.T) {
	for _, policy := range []string{cluster.PlacementLetters, cluster.PlacementLeastUsers} {
		users := sampleUsers(3000, 2)
		for i := range users {
			users[i].Storage = ""
		}
		two := []StorageHost{{"s1", 1}, {"s2", 1}}
		if err := AssignStorage(users, policy, two, nil); err != nil {
			t.Fatal(err)
		}
		before := map[string]string{}
		for _, u := range users {
			before[u.Name] = u.Storage
		}
		ix := mustBuild(t, users)
		// The profile grows; existing users are not re-placed, new ones are.
		three := append(two, StorageHost{"s3", 2})
		newcomers := make([]User, 300)
		for i := range newcomers {
			newcomers[i] = User{Name: fmt.Sprintf("new%d", i), UID: uint32(900000 + i)}
		}
		all := append(ix.All(), newcomers...)
		if err := AssignStorage(all, policy, three, nil); err != nil {
			t.Fatal(err)
		}
		onNew := 0
		for _, u := range all {
			if b, ok := before[u.Name]; ok && b != u.Storage {
				t.Fatalf("%s: user %s moved from %s to %s", policy, u.Name, b, u.Storage)
			}
			if u.Storage == "s3" {
				onNew++
			}
		}
		if policy == cluster.PlacementLeastUsers && onNew != 300 {
			t.Errorf("least-users put %d of 300 newcomers on the empty host", onNew)
		}
	}
}

func TestStorageHostsFromProfile(t *testing.T) {
	p, err := cluster.Load("../../hosts/example.toml", cluster.Options{SkipFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	hs := StorageHosts(p)
	if len(hs) == 0 {
		t.Fatal("no storage hosts in example.toml")
	}
	for _, h := range hs {
		if h.Weight <= 0 {
			t.Errorf("%v", h)
		}
	}
	t.Logf("%v", hs)
}
