package freeport

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
)

// Low and High bound the ports handed out: [Low, High), below the
// ephemeral range.
const (
	Low  = 20000
	High = 32000
)

var (
	mu     sync.Mutex
	used   = map[int]bool{}
	cursor = Low + os.Getpid()*397%(High-Low) // a start of this process's own
)

// Block returns the first of n consecutive ports that were free a moment
// ago and that this process has not handed out before; it reserves them.
func Block(n int) (int, error) { return Aligned(n, 1) }

// Aligned is Block with a first port that is a multiple of align (for
// harnesses that find a node's block of ports from any one of them).
func Aligned(n, align int) (int, error) {
	if n < 1 || align < 1 || n+align > High-Low {
		return 0, fmt.Errorf("freeport: a block of %d ports aligned to %d", n, align)
	}
	mu.Lock()
	defer mu.Unlock()
	for tried := 0; tried <= (High-Low)/align; tried++ { // each candidate one align further
		cursor += (align - cursor%align) % align
		if cursor+n > High {
			cursor = Low + (align-Low%align)%align
		}
		base := cursor
		if free(base, n) {
			for p := base; p < base+n; p++ {
				used[p] = true
			}
			cursor = base + n
			return base, nil
		}
		cursor++
	}
	return 0, fmt.Errorf("freeport: no %d consecutive free ports in %d-%d", n, Low, High)
}

// free reports whether the n ports from base are unused here and can be
// listened on. Called with mu held.
func free(base, n int) bool {
	for p := base; p < base+n; p++ {
		if used[p] {
			return false
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// Get returns one port as Block does, failing t if there is none.
func Get(t testing.TB) int {
	t.Helper()
	p, err := Block(1)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
