package pwserver

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// LimitPolicy says how failed logins are throttled. Defaults follow common
// ISP practice: a user who mistypes a few times is not bothered, a
// password-guessing run is stopped within a handful of tries and the lock
// grows while it keeps trying.
type LimitPolicy struct {
	MaxFailures int           // failures within Window before locking
	Window      time.Duration // failures older than this are forgotten
	Lockout     time.Duration // first lock; doubles per further failure
	MaxLockout  time.Duration // cap on the lock
	MaxEntries  int           // memory bound across all shards
}

// DefaultUserPolicy throttles guessing one user's password from anywhere.
var DefaultUserPolicy = LimitPolicy{MaxFailures: 5, Window: 15 * time.Minute, Lockout: time.Minute, MaxLockout: 30 * time.Minute, MaxEntries: 200_000}

// DefaultSourcePolicy throttles one client address guessing many users'
// passwords (password spraying); it allows more failures, as many users
// may share an address behind NAT.
var DefaultSourcePolicy = LimitPolicy{MaxFailures: 30, Window: 15 * time.Minute, Lockout: time.Minute, MaxLockout: 30 * time.Minute, MaxEntries: 200_000}

const limiterShards = 64

// Limiter counts failures per key and says when a key is locked out. Its
// memory is bounded: when a shard is full, expired entries are swept and,
// failing that, the oldest entry is dropped — an attacker who floods it
// with keys can at worst make it forget, never make it grow.
type Limiter struct {
	policy LimitPolicy
	seed   maphash.Seed
	shards [limiterShards]limiterShard
	now    func() time.Time
}

type limiterShard struct {
	mu sync.Mutex
	m  map[string]*limitEntry
}

type limitEntry struct {
	fails       int
	first, last time.Time
	lockedUntil time.Time
}

// NewLimiter makes a limiter with the given policy.
func NewLimiter(p LimitPolicy) *Limiter {
	l := &Limiter{policy: p, seed: maphash.MakeSeed(), now: time.Now}
	for i := range l.shards {
		l.shards[i].m = map[string]*limitEntry{}
	}
	return l
}

func (l *Limiter) shard(key string) *limiterShard {
	return &l.shards[maphash.String(l.seed, key)%limiterShards]
}

// Locked reports whether key is locked out now.
func (l *Limiter) Locked(key string) bool {
	s := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	return ok && l.now().Before(e.lockedUntil)
}

// Fail records a failed login for key and reports whether it is now locked.
func (l *Limiter) Fail(key string) bool {
	now := l.now()
	s := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok || (now.Sub(e.last) > l.policy.Window && !now.Before(e.lockedUntil)) {
		if !ok && len(s.m) >= l.policy.MaxEntries/limiterShards {
			l.evict(s, now)
		}
		e = &limitEntry{first: now}
		s.m[key] = e
	}
	e.fails++
	e.last = now
	if e.fails >= l.policy.MaxFailures {
		lock := l.policy.Lockout
		for i := l.policy.MaxFailures; i < e.fails && lock < l.policy.MaxLockout; i++ {
			lock *= 2
		}
		if lock > l.policy.MaxLockout {
			lock = l.policy.MaxLockout
		}
		e.lockedUntil = now.Add(lock)
		return true
	}
	return false
}

// Succeed forgets key's failures after a good login.
func (l *Limiter) Succeed(key string) {
	s := l.shard(key)
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}

// Len is the number of keys tracked, for stats.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// evict makes room in a full shard: expired entries first, else the one
// whose last failure is oldest.
func (l *Limiter) evict(s *limiterShard, now time.Time) {
	var oldestKey string
	var oldest time.Time
	for k, e := range s.m {
		if now.Sub(e.last) > l.policy.Window && !now.Before(e.lockedUntil) {
			delete(s.m, k)
			continue
		}
		if oldestKey == "" || e.last.Before(oldest) {
			oldestKey, oldest = k, e.last
		}
	}
	if len(s.m) >= l.policy.MaxEntries/limiterShards && oldestKey != "" {
		delete(s.m, oldestKey)
	}
}

// SourceKey groups client addresses the way attackers get them: one IPv4
// address, or one IPv6 /64 (a single customer's prefix).
func SourceKey(client string) string {
	a, err := netip.ParseAddr(client)
	if err != nil {
		return "?" + client
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
