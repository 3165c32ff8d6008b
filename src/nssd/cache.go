package nssd

import (
	"container/list"

	"correo/src/nssproto"
	"correo/src/nssshm"
	"sync"
	"sync/atomic"
	"time"
)

// cacheKey is a lookup by name (byUID false) or by uid.
type cacheKey struct {
	byUID bool
	name  string
	uid   uint32
}

type cacheEntry struct {
	key     cacheKey
	pw      Passwd
	found   bool // false: a cached "no such user"
	expires time.Time
}

// Cache holds recent answers: positive ones for PositiveTTL, "no such
// user" for NegativeTTL, at most MaxEntries of them, least recently used
// evicted first. Unavailability is never stored. A user found by name is
// also stored under its uid and the other way round, so `ls -l` after
// `id juan` is a hit.
//
// One mutex guards it: a hit costs a map lookup and a list move, far
// below the socket round trip around it, so sharding would buy nothing
// measurable here.
type Cache struct {
	PositiveTTL time.Duration
	NegativeTTL time.Duration
	MaxEntries  int
	now         func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]*list.Element
	lru     list.List // front: most recently used

	hits, misses atomic.Uint64

	// shared, when set (SetShared), mirrors the positive entries into
	// the file the module reads without asking nssd (package nssshm),
	// with the same expiry; a "no such user" withdraws the mirrored
	// entry. Guarded by mu.
	shared *nssshm.Table
}

// SetShared mirrors the cache into t from now on (nil: no longer), and
// returns the table it replaced.
func (c *Cache) SetShared(t *nssshm.Table) *nssshm.Table {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.shared
	c.shared = t
	return old
}

// NewCache returns an empty cache; maxEntries < 1 disables caching.
func NewCache(positive, negative time.Duration, maxEntries int) *Cache {
	return &Cache{PositiveTTL: positive, NegativeTTL: negative, MaxEntries: maxEntries,
		now: time.Now, entries: map[cacheKey]*list.Element{}}
}

// get returns the cached answer for k: ok reports a usable entry, found
// whether it is positive.
func (c *Cache) get(k cacheKey) (pw Passwd, found, ok bool) {
	if c == nil {
		return Passwd{}, false, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el := c.entries[k]
	if el == nil {
		c.misses.Add(1)
		return Passwd{}, false, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.lru.Remove(el)
		delete(c.entries, k)
		c.misses.Add(1)
		return Passwd{}, false, false
	}
	c.lru.MoveToFront(el)
	c.hits.Add(1)
	return e.pw, e.found, true
}

// putFound stores a user under both its name and its uid.
func (c *Cache) putFound(pw Passwd) {
	if c == nil || c.PositiveTTL <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	exp := c.now().Add(c.PositiveTTL)
	c.put(&cacheEntry{key: cacheKey{name: pw.Name}, pw: pw, found: true, expires: exp})
	c.put(&cacheEntry{key: cacheKey{byUID: true, uid: pw.UID}, pw: pw, found: true, expires: exp})
	if c.shared != nil && c.MaxEntries >= 1 {
		c.shared.Publish(nssproto.Passwd(pw), c.PositiveTTL)
	}
}

// putNotFound stores an authoritative "no such user" for k.
func (c *Cache) putNotFound(k cacheKey) {
	if c == nil || c.NegativeTTL <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.put(&cacheEntry{key: k, expires: c.now().Add(c.NegativeTTL)})
	c.withdraw(k)
}

// withdraw removes k from the shared file.
func (c *Cache) withdraw(k cacheKey) {
	switch {
	case c.shared == nil:
	case k.byUID:
		c.shared.RemoveUID(k.uid)
	default:
		c.shared.RemoveName(k.name)
	}
}

func (c *Cache) put(e *cacheEntry) {
	if c.MaxEntries < 1 {
		return
	}
	if el := c.entries[e.key]; el != nil {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.MaxEntries {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.entries, old.Value.(*cacheEntry).key)
	}
	c.entries[e.key] = c.lru.PushFront(e)
}

// Len is the number of entries (positive and negative, both keys).
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Stats reports hits and misses since start.
func (c *Cache) Stats() (hits, misses uint64) { return c.hits.Load(), c.misses.Load() }
