package usersample

import (
	"slices"
	"strings"
	"testing"

	"correo/src/mailbox"
)

func TestGenerateValidUnique(t *testing.T) {
	names := Generate(20000, 1)
	if len(names) != 20000 {
		t.Fatalf("Generate(20000) returned %d names", len(names))
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		norm, err := mailbox.NormalizeName(n)
		if err != nil {
			t.Fatalf("generated name is invalid: %v", err)
		}
		if norm != n {
			t.Fatalf("generated name %q is not normalised (%q)", n, norm)
		}
		if seen[n] {
			t.Fatalf("generated name %q twice", n)
		}
		seen[n] = true
	}
}

func TestGenerateDeterministic(t *testing.T) {
	a, b := Generate(3000, 42), Generate(3000, 42)
	if !slices.Equal(a, b) {
		t.Fatal("same seed gave different names")
	}
	if c := Generate(3000, 43); slices.Equal(a, c) {
		t.Fatal("different seeds gave the same names")
	}
	// A prefix of a longer run is the shorter run: callers can grow a sample.
	if !slices.Equal(Generate(100, 42), a[:100]) {
		t.Fatal("Generate(100) is not a prefix of Generate(3000) for the same seed")
	}
}

func TestGenerateEdge(t *testing.T) {
	if got := Generate(0, 1); len(got) != 0 {
		t.Fatalf("Generate(0) = %v", got)
	}
	if got := Generate(-5, 1); len(got) != 0 {
		t.Fatalf("Generate(-5) = %v", got)
	}
}

// The skew is the point of this package: first letters must be far from
// uniform, as they are among real customers.
func TestGenerateSkew(t *testing.T) {
	names := Generate(10000, 7)
	first := make(map[byte]int)
	for _, n := range names {
		first[n[0]]++
	}
	top := 0
	for _, c := range first {
		top = max(top, c)
	}
	if uniform := len(names) / 26; top < 3*uniform {
		t.Errorf("most common first letter has %d names, want a skew of at least 3x uniform (%d)", top, uniform)
	}
	var patterns struct{ dot, digit, under int }
	for _, n := range names {
		if strings.Contains(n, ".") {
			patterns.dot++
		}
		if strings.ContainsAny(n, "0123456789") {
			patterns.digit++
		}
		if strings.Contains(n, "_") {
			patterns.under++
		}
	}
	if patterns.dot == 0 || patterns.digit == 0 || patterns.under == 0 {
		t.Errorf("pattern mix missing a kind: %+v", patterns)
	}
}

func TestListsLoaded(t *testing.T) {
	if len(firstNames.words) < 140 || len(surnames.words) < 290 {
		t.Fatalf("embedded lists too short: %d first names, %d surnames", len(firstNames.words), len(surnames.words))
	}
	for _, w := range append(append([]string{}, firstNames.words...), surnames.words...) {
		if n, err := mailbox.NormalizeName(w); err != nil || n != w || strings.ContainsAny(w, "._-0123456789") {
			t.Errorf("list word %q is not plain lower-case ASCII letters", w)
		}
	}
}
