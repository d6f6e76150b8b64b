package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPortsAreDistinctAndBelowTheEphemeralRange: ports are never handed
// out twice in a process, a port someone listens on is passed over, and
// every port is below the ephemeral range.
func TestPortsAreDistinctAndBelowTheEphemeralRange(t *testing.T) {
	base, err := Block(5)
	if err != nil {
		t.Fatal(err)
	}
	// Someone else takes the port after the block.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+5)))
	if err != nil {
		t.Skipf("port %d taken meanwhile: %v", base+5, err)
	}
	defer l.Close()
	seen := map[int]bool{}
	for p := base; p < base+5; p++ {
		seen[p] = true
	}
	for range 200 {
		p := Get(t)
		if p < Low || p >= High {
			t.Fatalf("port %d outside [%d, %d)", p, Low, High)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		if p == base+5 {
			t.Fatalf("port %d handed out while someone listens on it", p)
		}
		seen[p] = true
	}
	for range 20 {
		base, err := Aligned(40, 10)
		if err != nil {
			t.Fatal(err)
		}
		if base%10 != 0 || base < Low || base+40 > High {
			t.Fatalf("Aligned(40, 10) = %d", base)
		}
		for p := base; p < base+40; p++ {
			if seen[p] {
				t.Fatalf("port %d handed out twice", p)
			}
			seen[p] = true
		}
	}
	if _, err := Block(0); err == nil {
		t.Fatal("a block of 0 ports")
	}
}
