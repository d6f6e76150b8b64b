package deid

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestMatcherAgreesWithContains: the automaton finds a needle exactly when
// strings.Contains finds one, on needles that overlap, nest and share
// prefixes and suffixes.
func TestMatcherAgreesWithContains(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abc"[rng.IntN(3)]
		}
		return string(b)
	}
	for round := range 2000 {
		needles := make([]string, 1+rng.IntN(6))
		for i := range needles {
			needles[i] = word(1 + rng.IntN(5))
		}
		m := newMatcher(needles)
		s := word(rng.IntN(30))
		want := false
		for _, x := range needles {
			want = want || strings.Contains(s, x)
		}
		if got := m.in(s); got != want {
			t.Fatalf("round %d: needles %q in %q: %v, want %v", round, needles, s, got, want)
		}
	}
	if !newMatcher([]string{""}).in("") || newMatcher([]string{"x"}).in("") {
		t.Fatal("the empty needle or the empty string")
	}
}

// TestSweepIsLinear: needles that share a prefix, against a string that
// repeats it, cost one pass over the string (the reviewer's record: many
// identifiers "aaaaaaaa<i>" and a long run of "a").
func TestSweepIsLinear(t *testing.T) {
	var n needles
	for i := range 4000 {
		n.add(fmt.Sprintf("aaaaaaaa%d", i))
	}
	s := strings.Repeat("a", 80_000)
	if n.in(s) {
		t.Fatal("a needle found in a string of a alone")
	}
	if !n.in(s + "aaaaaaaa3999") {
		t.Fatal("the last needle not found")
	}
	// The numeric needles hold the digits alone: not swept here.
	if steps := n.match.steps; steps > 2*(2*len(s)+12) {
		t.Fatalf("%d transitions for %d bytes read", steps, 2*len(s)+12)
	}
}
