package imap

import (
	"container/list"
	"sync"
)

// renderCache keeps the ENVELOPE and BODYSTRUCTURE answers of messages a
// session rendered, for every session of the process: a Maildir file's
// content never changes (flags live in its name), so an answer keyed by
// the mailbox and the file's key stays true until the file is gone, and a
// client's next resync of the folder opens no file at all. Dovecot keeps
// the same answers in its dovecot.index.cache; this one lives in memory,
// bounded by bytes, least recently used out first.
type renderCache struct {
	mu    sync.Mutex
	max   int
	size  int
	order *list.List // front: most recent
	items map[string]*list.Element
}

type cacheItem struct {
	key, val string
}

// cacheEntryOverhead approximates a map entry, a list element and two
// string headers.
const cacheEntryOverhead = 120

func newRenderCache(maxBytes int) *renderCache {
	return &renderCache{max: maxBytes, order: list.New(), items: map[string]*list.Element{}}
}

func (c *renderCache) get(key string) (string, bool) {
	if c == nil || c.max <= 0 {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return "", false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheItem).val, true
}

func (c *renderCache) put(key, val string) {
	if c == nil || c.max <= 0 {
		return
	}
	n := len(key) + len(val) + cacheEntryOverhead
	if n > c.max/16 {
		return // one huge structure must not flush everyone else's
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.order.MoveToFront(e)
		return
	}
	c.items[key] = c.order.PushFront(&cacheItem{key: key, val: val})
	c.size += n
	for c.size > c.max {
		e := c.order.Back()
		it := e.Value.(*cacheItem)
		c.order.Remove(e)
		delete(c.items, it.key)
		c.size -= len(it.key) + len(it.val) + cacheEntryOverhead
	}
}
