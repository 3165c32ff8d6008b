package logging

import (
	"context"
	"testing"
)

func TestNewTraceID(t *testing.T) {
	const n = 100_000
	seen := make(map[string]struct{}, n)
	for range n {
		id := NewTraceID()
		if len(id) != 16 {
			t.Fatalf("id %q: length %d, want 16", id, len(id))
		}
		for _, c := range id {
			if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
				t.Fatalf("id %q: character %q outside lowercase base32", id, c)
			}
		}
		if _, dup := seen[id]; dup {
			t.Fatalf("duplicate id %q after %d ids", id, len(seen))
		}
		seen[id] = struct{}{}
	}
}

func TestWithTrace(t *testing.T) {
	ctx := context.Background()
	if got := TraceFrom(ctx); got != "" {
		t.Errorf("empty context carries %q", got)
	}
	if got := TraceFrom(nil); got != "" { //nolint:staticcheck // nil ctx must not panic
		t.Errorf("nil context carries %q", got)
	}
	id := NewTraceID()
	c1 := WithTrace(ctx, id)
	if got := TraceFrom(c1); got != id {
		t.Errorf("TraceFrom = %q, want %q", got, id)
	}
	c2 := WithTrace(c1, "other")
	if TraceFrom(c2) != "other" || TraceFrom(c1) != id {
		t.Errorf("inner trace must shadow, outer context must be unchanged")
	}
	if WithTrace(c1, "") != c1 {
		t.Errorf("empty id should leave the context alone")
	}
}
