// Package netserve is the accept-loop and lifecycle every correo TCP
// server shares: accept with backoff on resource errors (EMFILE must not
// spin a core), one goroutine per connection, Close to drop everything at
// once, Shutdown to let sessions finish until a deadline.
package netserve

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Group tracks a server's listeners and connections. The zero value is
// ready to use; Log may be set for accept errors.
type Group struct {
	Log *slog.Logger

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]bool
	conns     map[net.Conn]bool
	wg        sync.WaitGroup
}

// Serve accepts on ln until it or the group is closed, running handle for
// each connection in its own goroutine; the connection is closed when
// handle returns. A closed group or listener ends Serve with nil.
func (g *Group) Serve(ln net.Listener, handle func(net.Conn)) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	if g.listeners == nil {
		g.listeners, g.conns = map[net.Listener]bool{}, map[net.Conn]bool{}
	}
	g.listeners[ln] = true
	g.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if g.Closed() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				if g.Log != nil {
					g.Log.Warn("accept failed; retrying", "err", err, "delay", delay.String())
				}
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !g.track(c) {
			c.Close()
			return nil
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer g.untrack(c)
			handle(c)
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Len is the number of connections being handled.
func (g *Group) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// Closed reports whether Close or Shutdown was called.
func (g *Group) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

func (g *Group) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.conns[c] = true
	return true
}

func (g *Group) untrack(c net.Conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
	c.Close()
}

// stop closes the listeners (and, with drop, every connection).
func (g *Group) stop(drop bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	for ln := range g.listeners {
		ln.Close()
	}
	if drop {
		for c := range g.conns {
			c.Close()
		}
	}
}

// Close stops listening, drops every connection and waits for the
// handlers to return.
func (g *Group) Close() error {
	g.stop(true)
	g.wg.Wait()
	return nil
}

// Shutdown stops listening and waits for the sessions to end by
// themselves until ctx is done, then drops the rest.
func (g *Group) Shutdown(ctx context.Context) error {
	g.stop(false)
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		g.Close()
		return ctx.Err()
	}
}

// InFlight counts the messages a server built on go-smtp (which has its
// own accept loop) is in the middle of receiving, so that its Shutdown can
// let them finish: a message whose data was read must be answered.
type InFlight struct{ n atomic.Int64 }

// Begin marks a message in progress; call the result when it is answered.
func (f *InFlight) Begin() (end func()) {
	f.n.Add(1)
	return func() { f.n.Add(-1) }
}

// Len is the number of messages in progress.
func (f *InFlight) Len() int { return int(f.n.Load()) }

// Wait returns nil once no message is in progress, or ctx's error when it
// is done first.
func (f *InFlight) Wait(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for f.n.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
