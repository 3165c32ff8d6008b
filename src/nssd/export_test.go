package nssd

import "time"

// SetCacheClock lets tests move time.
func SetCacheClock(c *Cache, now func() time.Time) { c.now = now }
