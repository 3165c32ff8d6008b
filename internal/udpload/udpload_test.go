package udpload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestEchoLoad(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := Echo(ctx, "127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, Config{Addr: addr, Concurrency: 4, Requests: 2000,
		Request: func(w, i int, b []byte) ([]byte, error) { return fmt.Appendf(b, "%d-%d", w, i), nil },
		Check: func(w, i int, resp []byte) error {
			if !bytes.Equal(resp, fmt.Appendf(nil, "%d-%d", w, i)) {
				return fmt.Errorf("answer %q for %d-%d", resp, w, i)
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 2000 || res.Failed != 0 || res.Lost != 0 || res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
		t.Fatalf("unexpected result: %v (first error %v)", res, res.FirstError)
	}
}

func TestLostAndFailed(t *testing.T) {
	ctx := context.Background()
	// Nobody listens: every request is lost, none hangs past its timeout.
	res, err := Run(ctx, Config{Addr: "127.0.0.1:9", Concurrency: 2, Requests: 4, Timeout: 50 * time.Millisecond,
		Request: func(w, i int, b []byte) ([]byte, error) { return append(b, 'x'), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lost != 4 || res.OK != 0 {
		t.Fatalf("want 4 lost, got %v", res)
	}
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	addr, _ := Echo(ectx, "127.0.0.1:0", 1)
	res, _ = Run(ctx, Config{Addr: addr, Requests: 3,
		Request: func(w, i int, b []byte) ([]byte, error) { return append(b, 'x'), nil },
		Check:   func(w, i int, resp []byte) error { return errors.New("never right") }})
	if res.Failed != 3 || res.FirstError == nil {
		t.Fatalf("want 3 failed, got %v", res)
	}
	if _, err := Run(ctx, Config{Addr: addr}); err == nil {
		t.Fatal("a run with no bound was accepted")
	}
}
