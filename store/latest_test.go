package store

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestLatestValuesMatchTheTree drives a store with a tiny latest-value
// cache (so it evicts all the time) and one without, through the same
// random writes, deletes, rollbacks and commits, and compares every read:
// working-tree reads, reads of the latest version, and reads of older
// versions taken before later commits. Any stale or lost cache entry shows
// up as a difference.
func TestLatestValuesMatchTheTree(t *testing.T) {
	for _, size := range []int{1, 7, 1000} {
		cached := openTest(t, t.TempDir(), Options{Backend: BackendMemDB, CacheSize: 1000, ValueCacheSize: size})
		plain := openTest(t, t.TempDir(), Options{Backend: BackendMemDB, CacheSize: 1000, ValueCacheSize: -1})
		if plain.values != nil || cached.values == nil {
			t.Fatalf("ValueCacheSize -1 / %d: caches %v / %v", size, plain.values, cached.values)
		}
		rng := rand.New(rand.NewPCG(1, uint64(size)))
		key := func() []byte { return []byte(keyN(rng.IntN(24))) }
		var old []Reader // readers of earlier versions, from both stores, in pairs
		same := func(what string, a, b Reader, k []byte) {
			t.Helper()
			va, err := a.Get(k)
			if err != nil {
				t.Fatal(err)
			}
			vb, err := b.Get(k)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(va, vb) {
				t.Fatalf("size %d: %s of %s: cached store %q, plain store %q", size, what, k, va, vb)
			}
			if va != nil {
				va[0] ^= 0xff // the caller owns what it got: this must not reach the cache
			}
		}
		for step := range 3000 {
			switch op := rng.IntN(20); {
			case op < 8:
				k, v := key(), []byte{byte(step), byte(step >> 8), 'v'}
				for _, s := range []*Store{cached, plain} {
					if err := s.Working().Set(k, v); err != nil {
						t.Fatal(err)
					}
				}
			case op < 10:
				k := key()
				for _, s := range []*Store{cached, plain} {
					if err := s.Working().Delete(k); err != nil {
						t.Fatal(err)
					}
				}
			case op < 11:
				cached.Rollback()
				plain.Rollback()
			case op < 13:
				h1, v1 := mustCommit(t, cached)
				h2, v2 := mustCommit(t, plain)
				if v1 != v2 || !bytes.Equal(h1, h2) {
					t.Fatalf("size %d: commit %d %X vs %d %X", size, v1, h1, v2, h2)
				}
				ra, err := cached.ReaderAt(v1)
				if err != nil {
					t.Fatal(err)
				}
				rb, err := plain.ReaderAt(v2)
				if err != nil {
					t.Fatal(err)
				}
				old = append(old, ra, rb)
			default:
				k := key()
				same("working read", cached.Working(), plain.Working(), k)
				if v, _ := cached.LastCommit(); v > 0 {
					ra, _ := cached.ReaderAt(v)
					rb, _ := plain.ReaderAt(v)
					same("latest read", ra, rb, k)
				}
				if len(old) > 0 {
					i := rng.IntN(len(old)/2) * 2
					same("older read", old[i], old[i+1], k)
				}
			}
		}
	}
}
