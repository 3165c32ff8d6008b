package pwserver

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"correo/src/directory"
)

// credCache remembers logins that passed a password check, so that a
// client polling every few minutes costs passwdd one HMAC instead of one
// bcrypt (Dovecot's auth_cache). It holds, per user, a keyed hash of the
// user and the password under a key drawn at start-up: never the password,
// and useless to any other process, which has another key.
//
// An entry is only good for the record it was verified against: it keeps
// a fingerprint of that record, and any change to it (password, state,
// storage, deletion and re-creation, a replicated change on the secondary,
// a full import) makes the fingerprint differ, so the entry is dropped at
// the next login whatever path the change took. The admin and replication
// paths also drop entries eagerly, to free them.
//
// Only successes are stored: a failure always costs a real check.
type credCache struct {
	key  [32]byte
	seed maphash.Seed
	ttl  time.Duration
	max  int

	mu sync.Mutex
	m  map[string]credEntry
	// sweepAt is when the next expiry sweep may run.
	sweepAt time.Time
}

type credEntry struct {
	mac     [sha256.Size]byte
	record  uint64
	expires time.Time
}

func newCredCache(ttl time.Duration, max int) *credCache {
	c := &credCache{ttl: ttl, max: max, seed: maphash.MakeSeed(), m: map[string]credEntry{}}
	if _, err := rand.Read(c.key[:]); err != nil {
		panic("pwserver: no randomness for the credentials cache key: " + err.Error())
	}
	return c
}

// mac is the cache's verifier of (name, password). The NUL separates the
// two: names cannot contain one.
func (c *credCache) mac(name, password string) (out [sha256.Size]byte) {
	h := hmac.New(sha256.New, c.key[:])
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(password))
	h.Sum(out[:0])
	return out
}

// fingerprint hashes every field of the record, so an entry verified
// against one version of a user never vouches for another.
func (c *credCache) fingerprint(u directory.User) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, s := range []string{u.Name, u.Gecos, u.Shell, u.Hash, u.Storage} {
		h.WriteString(s)
		h.WriteByte(0)
	}
	for _, a := range u.Aliases {
		h.WriteString(a)
		h.WriteByte(0)
	}
	b := make([]byte, 0, 8+4+4+1)
	b = binary.LittleEndian.AppendUint64(b, uint64(u.Quota))
	b = binary.LittleEndian.AppendUint32(b, u.UID)
	b = binary.LittleEndian.AppendUint32(b, u.GID)
	h.Write(append(b, byte(u.State)))
	return h.Sum64()
}

// check reports whether password was verified for this very record
// within the TTL. A stale entry is dropped on the way.
func (c *credCache) check(u directory.User, password string, now time.Time) bool {
	key := strings.ToLower(u.Name)
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if !ok {
		return false
	}
	if now.After(e.expires) || e.record != c.fingerprint(u) {
		c.dropIf(key, e)
		return false
	}
	mac := c.mac(key, password)
	return hmac.Equal(mac[:], e.mac[:])
}

// put records a successful check of password against u.
func (c *credCache) put(u directory.User, password string, now time.Time) {
	// A copy: the index's strings must not be pinned by the cache.
	key := strings.Clone(strings.ToLower(u.Name))
	e := credEntry{mac: c.mac(key, password), record: c.fingerprint(u), expires: now.Add(c.ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		c.makeRoom(now)
	}
	c.m[key] = e
}

// makeRoom drops expired entries and, if the cache is still full, about
// an eighth of it chosen at random (map order): a full cache must not
// cost a full scan on every login. c.mu held.
func (c *credCache) makeRoom(now time.Time) {
	if now.After(c.sweepAt) {
		for k, e := range c.m {
			if now.After(e.expires) {
				delete(c.m, k)
			}
		}
		c.sweepAt = now.Add(c.ttl / 8)
	}
	for k := range c.m {
		if len(c.m) < c.max-c.max/8 {
			break
		}
		delete(c.m, k)
	}
}

// dropIf removes key's entry if it is still e (a concurrent put of a fresh
// entry wins).
func (c *credCache) dropIf(key string, e credEntry) {
	c.mu.Lock()
	if cur, ok := c.m[key]; ok && cur == e {
		delete(c.m, key)
	}
	c.mu.Unlock()
}

// drop forgets name's entry: its record changed.
func (c *credCache) drop(name string) {
	c.mu.Lock()
	delete(c.m, strings.ToLower(name))
	c.mu.Unlock()
}

// clear forgets everything: the whole user set was replaced.
func (c *credCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

func (c *credCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
