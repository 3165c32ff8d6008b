package mailbox

import (
	"context"
	"sync"
)

// Gate lets a mailbox move wait out the deliveries already writing to a
// user's Maildir. A delivery Enters before it checks MovingMarker and
// leaves after its write; the mover writes the marker, then Waits: every
// delivery that entered before the marker existed has finished, and
// every later one sees the marker. The zero Gate is ready to use; one
// Gate is shared by everything in a process that writes Maildirs.
type Gate struct {
	mu      sync.Mutex
	writing map[string]int
	idle    map[string]chan struct{} // closed when writing[user] drops to 0
}

// Enter registers a write to user's Maildir; call the returned func when
// it has ended.
func (g *Gate) Enter(user string) (leave func()) {
	g.mu.Lock()
	if g.writing == nil {
		g.writing = map[string]int{}
		g.idle = map[string]chan struct{}{}
	}
	g.writing[user]++
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.writing[user]--
			if g.writing[user] > 0 {
				return
			}
			delete(g.writing, user)
			if ch, ok := g.idle[user]; ok {
				close(ch)
				delete(g.idle, user)
			}
		})
	}
}

// Wait returns once no write to user's Maildir is in progress, or with
// ctx's error.
func (g *Gate) Wait(ctx context.Context, user string) error {
	g.mu.Lock()
	if g.writing[user] == 0 {
		g.mu.Unlock()
		return nil
	}
	ch, ok := g.idle[user]
	if !ok {
		ch = make(chan struct{})
		g.idle[user] = ch
	}
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
