package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/blobstore"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestScrub: a pass reads every stored blob, in batches, and drops the
// copies whose bytes do not hash to their SHA-256 — a flipped bit or a
// truncation — and only those; intact blobs are kept and counted.
func TestScrub(t *testing.T) {
	e := newEnv(t, nil)
	defer func(b int) { scrubBatch = b }(scrubBatch)
	scrubBatch = 2 // five blobs: three listings
	ctx := context.Background()
	var keys []blobstore.Key
	for i := range 5 {
		data := bytes.Repeat(fmt.Appendf(nil, "blob %d ", i), 1000+i)
		key := blobstore.Key{Owner: blobstore.Owner{byte(i)}, Sum: blobstore.Sum(sha256.Sum256(data))}
		if err := e.store.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	flip, cut := e.store.Path(keys[1]), e.store.Path(keys[3])
	b, err := os.ReadFile(flip)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0x01 // the last byte: held back by a GET, read by the scrub
	if err := os.WriteFile(flip, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(cut, 100); err != nil {
		t.Fatal(err)
	}
	var stored int64
	for _, key := range keys {
		info, err := e.store.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		stored += info.Size
	}
	rep, err := e.srv.Scrub(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checked != 5 || rep.Bytes != stored || rep.Damaged != 2 || rep.Dropped != 2 || rep.Busy != 0 || rep.Errors != 0 {
		t.Fatalf("scrub report %+v, want 5 checked (%d bytes), 2 damaged and dropped", rep, stored)
	}
	if n := testutil.ToFloat64(e.srv.metrics.damaged); n != 2 {
		t.Fatalf("damaged_copies_total %v, want 2", n)
	}
	for i, key := range keys {
		_, err := e.store.Stat(ctx, key)
		if damaged := i == 1 || i == 3; damaged != errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("blob %d (damaged %v) after the scrub: %v", i, damaged, err)
		}
	}
	// A second pass finds the intact three.
	if rep, err := e.srv.Scrub(ctx); err != nil || rep.Checked != 3 || rep.Damaged != 0 {
		t.Fatalf("second pass: %+v, %v", rep, err)
	}
}

// TestScrubRate: the scrub's reads wait until their bytes are due at the
// configured rate (a context that ends stops the wait), and a rate that is
// not positive never waits.
func TestScrubRate(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := newRateLimit(1000).wait(ended, 10_000); !errors.Is(err, context.Canceled) {
		t.Fatalf("10 KB at 1 KB/s: %v, want a wait (cut by the context)", err)
	}
	if err := newRateLimit(-1).wait(ended, 10_000); err != nil {
		t.Fatalf("no bound: %v", err)
	}
	if err := newRateLimit(1<<40).wait(ended, 10); err != nil {
		t.Fatalf("10 bytes at 1 TB/s are due at once: %v", err)
	}
}

// countingStore counts the entries its listings hand out, and runs
// onRead before every read of a Get's reader (which, like an *os.File's,
// does not watch the context).
type countingStore struct {
	blobstore.Store
	listed atomic.Int64
	reads  atomic.Int64
	onRead func(n int64)
}

func (s *countingStore) List(ctx context.Context, fn func(blobstore.Info) bool) error {
	return s.Store.List(ctx, func(i blobstore.Info) bool { s.listed.Add(1); return fn(i) })
}

func (s *countingStore) ListAfter(ctx context.Context, after blobstore.Key, fn func(blobstore.Info) bool) error {
	return s.Store.ListAfter(ctx, after, func(i blobstore.Info) bool { s.listed.Add(1); return fn(i) })
}

func (s *countingStore) Get(ctx context.Context, key blobstore.Key, off, n int64) (io.ReadCloser, int64, error) {
	rc, size, err := s.Store.Get(ctx, key, off, n)
	if err != nil {
		return rc, size, err
	}
	return &countingReader{ReadCloser: rc, s: s}, size, nil
}

type countingReader struct {
	io.ReadCloser
	s *countingStore
}

func (r *countingReader) Read(p []byte) (int, error) {
	n := r.s.reads.Add(1)
	if r.s.onRead != nil {
		r.s.onRead(n)
	}
	return r.ReadCloser.Read(p[:min(len(p), 4096)])
}

// putBlobs stores n blobs of size bytes under distinct owners, and
// returns their keys in the store's order.
func putBlobs(t *testing.T, st blobstore.Store, n, size int) []blobstore.Key {
	t.Helper()
	var keys []blobstore.Key
	for i := range n {
		data := bytes.Repeat(fmt.Appendf(nil, "%08d", i), size/8)
		key := blobstore.Key{Owner: blobstore.Owner{byte(i), byte(i >> 8)}, Sum: sha256.Sum256(data)}
		if err := st.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	slices.SortFunc(keys, blobstore.Key.Compare)
	return keys
}

// TestScrubListsEachBlobOnce: a pass in batches resumes each listing after
// the last blob it read, so it lists every blob once (and the empty end),
// not the whole store again for every batch.
func TestScrubListsEachBlobOnce(t *testing.T) {
	e := newEnv(t, nil)
	cs := &countingStore{Store: e.store}
	srv, err := New(Options{Store: cs, Chain: e.chain, SweepInterval: -1, ScrubBytesPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func(b int, f func() blobstore.Key) { scrubBatch, scrubStart = b, f }(scrubBatch, scrubStart)
	scrubBatch = 4
	scrubStart = func() blobstore.Key { return blobstore.Key{Owner: blobstore.Owner{20}} }
	const n = 40
	putBlobs(t, e.store, n, 64)
	if rep, err := srv.Scrub(context.Background()); err != nil || rep.Checked != n {
		t.Fatalf("scrub: %+v, %v", rep, err)
	}
	// Every blob once, and the first above the start once more: the
	// wrapped listing stops there.
	if got := cs.listed.Load(); got != n+1 {
		t.Fatalf("a pass over %d blobs in batches of %d listed %d entries, want %d", n, scrubBatch, got, n+1)
	}
}

// TestScrubWrapsAround: a pass starts at a random key and wraps around
// the store, reading every blob once wherever it starts: below every
// key, above every key, between two, on one, in batches of any size.
func TestScrubWrapsAround(t *testing.T) {
	defer func(b int, f func() blobstore.Key) { scrubBatch, scrubStart = b, f }(scrubBatch, scrubStart)
	e := newEnv(t, nil)
	const n = 9
	keys := putBlobs(t, e.store, n, 64)
	var top blobstore.Key
	for i := range top.Owner {
		top.Owner[i], top.Sum[i] = 0xff, 0xff
	}
	starts := map[string]blobstore.Key{"zero": {}, "top": top, "on the 4th": keys[3], "between": {Owner: blobstore.Owner{4, 0, 1}}}
	for name, start := range starts {
		for _, batch := range []int{1, 2, 4, n, 100} {
			t.Run(fmt.Sprintf("%s/%d", name, batch), func(t *testing.T) {
				scrubBatch = batch
				scrubStart = func() blobstore.Key { return start }
				reads := map[blobstore.Key]int{}
				var mu sync.Mutex
				srv, err := New(Options{Store: &recordingGets{Store: e.store, mu: &mu, reads: reads}, Chain: e.chain, SweepInterval: -1, ScrubBytesPerSecond: -1})
				if err != nil {
					t.Fatal(err)
				}
				if rep, err := srv.Scrub(context.Background()); err != nil || rep.Checked != n {
					t.Fatalf("scrub: %+v, %v", rep, err)
				}
				for _, k := range keys {
					if reads[k] != 1 {
						t.Fatalf("blob %s read %d times, want once (reads %v)", k, reads[k], reads)
					}
				}
			})
		}
	}
}

// TestScrubGoesOnAfterRestart: a pass stopped (the sidecar shutting down)
// keeps its progress in the sidecar's database, and the next pass, in a
// sidecar started again on it, checks only the blobs the stopped one had
// not, whether it stopped before or after wrapping around; the pass after
// that is a whole new one.
func TestScrubGoesOnAfterRestart(t *testing.T) {
	defer func(f func() blobstore.Key, d time.Duration) { scrubStart, scrubSaveEvery = f, d }(scrubStart, scrubSaveEvery)
	scrubSaveEvery = time.Hour // kept when the pass stops, not before
	e := newEnv(t, nil)
	const n = 9
	keys := putBlobs(t, e.store, n, 64)
	// The pass's order from keys[4]: keys[5:], then keys[:5].
	order := append(slices.Clone(keys[5:]), keys[:5]...)
	for _, stopAt := range []int{1, 3, 4, 6, n} { // the Get that finds the context ended
		t.Run(fmt.Sprint(stopAt), func(t *testing.T) {
			dir := t.TempDir()
			scrubStart = func() blobstore.Key { return keys[4] }
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			reads := map[blobstore.Key]int{}
			first := &recordingGets{Store: e.store, mu: &mu, reads: reads, before: func(total int) {
				if total == stopAt {
					cancel()
				}
			}}
			srv, err := New(Options{Store: first, Chain: e.chain, SweepInterval: -1, ScrubBytesPerSecond: -1, RefIndexDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := srv.Scrub(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("stopped pass: %v, want context.Canceled", err)
			}
			if err := srv.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}

			scrubStart = func() blobstore.Key { return keys[1] } // not where it goes on from
			clear(reads)
			srv, err = New(Options{Store: &recordingGets{Store: e.store, mu: &mu, reads: reads}, Chain: e.chain, SweepInterval: -1, ScrubBytesPerSecond: -1, RefIndexDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = srv.Shutdown(context.Background()) }()
			rep, err := srv.Scrub(context.Background())
			if err != nil || rep.Checked != n-(stopAt-1) {
				t.Fatalf("pass that goes on: %+v, %v; want %d checked", rep, err, n-(stopAt-1))
			}
			for i, k := range order {
				want := 1
				if i < stopAt-1 {
					want = 0 // checked by the stopped pass
				}
				if reads[k] != want {
					t.Fatalf("blob %d of the pass read %d times by the pass that goes on, want %d", i, reads[k], want)
				}
			}
			clear(reads)
			if rep, err := srv.Scrub(context.Background()); err != nil || rep.Checked != n {
				t.Fatalf("the next pass: %+v, %v; want all %d checked", rep, err, n)
			}
		})
	}
}

// TestScrubKeepsItsProgress: a pass writes its progress every
// scrubSaveEvery, so a crash (which saves nothing) loses only what it
// checked since; a finished pass leaves none.
func TestScrubKeepsItsProgress(t *testing.T) {
	defer func(f func() blobstore.Key, d time.Duration) { scrubStart, scrubSaveEvery = f, d }(scrubStart, scrubSaveEvery)
	scrubSaveEvery = 0 // after every blob
	e := newEnv(t, nil)
	keys := putBlobs(t, e.store, 6, 64)
	scrubStart = func() blobstore.Key { return keys[3] }
	var srv *Server
	var seen []string
	st := &recordingGets{Store: e.store, mu: new(sync.Mutex), reads: map[blobstore.Key]int{}, before: func(total int) {
		p, err := srv.refs.scrubProgress()
		if err != nil || p == nil {
			seen = append(seen, fmt.Sprintf("%d: %v, %v", total, p, err))
			return
		}
		seen = append(seen, fmt.Sprintf("%d: after %d wrapped %v", total, slices.Index(keys, p.Done), p.Wrapped))
	}}
	srv, err := New(Options{Store: st, Chain: e.chain, SweepInterval: -1, ScrubBytesPerSecond: -1, RefIndexDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(context.Background()) }()
	if _, err := srv.Scrub(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Before the first Get nothing is kept yet; then each blob checked is.
	want := []string{"1: <nil>, <nil>", "2: after 4 wrapped false", "3: after 5 wrapped false",
		"4: after 0 wrapped true", "5: after 1 wrapped true", "6: after 2 wrapped true"}
	if !slices.Equal(seen, want) {
		t.Fatalf("progress before each Get:\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
	if p, err := srv.refs.scrubProgress(); p != nil || err != nil {
		t.Fatalf("a finished pass left progress %+v (%v)", p, err)
	}
}

// recordingGets counts the Gets of each key.
// before, if set, learns each Get's number (from 1) before the Get.
type recordingGets struct {
	blobstore.Store
	mu     *sync.Mutex
	reads  map[blobstore.Key]int
	total  int
	before func(total int)
}

func (s *recordingGets) Get(ctx context.Context, key blobstore.Key, off, n int64) (io.ReadCloser, int64, error) {
	s.mu.Lock()
	s.total++
	if s.before != nil {
		s.before(s.total)
	}
	if ctx.Err() == nil {
		s.reads[key]++
	}
	s.mu.Unlock()
	return s.Store.Get(ctx, key, off, n)
}

// TestScrubStopsWithinARead: a pass whose context ends (the sidecar
// shutting down) stops at the next read of the blob it is reading,
// whatever the rate bound, though the store's reader does not watch the
// context.
func TestScrubStopsWithinARead(t *testing.T) {
	for _, rate := range []int64{-1, 1 << 40} { // no bound; a bound never reached
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			e := newEnv(t, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cs := &countingStore{Store: e.store, onRead: func(n int64) {
				if n == 3 {
					cancel()
				}
			}}
			srv, err := New(Options{Store: cs, Chain: e.chain, SweepInterval: -1, ScrubBytesPerSecond: rate})
			if err != nil {
				t.Fatal(err)
			}
			key := putBlobs(t, e.store, 1, 1<<20)[0] // 256 reads of 4 KiB
			if _, err := srv.Scrub(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("scrub stopped mid-blob: %v, want context.Canceled", err)
			}
			if n := cs.reads.Load(); n > 3 {
				t.Fatalf("%d reads, the context ended at the 3rd", n)
			}
			if _, err := os.Stat(e.store.Path(key)); err != nil {
				t.Fatalf("a pass stopped mid-blob touched the blob: %v", err)
			}
		})
	}
}

// TestScrubRateKeepsNoBurst: time a pass spent not reading (a slow
// listing) earns at most rateBurst of credit: at 1 MiB/s, 10 s after the
// pass started, the MiB read then and one more (a second's credit) are
// due at once, the third is not.
func TestScrubRateKeepsNoBurst(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	l := newRateLimit(1 << 20)
	l.start = time.Now().Add(-10 * time.Second)
	for i := range 2 {
		if err := l.wait(ended, 1<<20); err != nil {
			t.Fatalf("MiB %d after 10 s idle at 1 MiB/s: %v, want no wait", i+1, err)
		}
	}
	if err := l.wait(ended, 1<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("the third MiB: %v, want a wait (cut by the context): the idle time beyond a second is not credit", err)
	}
}

// flakyRead corrupts one byte of the first read of every blob: a transient
// read fault (non-ECC memory, a flaky controller), the bytes at rest
// intact.
type flakyRead struct {
	blobstore.Store
	mu   sync.Mutex
	seen map[blobstore.Key]bool
}

func (s *flakyRead) Get(ctx context.Context, key blobstore.Key, off, n int64) (io.ReadCloser, int64, error) {
	rc, size, err := s.Store.Get(ctx, key, off, n)
	if err != nil {
		return rc, size, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[key] {
		return rc, size, nil
	}
	s.seen[key] = true
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, 0, err
	}
	b[len(b)/2] ^= 0x40
	return io.NopCloser(bytes.NewReader(b)), size, nil
}

// TestScrubTransientFaultDropsNothing: one read that does not hash right
// is not damage at rest: the drop reads the copy again, and keeps it when
// that read is intact.
func TestScrubTransientFaultDropsNothing(t *testing.T) {
	e := newEnv(t, nil)
	srv, err := New(Options{Store: &flakyRead{Store: e.store, seen: map[blobstore.Key]bool{}}, Chain: e.chain, SweepInterval: -1, ScrubBytesPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	putBlobs(t, e.store, 20, 4096)
	rep, err := srv.Scrub(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Dropped != 0 || rep.Damaged != 20 {
		t.Fatalf("a transient fault on each blob's first read: %+v, want 20 found damaged and none dropped", rep)
	}
}

// TestScrubDropBound: a pass drops at most scrubMaxDrops copies; the rest
// of the damaged ones are kept (Held) for the operator to look at.
func TestScrubDropBound(t *testing.T) {
	e := newEnv(t, nil)
	const n = scrubMaxDrops + 5
	putBlobs(t, e.store, n, 64)
	if err := e.store.List(context.Background(), func(i blobstore.Info) bool {
		if err := os.WriteFile(e.store.Path(i.Key), bytes.Repeat([]byte{0}, int(i.Size)), 0o600); err != nil {
			t.Fatal(err)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	rep, err := e.srv.Scrub(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Damaged != n || rep.Dropped != scrubMaxDrops || rep.Held != 5 {
		t.Fatalf("a store of %d zeroed copies: %+v, want %d dropped and 5 held", n, rep, scrubMaxDrops)
	}
}
