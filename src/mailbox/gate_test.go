package mailbox

import (
	"context"
	"testing"
	"time"
)

func TestGate(t *testing.T) {
	var g Gate
	if err := g.Wait(context.Background(), "ana"); err != nil {
		t.Fatalf("nobody writing: %v", err)
	}
	leave1 := g.Enter("ana")
	leave2 := g.Enter("ana")
	other := g.Enter("bob")
	defer other()
	done := make(chan error, 1)
	go func() { done <- g.Wait(context.Background(), "ana") }()
	leave1()
	leave1() // a second call changes nothing
	select {
	case err := <-done:
		t.Fatalf("Wait returned with a write in progress: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	leave2()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after the last write ended")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Wait(ctx, "bob"); err == nil {
		t.Fatal("Wait on bob, still writing, ignored the cancelled context")
	}
}
