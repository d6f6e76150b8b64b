package app

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

// cachedTx is a decoded transaction of a body of size bytes, as the cache
// holds it (its signature is not the cache's to check in add).
func cachedTx(i, size int) *DecodedTx {
	h := sha256.Sum256(fmt.Appendf(nil, "tx %d", i))
	return &DecodedTx{Hash: h[:], BodyBytes: make([]byte, size)}
}

// TestSigCacheBounds: the cache holds at most its size in entries and
// sigCacheMaxBytes in bytes (txCost), evicting oldest first; a transaction
// forgotten gives its bytes back at once, and one larger than the whole
// bound is not kept.
func TestSigCacheBounds(t *testing.T) {
	defer func(m int64) { sigCacheMaxBytes = m }(sigCacheMaxBytes)
	sigCacheMaxBytes = 10 * txCost(cachedTx(0, 1000)) // ten 1,000-byte bodies
	c := newSigCache(4)
	has := func(i int) bool { return c.get(hashKey(cachedTx(i, 0).Hash)) != nil }
	check := func(what string, want ...int) {
		t.Helper()
		var total int64
		for _, tx := range c.valid {
			total += txCost(tx)
		}
		if total != c.bytes || c.bytes > c.max || c.n > len(c.order) {
			t.Fatalf("%s: bytes %d (held %d, bound %d), %d slots of %d", what, c.bytes, total, c.max, c.n, len(c.order))
		}
		if len(c.valid) != len(want) {
			t.Fatalf("%s: %d cached, want %v", what, len(c.valid), want)
		}
		for _, i := range want {
			if !has(i) {
				t.Fatalf("%s: tx %d evicted, want %v cached", what, i, want)
			}
		}
	}
	for i := range 6 {
		c.add(cachedTx(i, 1000))
	}
	check("by entries", 2, 3, 4, 5)
	c.add(cachedTx(6, 9000)) // 2 goes by entries, then 3 by bytes
	check("by bytes", 4, 5, 6)
	c.forget(hashKey(cachedTx(5, 0).Hash))
	check("forgotten", 4, 6)
	c.add(cachedTx(7, 13000)) // more than the bound: not kept, nothing evicted
	check("too large", 4, 6)
	c.add(cachedTx(5, 1000)) // forgotten, added again
	c.add(cachedTx(8, 1000))
	check("again", 5, 6, 8)
}
