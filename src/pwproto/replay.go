package pwproto

import (
	"hash/maphash"
	"sync"
	"time"
)

// ReplayFilter remembers the (key id, nonce) of every admitted request for
// as long as its timestamp is inside Window, and rejects a second copy: a
// captured request replayed by an attacker within the window gets no
// answer. Requests outside the window never reach it (ErrStale).
//
// Entries are bucketed by the request's own timestamp, not by arrival
// time, so an entry is kept exactly as long as its copies could still pass
// the stale check (until timestamp + Window), even from a client whose
// clock runs ahead. Each bucket spans Window/4; a bucket is released once
// all of its timestamps are stale. At a steady rate with synchronised
// clocks about 1.25 × Window of requests are held. Each costs ~28 bytes of
// heap (an 8-byte hash in a Go map, measured by TestReplayFilterMemory), so
// at a sustained 100 k requests/s with Window = 30 s the filter holds
// ~3.75 M entries ≈ 106 MB; at 10 k/s ≈ 11 MB. Sharding keeps lock
// contention low.
//
// Entries are a 64-bit keyed hash of (key id, nonce) with a secret random
// seed: a false "replay" between two different requests needs a 64-bit
// collision among a few million entries (odds ~1e-6 per window), and costs
// one retransmission.
type ReplayFilter struct {
	seed   maphash.Seed
	shards [replayShards]replayShard
}

const (
	replayShards = 64
	bucketSpan   = Window / 4
	// A bucket slot is reused N spans later. An entry must survive until
	// its timestamp plus Window while timestamps up to now+Window arrive,
	// so the ring must cover 2·Window + one span: 9 slots; one more for the
	// millisecond edges.
	replayBuckets = int(2*Window/bucketSpan) + 2
)

type replayShard struct {
	mu      sync.Mutex
	buckets [replayBuckets]replayBucket
	_       [64]byte // keep shards on separate cache lines
}

type replayBucket struct {
	n   int64 // bucket number: timestamp / bucketSpan
	set map[uint64]struct{}
}

// NewReplayFilter returns an empty filter, safe for concurrent use.
func NewReplayFilter() *ReplayFilter {
	return &ReplayFilter{seed: maphash.MakeSeed()}
}

// Admit records the request and reports whether it is the first copy seen.
// Call it after OpenRequestTo succeeded (or returned ErrUnknownOp /
// ErrMalformed), with the same now, and drop the datagram without an
// answer when it returns false. Calling it before authentication would let
// anyone fill it with forged entries.
func (f *ReplayFilter) Admit(r *Request, now time.Time) bool {
	var k [1 + NonceSize]byte
	k[0] = r.KeyID
	copy(k[1:], r.Nonce[:])
	h := maphash.Bytes(f.seed, k[:])
	s := &f.shards[h>>58] // top 6 bits: 64 shards

	span := bucketSpan.Milliseconds()
	n := r.Time.UnixMilli() / span
	// Buckets whose every timestamp is older than now-Window hold nothing
	// that could still pass the stale check.
	staleBelow := (now.UnixMilli()-Window.Milliseconds())/span - 1

	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= staleBelow {
		return false // too old for the ring; OpenRequestTo would have said ErrStale
	}
	for i := range s.buckets {
		if b := &s.buckets[i]; b.set != nil && b.n <= staleBelow {
			b.set = nil // release the memory; the GC takes it back
		}
	}
	b := &s.buckets[int(uint64(n)%uint64(replayBuckets))]
	if b.set == nil || b.n != n {
		if b.set != nil && b.n > n {
			// The slot already holds a newer span: the timestamp is
			// older than the ring covers, which the stale check
			// excludes. Refuse rather than forget newer entries.
			return false
		}
		b.n = n
		b.set = make(map[uint64]struct{}, 64)
	}
	if _, dup := b.set[h]; dup {
		return false
	}
	b.set[h] = struct{}{}
	return true
}

// Len is the number of remembered requests (for stats and tests).
func (f *ReplayFilter) Len() int {
	total := 0
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		for _, b := range s.buckets {
			total += len(b.set)
		}
		s.mu.Unlock()
	}
	return total
}
