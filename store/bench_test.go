package store

import (
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"testing"
	"time"
)

// Benchmarks of the two persistent backends. Results and the exact command
// are in BENCH_RESULTS.md. The 1M-key case takes minutes to preload; it runs
// only with -store.bench1m:
//
//	go test ./store -run x -bench . -benchtime 30x -args -store.bench1m
var bench1M = flag.Bool("store.bench1m", false, "include the 1,000,000-key Commit benchmark (slow preload)")

const (
	benchBlock     = 1000 // writes per block
	benchValueSize = 300  // bytes per value, about a record's metadata
)

// benchKey is a 33-byte key, uniformly spread like a hashed id.
func benchKey(i uint64) []byte {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], i)
	h := sha256.Sum256(n[:])
	return append([]byte{0x10}, h[:]...)
}

func benchValue(rng *rand.Rand) []byte {
	v := make([]byte, benchValueSize)
	rng.Read(v)
	return v
}

func benchOpen(b *testing.B, dir, backend string) *Store {
	b.Helper()
	s, err := Open(dir, Options{Backend: backend, CacheSize: DefaultCacheSize})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// writeBlock stages writes in a Cache, as the state machine does, then
// flushes (sorted) and commits. It returns the time spent in Commit alone.
func writeBlock(b *testing.B, s *Store, keys func(j int) []byte, rng *rand.Rand) time.Duration {
	c := NewCache(s.Working())
	for j := 0; j < benchBlock; j++ {
		if err := c.Set(keys(j), benchValue(rng)); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Write(); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, _, err := s.Commit(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkSetCommit: one op = one block of 1,000 new keys with 300-byte
// values, staged in a Cache, written and committed. The tree grows by 1,000
// keys per op.
func BenchmarkSetCommit(b *testing.B) {
	for _, backend := range diskBackends {
		b.Run(backend, func(b *testing.B) {
			s := benchOpen(b, b.TempDir(), backend)
			defer s.Close()
			rng := rand.New(rand.NewSource(1))
			var next uint64
			var commit time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				commit += writeBlock(b, s, func(int) []byte { next++; return benchKey(next) }, rng)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*benchBlock)/b.Elapsed().Seconds(), "writes/s")
			b.ReportMetric(float64(commit.Microseconds())/1000/float64(b.N), "commit-ms/op")
		})
	}
}

// preloaded keeps the preloaded stores of BenchmarkCommitStored across the
// repeated invocations of each sub-benchmark (the framework calls a
// sub-benchmark more than once, and the preload dominates otherwise).
type preloaded struct {
	s    *Store
	dir  string
	size uint64
	next uint64
	rng  *rand.Rand
}

// BenchmarkCommitStored: one op = one block of 1,000 updates of random
// existing keys (new 300-byte values) on a tree preloaded with N keys, then
// Commit. Updates keep the tree at N keys, so every invocation (the
// framework repeats a sub-benchmark for -count and for b.N probing, and the
// preloaded store is reused) measures the same size. commit-ms/op is the
// time in Commit (SaveVersion) alone; ns/op includes staging the writes.
func BenchmarkCommitStored(b *testing.B) {
	sizes := []uint64{10_000, 100_000}
	if *bench1M {
		sizes = append(sizes, 1_000_000)
	}
	stores := map[string]*preloaded{}
	b.Cleanup(func() { // after every sub-benchmark invocation is done
		for _, p := range stores {
			_ = p.s.Close()
			_ = os.RemoveAll(p.dir)
		}
	})
	for _, size := range sizes {
		for _, backend := range diskBackends {
			name := fmt.Sprintf("keys=%d/%s", size, backend)
			b.Run(name, func(b *testing.B) {
				if testing.Short() && size > 10_000 {
					b.Skip("-short")
				}
				p := stores[name]
				if p == nil {
					dir, err := os.MkdirTemp("", "emrchain-bench-")
					if err != nil {
						b.Fatal(err)
					}
					p = &preloaded{s: benchOpen(b, dir, backend), dir: dir, size: size, rng: rand.New(rand.NewSource(2))}
					stores[name] = p
					preload(b, p)
				}
				var commit time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					commit += writeBlock(b, p.s, func(int) []byte {
						return benchKey(uint64(p.rng.Int63n(int64(p.size))) + 1)
					}, p.rng)
				}
				b.StopTimer()
				b.ReportMetric(float64(commit.Microseconds())/1000/float64(b.N), "commit-ms/op")
			})
		}
	}
}

func preload(b *testing.B, p *preloaded) {
	b.Helper()
	const chunk = 10_000
	for p.next < p.size {
		w := p.s.Working()
		for j := 0; j < chunk && p.next < p.size; j++ {
			p.next++
			if err := w.Set(benchKey(p.next), benchValue(p.rng)); err != nil {
				b.Fatal(err)
			}
		}
		if _, _, err := p.s.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBackendsPaired runs identical blocks on goleveldb and pebble
// alternately (the order flips every op), so that load from other
// processes on a shared machine hits both backends alike. One op = one
// block on each backend. Reported per backend: block-ms (staging, sorted
// Write and Commit) and commit-ms.
//
//   - insert: 1,000 new keys per block, the tree grows from empty.
//   - update/keys=N: 1,000 updates of random keys of an N-key tree
//     (100k; also 1M with -store.bench1m).
func BenchmarkBackendsPaired(b *testing.B) {
	type side struct {
		s      *Store
		rng    *rand.Rand
		block  time.Duration
		commit time.Duration
	}
	run := func(b *testing.B, sides []*side, keys func(i, j int) []byte) {
		for _, sd := range sides {
			sd.block, sd.commit = 0, 0
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for k := range sides {
				sd := sides[(i+k)%len(sides)]
				start := time.Now()
				sd.commit += writeBlock(b, sd.s, func(j int) []byte { return keys(i, j) }, sd.rng)
				sd.block += time.Since(start)
			}
		}
		b.StopTimer()
		for k, sd := range sides {
			name := diskBackends[k]
			b.ReportMetric(float64(sd.block.Microseconds())/1000/float64(b.N), name+"-block-ms")
			b.ReportMetric(float64(sd.commit.Microseconds())/1000/float64(b.N), name+"-commit-ms")
		}
	}
	openSides := func(b *testing.B, dirs func() string) []*side {
		var sides []*side
		for _, backend := range diskBackends {
			sides = append(sides, &side{s: benchOpen(b, dirs(), backend), rng: rand.New(rand.NewSource(3))})
		}
		return sides
	}

	b.Run("insert", func(b *testing.B) {
		sides := openSides(b, b.TempDir)
		defer func() {
			for _, sd := range sides {
				_ = sd.s.Close()
			}
		}()
		run(b, sides, func(i, j int) []byte { return benchKey(uint64(i*benchBlock + j + 1)) })
	})

	sizes := []int64{100_000}
	if *bench1M {
		sizes = append(sizes, 1_000_000)
	}
	preloadedSides := map[int64][]*side{}
	var dirs []string
	b.Cleanup(func() {
		for _, sides := range preloadedSides {
			for _, sd := range sides {
				_ = sd.s.Close()
			}
		}
		for _, d := range dirs {
			_ = os.RemoveAll(d)
		}
	})
	for _, size := range sizes {
		b.Run(fmt.Sprintf("update/keys=%d", size), func(b *testing.B) {
			if testing.Short() {
				b.Skip("-short")
			}
			sides := preloadedSides[size]
			if sides == nil {
				sides = openSides(b, func() string {
					d, err := os.MkdirTemp("", "emrchain-bench-")
					if err != nil {
						b.Fatal(err)
					}
					dirs = append(dirs, d)
					return d
				})
				for _, sd := range sides {
					preload(b, &preloaded{s: sd.s, size: uint64(size), rng: rand.New(rand.NewSource(2))})
				}
				preloadedSides[size] = sides
			}
			rng := rand.New(rand.NewSource(4))
			var blockKeys [benchBlock][]byte
			lastI := -1
			run(b, sides, func(i, j int) []byte {
				if i != lastI { // both backends get the same keys for op i
					for n := range blockKeys {
						blockKeys[n] = benchKey(uint64(rng.Int63n(size)) + 1)
					}
					lastI = i
				}
				return blockKeys[j]
			})
		})
	}
}
