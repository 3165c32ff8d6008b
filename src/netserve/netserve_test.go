package netserve

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

func TestServeCloseShutdown(t *testing.T) {
	var g Group
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	release := make(chan struct{})
	go func() {
		served <- g.Serve(ln, func(c net.Conn) {
			c.Write([]byte("hi\n"))
			<-release
		})
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	io.ReadFull(c, buf)
	// Shutdown waits for the session, then gives up at its deadline and
	// drops it.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	go func() { time.Sleep(300 * time.Millisecond); close(release) }()
	if err := g.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned before the session ended")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	// The dropped connection sees EOF.
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Fatal("connection still open after Close")
	}
	// A closed group refuses new listeners.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := g.Serve(ln2, func(net.Conn) {}); err != net.ErrClosed {
		t.Fatalf("Serve on a closed group: %v", err)
	}
	if !g.Closed() {
		t.Fatal("group not closed")
	}
}

// TestInFlight: Wait returns at once when nothing is in progress, waits
// for a message in progress, and gives up with ctx.
func TestInFlight(t *testing.T) {
	var f InFlight
	if err := f.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	end := f.Begin()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := f.Wait(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Wait with a message in progress: %v, want the deadline", err)
	}
	go func() { time.Sleep(20 * time.Millisecond); end() }()
	if err := f.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
