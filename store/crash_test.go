package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"

	dbm "github.com/cosmos/cosmos-db"
)

// faultDB wraps a database to simulate a crash between two batch writes:
// once failAfter batches have been written, later batches are silently
// dropped (they never reach the disk), while the process carries on as if
// they had been written. It counts every batch write attempted, and ignores
// Close so that a "crashed" store can be reopened on the surviving data.
type faultDB struct {
	dbm.DB
	mu        sync.Mutex
	writes    int
	failAfter int // -1: never drop
}

func (f *faultDB) NewBatch() dbm.Batch { return &faultBatch{Batch: f.DB.NewBatch(), f: f} }
func (f *faultDB) NewBatchWithSize(n int) dbm.Batch {
	return &faultBatch{Batch: f.DB.NewBatchWithSize(n), f: f}
}
func (f *faultDB) Close() error { return nil }

// reaches reports whether the next batch write reaches the disk.
func (f *faultDB) reaches() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	return f.failAfter < 0 || f.writes <= f.failAfter
}

type faultBatch struct {
	dbm.Batch
	f *faultDB
}

func (b *faultBatch) Write() error {
	if !b.f.reaches() {
		return nil // lost in the crash
	}
	return b.Batch.Write()
}

func (b *faultBatch) WriteSync() error {
	if !b.f.reaches() {
		return nil
	}
	return b.Batch.WriteSync()
}

// TestCommitIsAtomic crashes a large Commit after 0, 1, 2, ... of its batch
// writes reached the disk. Every time, the reopened store must load and be
// exactly at the previous version, until the crash point is past all of the
// commit's writes; then the new version must be complete. With iavl's
// default 100 kB flush threshold this fails: a version is written in many
// batches, and a half-written one is taken as the latest and cannot be
// loaded.
func TestCommitIsAtomic(t *testing.T) {
	f := &faultDB{DB: dbm.NewMemDB(), failAfter: -1}
	opts := Options{Backend: BackendMemDB, CacheSize: 10_000}
	open := func() *Store {
		t.Helper()
		s, err := openWithDB(f, opts)
		if err != nil {
			t.Fatalf("reopen after crash: %v", err)
		}
		return s
	}
	s := open()
	rng := rand.New(rand.NewSource(5))
	for i := 0; i < 2000; i++ {
		if err := s.Working().Set([]byte(keyN(i)), benchValue(rng)); err != nil {
			t.Fatal(err)
		}
	}
	h1, v1 := mustCommit(t, s)

	// a block big enough for many 100 kB flushes: 3,000 writes x 300 bytes
	block := func(s *Store) {
		c := NewCache(s.Working())
		r := rand.New(rand.NewSource(6))
		for i := 0; i < 3000; i++ {
			if err := c.Set([]byte(keyN(r.Intn(6000))), benchValue(r)); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Write(); err != nil {
			t.Fatal(err)
		}
	}
	ref := memStore(t)
	r := rand.New(rand.NewSource(5))
	for i := 0; i < 2000; i++ {
		mustSet(t, ref.Working(), keyN(i), string(benchValue(r)))
	}
	mustCommit(t, ref)
	block(ref)
	hRef, vRef := mustCommit(t, ref)

	for crashAfter := 0; crashAfter < 1000; crashAfter++ {
		s = open()
		block(s)
		f.mu.Lock()
		f.writes, f.failAfter = 0, crashAfter
		f.mu.Unlock()
		mustCommit(t, s) // in memory it "succeeds"; then the machine dies
		f.mu.Lock()
		attempted := f.writes
		f.failAfter = -1
		f.mu.Unlock()
		// abandon s without Close

		s = open()
		v, h := s.LastCommit()
		if crashAfter < attempted {
			if v != v1 || !bytes.Equal(h, h1) {
				t.Fatalf("crash after %d of %d batch writes: reopened at %d %X, want %d %X", crashAfter, attempted, v, h, v1, h1)
			}
			continue
		}
		if attempted != 1 {
			t.Fatalf("a version took %d batch writes, want 1 (atomic)", attempted)
		}
		if v != vRef || !bytes.Equal(h, hRef) {
			t.Fatalf("after the completed commit: reopened at %d %X, want %d %X", v, h, vRef, hRef)
		}
		return
	}
	t.Fatal("commit never completed")
}

func TestFaultDBSanity(t *testing.T) {
	// the fault injector itself: a dropped batch leaves nothing behind, an
	// allowed one is written
	f := &faultDB{DB: dbm.NewMemDB(), failAfter: 1}
	for i, k := range []string{"first", "second"} {
		b := f.NewBatch()
		if err := b.Set([]byte(k), []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := b.Write(); err != nil {
			t.Fatal(err)
		}
		v, _ := f.Get([]byte(k))
		if (i == 0) != (v != nil) {
			t.Fatalf("batch %d (%s): stored %q", i, k, v)
		}
	}
}

// failingDB fails the batch write number failAt (counting from 1) with an
// error, as a full or broken disk would. Batches may be written from
// several goroutines (a restore's importer writes from one of its own).
type failingDB struct {
	dbm.DB
	writes atomic.Int64
	failAt int64
}

var errDiskFull = errors.New("disk full")

func (f *failingDB) NewBatch() dbm.Batch { return &failingBatch{Batch: f.DB.NewBatch(), f: f} }
func (f *failingDB) NewBatchWithSize(n int) dbm.Batch {
	return &failingBatch{Batch: f.DB.NewBatchWithSize(n), f: f}
}

type failingBatch struct {
	dbm.Batch
	f *failingDB
}

func (b *failingBatch) Write() error { return b.write(b.Batch.Write) }
func (b *failingBatch) WriteSync() error {
	return b.write(b.Batch.WriteSync)
}

func (b *failingBatch) write(w func() error) error {
	if b.f.writes.Add(1) == b.f.failAt {
		return errDiskFull
	}
	return w()
}

// TestPruneFailureKeepsTheVersion: when only the pruning after a saved
// version fails, Commit reports ErrPruneFailed with the version and its
// hash; the version is committed, the store carries on, and the next prune
// point prunes.
func TestPruneFailureKeepsTheVersion(t *testing.T) {
	// Writes: version 1 (1), version 2 (2), then the prune of version 1 (3).
	f := &failingDB{DB: dbm.NewMemDB(), failAt: 3}
	s, err := openWithDB(f, Options{Backend: BackendMemDB, CacheSize: 1000, KeepRecent: 1, PruneInterval: 2})
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, s.Working(), "a", "1")
	mustCommit(t, s)
	mustSet(t, s.Working(), "a", "2")
	hash, version, err := s.Commit()
	if !errors.Is(err, ErrPruneFailed) || !errors.Is(err, errDiskFull) || version != 2 || len(hash) == 0 {
		t.Fatalf("Commit with a failing prune = %x, %d, %v; want version 2 and ErrPruneFailed", hash, version, err)
	}
	if v, h := s.LastCommit(); v != 2 || !bytes.Equal(h, hash) {
		t.Fatalf("last commit %d %x, want 2 %x", v, h, hash)
	}
	if s.FirstVersion() != 1 {
		t.Fatalf("first version %d after the failed prune, want 1", s.FirstVersion())
	}
	for i := 3; i <= 4; i++ {
		mustSet(t, s.Working(), "a", fmt.Sprint(i))
		mustCommit(t, s)
	}
	if s.FirstVersion() != 4 {
		t.Fatalf("first version %d after the next prune point, want 4", s.FirstVersion())
	}
}
