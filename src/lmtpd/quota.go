package lmtpd

import (
	"sync"
	"time"

	"correo/src/mailbox"
)

// usageCache remembers how many bytes each user's Maildir holds, for the
// quota check.
//
// Usage is mailbox.Usage, the definition imapd's QUOTA shows: the S=
// sizes of new/ and cur/ of INBOX and of every folder (a stat only for
// files without S=), two directory reads per folder, no stat per message.
// It is an approximation, on purpose:
//   - files in tmp/ (deliveries in progress) are not counted;
//   - the value is cached for ttl: deliveries through this process add
//     their size to it at once, but deletions by pop3d are seen only
//     when the entry expires, so usage is over- rather than under-
//     estimated for up to ttl;
//   - concurrent deliveries to one user may each pass the check, so a
//     mailbox can end one message over its quota (a soft quota, as with
//     most MDAs).
type usageCache struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]usage
}

type usage struct {
	bytes int64
	at    time.Time
}

func newUsageCache(ttl time.Duration, max int) *usageCache {
	return &usageCache{ttl: ttl, max: max, m: map[string]usage{}}
}

// get returns the user's usage, scanning the Maildir when the cached value
// is missing or stale. A Maildir that does not exist yet holds 0 bytes.
func (c *usageCache) get(user, maildir string, now time.Time) (int64, error) {
	c.mu.Lock()
	u, ok := c.m[user]
	c.mu.Unlock()
	if ok && now.Sub(u.at) < c.ttl {
		return u.bytes, nil
	}
	total, err := mailbox.Usage(maildir)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	if len(c.m) >= c.max {
		// Drop an arbitrary tenth: the map's random order makes this a
		// cheap random eviction, and a dropped entry only costs a rescan.
		n := c.max / 10
		for k := range c.m {
			if n <= 0 {
				break
			}
			delete(c.m, k)
			n--
		}
	}
	c.m[user] = usage{bytes: total, at: now}
	c.mu.Unlock()
	return total, nil
}

// add counts a message just delivered, when the user's usage is cached.
func (c *usageCache) add(user string, n int64) {
	c.mu.Lock()
	if u, ok := c.m[user]; ok {
		u.bytes += n
		c.m[user] = u
	}
	c.mu.Unlock()
}
