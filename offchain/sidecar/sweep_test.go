package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	dbm "github.com/cosmos/cosmos-db"

	"github.com/emrchain/emrchain/offchain/blobstore"
)

// ageBlobs moves the modification time of every blob in e's store two
// hours back, as if each was uploaded two hours ago: past a one-hour grace
// period, while the chain's blocks, the sweep's other bound, are recent.
func ageBlobs(t *testing.T, e *env) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(e.store.Dir(), "blobs"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		old := info.ModTime().Add(-2 * time.Hour)
		return os.Chtimes(path, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// storeBlob puts data into e's store directly, for e's patient and
// testCategory, and returns its sum.
func storeBlob(t *testing.T, e *env, data string) [32]byte {
	t.Helper()
	sum := sha256.Sum256([]byte(data))
	if err := e.store.Put(context.Background(), e.key(sum), strings.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	return sum
}

// wantStored fails unless each blob of e's patient and testCategory is
// stored (want true) or gone.
func wantStored(t *testing.T, e *env, want bool, sums ...[32]byte) {
	t.Helper()
	for _, s := range sums {
		_, err := e.store.Stat(context.Background(), e.key(s))
		switch {
		case want && err != nil:
			t.Fatalf("blob %x was deleted: %v", s, err)
		case !want && !errors.Is(err, blobstore.ErrNotFound):
			t.Fatalf("blob %x survived: %v", s, err)
		}
	}
}

// newSweeper is a second server over e's store and chain, with its
// reference index in dir. Every blob stored so far is aged (ageBlobs).
func newSweeper(t *testing.T, e *env, dir string) *Server {
	t.Helper()
	ageBlobs(t, e)
	srv, err := New(Options{Store: e.store, Chain: e.chain, SweepInterval: -1, RefIndexDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func shutdown(t *testing.T, srv *Server) {
	t.Helper()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSweep(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.SweepGrace = time.Hour
		o.SweepMaxDeletes = 2
	})
	ctx := context.Background()
	var orphans [][32]byte
	for i := range 5 {
		d := []byte{byte(i), 'o'}
		if _, err := e.put(e.writer, d); err != nil {
			t.Fatal(err)
		}
		orphans = append(orphans, sha256.Sum256(d))
	}
	kept := []byte("referenced")
	keptSum := sha256.Sum256(kept)
	if _, err := e.put(e.writer, kept); err != nil {
		t.Fatal(err)
	}
	keptRec := e.chain.addRecord(e.pid, keptSum, e.writer)
	e.chain.advance(time.Second)
	shared := []byte("shared with a study")
	sharedSum := sha256.Sum256(shared)
	if _, err := e.put(e.writer, shared); err != nil {
		t.Fatal(err)
	}
	e.chain.addShare(keptRec, "s1", sharedSum, e.writer)

	// Young blobs are never swept.
	rep, err := e.srv.Sweep(ctx)
	if err != nil || rep.Deleted != 0 || rep.Checked != 0 || rep.Height != 11 {
		t.Fatalf("sweep of young blobs: %+v %v", rep, err)
	}
	ageBlobs(t, e)
	// The chain down: the index cannot catch up, nothing is deleted.
	e.chain.down = true
	rep, err = e.srv.Sweep(ctx)
	if err == nil || !errors.Is(err, ErrChainUnavailable) || !strings.Contains(err.Error(), "nothing deleted") || rep.Deleted != 0 || rep.Checked != 0 {
		t.Fatalf("sweep with the chain down: %+v %v", rep, err)
	}
	wantStored(t, e, true, orphans...)
	e.chain.down = false
	total := 0
	for pass := 0; pass < 6 && total < 5; pass++ {
		rep, err := e.srv.Sweep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Deleted > 2 {
			t.Fatalf("pass deleted %d, bound is 2", rep.Deleted)
		}
		total += rep.Deleted
	}
	if total != 5 {
		t.Fatalf("deleted %d orphans in 6 passes, want 5", total)
	}
	wantStored(t, e, false, orphans...)
	wantStored(t, e, true, keptSum, sharedSum)
	// A reference committed later (the upload is older than the grace
	// period, the transaction newer than the last catch-up) is read by the
	// next pass before it deletes anything.
	late := storeBlob(t, e, "referenced late")
	ageBlobs(t, e)
	e.chain.advance(time.Second)
	e.chain.addRecord(e.pid, late, e.writer)
	if rep, err := e.srv.Sweep(ctx); err != nil || rep.Deleted != 0 || rep.Kept != 3 || rep.Height != 12 {
		t.Fatalf("sweep after a new record: %+v %v", rep, err)
	}
	wantStored(t, e, true, late, keptSum, sharedSum)
}

// TestSweepIndexPersists: a sweeper restarted over the same index
// directory reads only the blocks after its cursor (and the cursor's block
// again, to check it is the same chain), not the chain from height 1, and
// still knows the references it read before. An index from another chain
// is refused.
func TestSweepIndexPersists(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	dir := t.TempDir()
	kept := storeBlob(t, e, "record at height 10")
	e.chain.addRecord(e.pid, kept, e.writer)
	e.chain.advance(time.Second) // head 11

	first := newSweeper(t, e, dir)
	if rep, err := first.Sweep(ctx); err != nil || rep.Height != 11 || rep.Kept != 1 {
		t.Fatalf("first sweep: %+v %v", rep, err)
	}
	if !slices.Equal(e.chain.blockCalls, []int64{1}) {
		t.Fatalf("first sweep asked for blocks from %v, want [1]", e.chain.blockCalls)
	}
	shutdown(t, first)

	orphan := storeBlob(t, e, "never referenced")
	e.chain.advance(time.Second) // head 12
	e.chain.blockCalls = nil
	again := newSweeper(t, e, dir)
	rep, err := again.Sweep(ctx)
	if err != nil || rep.Height != 12 || rep.Kept != 1 || rep.Deleted != 1 {
		t.Fatalf("sweep after the restart: %+v %v", rep, err)
	}
	if !slices.Equal(e.chain.blockCalls, []int64{11}) {
		t.Fatalf("restarted sweep asked for blocks from %v, want [11]: the index was read again", e.chain.blockCalls)
	}
	wantStored(t, e, true, kept)
	wantStored(t, e, false, orphan)
	shutdown(t, again)

	// The same directory over another chain (block 12 has another time).
	other := storeBlob(t, e, "orphan of the other chain")
	e.chain.times[12] = e.chain.times[12].Add(time.Millisecond)
	moved := newSweeper(t, e, dir)
	defer shutdown(t, moved)
	if rep, err := moved.Sweep(ctx); err == nil || !strings.Contains(err.Error(), "another chain") || rep.Deleted != 0 {
		t.Fatalf("sweep over another chain: %+v %v", rep, err)
	}
	wantStored(t, e, true, other)
}

// TestSweepCatchUpFails: a block that cannot be read in the middle of a
// catch-up stops the pass before it deletes anything; the next pass
// resumes after the last complete page.
func TestSweepCatchUpFails(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for range 40 {
		e.chain.advance(time.Second)
	}
	kept := storeBlob(t, e, "record at height 50")
	e.chain.addRecord(e.pid, kept, e.writer)
	orphan := storeBlob(t, e, "orphan")
	srv := newSweeper(t, e, "")
	defer shutdown(t, srv)

	e.chain.failBlock = 30
	rep, err := srv.Sweep(ctx)
	if !errors.Is(err, ErrChainUnavailable) || rep.Deleted != 0 || rep.Checked != 0 {
		t.Fatalf("sweep with block 30 unreadable: %+v %v", rep, err)
	}
	wantStored(t, e, true, kept, orphan)
	if cur, _ := srv.refs.cursor(); cur.Height != refPageBlocks {
		t.Fatalf("index complete through %d after the failure, want %d (the first page)", cur.Height, refPageBlocks)
	}

	e.chain.failBlock = 0
	e.chain.blockCalls = nil
	rep, err = srv.Sweep(ctx)
	if err != nil || rep.Height != 50 || rep.Deleted != 1 || rep.Kept != 1 {
		t.Fatalf("sweep once block 30 is readable: %+v %v", rep, err)
	}
	if e.chain.blockCalls[0] != refPageBlocks {
		t.Fatalf("the second pass started at %d, want %d", e.chain.blockCalls[0], refPageBlocks)
	}
	wantStored(t, e, true, kept)
	wantStored(t, e, false, orphan)
}

// TestSweepWithoutBlocks: a chain view without block listing never lets
// the sweep delete.
func TestSweepWithoutBlocks(t *testing.T) {
	e := newEnv(t, nil)
	view := NewQueryChainView(nil, e.chain.Head, nil)
	orphan := storeBlob(t, e, "orphan")
	ageBlobs(t, e)
	srv, err := New(Options{Store: e.store, Chain: view, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, srv)
	if rep, err := srv.Sweep(context.Background()); err == nil || !strings.Contains(err.Error(), "BlocksFunc") || rep.Deleted != 0 {
		t.Fatalf("sweep without BlocksFunc: %+v %v", rep, err)
	}
	wantStored(t, e, true, orphan)
}

// TestSweepCutoffBeforeCatchUp: a record committed while the catch-up runs
// (after it read the chain's head) is not in the index, and its blob,
// uploaded within the grace period before the commit, must be younger than
// the pass's cutoff however long the catch-up took: the pass reads its
// clock before the catch-up. Read after it (as it was until 2026-11-22),
// the cutoff here is 90 minutes later and the blob is deleted. The
// validators' clock runs three hours ahead of the sidecar's, so the time of
// the head block, the cutoff's other bound, does not cover for it.
func TestSweepCutoffBeforeCatchUp(t *testing.T) {
	uploaded := time.Now()
	now := uploaded.Add(30 * time.Minute)
	e := newEnv(t, func(o *Options) {
		o.SweepGrace = time.Hour
		o.Now = func() time.Time { return now }
	})
	e.chain.shift(3 * time.Hour)
	late := storeBlob(t, e, "referenced while the catch-up runs")
	e.chain.afterBlocks = func() {
		now = uploaded.Add(2 * time.Hour) // the catch-up took 90 minutes
		e.chain.advance(time.Second)      // head 11: past the head the catch-up read
		e.chain.addRecord(e.pid, late, e.writer)
	}
	rep, err := e.srv.Sweep(context.Background())
	if err != nil || rep.Height != 10 || rep.Deleted != 0 || e.chain.head.Height != 11 {
		t.Fatalf("sweep: %+v %v", rep, err)
	}
	wantStored(t, e, true, late)
}

// TestSweepHeadBehind: the node the sidecar asks stopped following the
// chain three hours ago (partitioned, or halted), and answers with that
// head. A blob uploaded two hours ago whose record the chain committed
// since is in none of the node's blocks, and neither the pass's clock nor
// the grace period protects it: the pass checks only blobs uploaded a grace
// period before the head block's time. Until 2026-11-23 the cutoff was the
// clock's alone, and this pass deleted both blobs. Once the node follows
// the chain again, the orphan goes and the record's blob stays.
func TestSweepHeadBehind(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.SweepGrace = time.Hour })
	ctx := context.Background()
	e.chain.shift(-3 * time.Hour)
	recorded := storeBlob(t, e, "its record is in a block the node does not have")
	orphan := storeBlob(t, e, "never referenced")
	ageBlobs(t, e)
	rep, err := e.srv.Sweep(ctx)
	if err != nil || rep.Checked != 0 || rep.Deleted != 0 || rep.HeadBehind < 3*time.Hour-time.Minute ||
		!rep.Cutoff.Equal(e.chain.head.Time.Add(-time.Hour)) {
		t.Fatalf("sweep against a node three hours behind: %+v %v", rep, err)
	}
	wantStored(t, e, true, recorded, orphan)

	e.chain.advance(3 * time.Hour) // the node follows the chain again: head 11, now
	e.chain.addRecord(e.pid, recorded, e.writer)
	rep, err = e.srv.Sweep(ctx)
	if err != nil || rep.Deleted != 1 || rep.Kept != 1 || rep.HeadBehind > time.Minute {
		t.Fatalf("sweep once the node follows the chain: %+v %v", rep, err)
	}
	wantStored(t, e, true, recorded)
	wantStored(t, e, false, orphan)
}

// restoredChain makes e's chain look like a node restored from a snapshot
// at height 9 whose blocks start at 10: two records and a share made before
// it (in the state only), then one record in a block the node holds. It
// returns the sums of the four referenced blobs.
func restoredChain(t *testing.T, e *env) [][32]byte {
	t.Helper()
	first := storeBlob(t, e, "record before the snapshot")
	rec := e.chain.addRecord(e.pid, first, e.writer)
	second := storeBlob(t, e, "another record before the snapshot")
	e.chain.addRecord(e.pid, second, e.writer)
	shared := storeBlob(t, e, "shared before the snapshot")
	e.chain.addShare(rec, "s1", shared, e.writer)
	e.chain.advance(time.Second) // head 11
	e.chain.head.Earliest = 10
	late := storeBlob(t, e, "record at height 12, after the restore")
	e.chain.advance(time.Second)
	e.chain.addRecord(e.pid, late, e.writer)
	return [][32]byte{first, second, shared, late}
}

// TestSweepSeedsFromState: on a node whose blocks start above height 1 (a
// state-synced node) the reference index is read from the state's records
// and shares (several pages), with the cursor at the state's height, and
// from the blocks after it; the sweep then deletes the orphans and keeps
// every referenced blob, the ones only the state knows included. A restart
// over the same index reads neither the state nor the blocks again.
func TestSweepSeedsFromState(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	referenced := restoredChain(t, e)
	orphan := storeBlob(t, e, "never referenced")
	dir := t.TempDir()

	srv := newSweeper(t, e, dir)
	rep, err := srv.Sweep(ctx)
	if err != nil || rep.Height != 12 || rep.Deleted != 1 || rep.Kept != len(referenced) {
		t.Fatalf("sweep of a restored node: %+v %v", rep, err)
	}
	wantStored(t, e, true, referenced...)
	wantStored(t, e, false, orphan)
	if e.chain.stateCalls != 2 { // 4 blobs, 2 per page of the fake
		t.Fatalf("%d StateBlobs calls for 4 blobs, want 2", e.chain.stateCalls)
	}
	if !slices.Equal(e.chain.blockCalls, []int64{12, 13}) {
		t.Fatalf("blocks asked from %v, want [12 13]: the state's height, then after it", e.chain.blockCalls)
	}
	if cur, _ := srv.refs.cursor(); cur.Height != 12 || !cur.Time.Equal(e.chain.times[12]) {
		t.Fatalf("cursor %+v, want block 12 at %s", cur, e.chain.times[12])
	}
	shutdown(t, srv)

	e.chain.blockCalls, e.chain.stateCalls = nil, 0
	again := newSweeper(t, e, dir)
	defer shutdown(t, again)
	if rep, err := again.Sweep(ctx); err != nil || rep.Height != 12 || rep.Kept != len(referenced) {
		t.Fatalf("sweep after the restart: %+v %v", rep, err)
	}
	if e.chain.stateCalls != 0 || !slices.Equal(e.chain.blockCalls, []int64{12}) {
		t.Fatalf("the restarted sweep read the state %d times and blocks from %v, want 0 and [12]", e.chain.stateCalls, e.chain.blockCalls)
	}
}

// TestSweepReseedsAnIndexBelowTheEarliestBlock: an index kept on disk
// across a state-sync rejoin, whose cursor is now below the node's earliest
// block, is read again from the state, keeping the keys it has. The sweep
// keeps every referenced blob, those of records made while the node was
// away included, and deletes the orphan. Until 2026-11-22 every pass failed
// there, asking the operator to remove the index directory.
func TestSweepReseedsAnIndexBelowTheEarliestBlock(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	dir := t.TempDir()
	onlyIndexed := storeBlob(t, e, "a blob only the old index knows")
	e.chain.addRecord(e.pid, onlyIndexed, e.writer) // at the head, 10
	srv := newSweeper(t, e, dir)
	if rep, err := srv.Sweep(ctx); err != nil || rep.Height != 10 {
		t.Fatalf("sweep before the node left: %+v %v", rep, err)
	}
	shutdown(t, srv)
	// The state no longer lists it (it never loses a record; this is how
	// the test sees that the reseed keeps the index's keys).
	e.chain.records = nil

	// Away, the node misses blocks 11-14; it rejoins from a snapshot at 14.
	e.chain.advance(time.Second)
	var away [][32]byte
	for i := range 3 { // two pages of the fake's state
		away = append(away, storeBlob(t, e, fmt.Sprintf("record %d, made while the node was away", i)))
		e.chain.addRecord(e.pid, away[i], e.writer) // at 11
	}
	for range 3 {
		e.chain.advance(time.Second)
	}
	e.chain.head.Earliest = 15
	late := storeBlob(t, e, "a record after the rejoin")
	e.chain.advance(time.Second)
	e.chain.addRecord(e.pid, late, e.writer) // at 15
	orphan := storeBlob(t, e, "never referenced")

	again := newSweeper(t, e, dir)
	defer shutdown(t, again)
	// Cut short after its first page, the new seed deletes nothing and
	// leaves the index complete through its old cursor.
	again.refs.onAdd = func([]blobstore.Key) { e.chain.down = true }
	if _, err := again.Sweep(ctx); !errors.Is(err, ErrChainUnavailable) || !strings.Contains(err.Error(), "complete through height 10") {
		t.Fatalf("sweep with the chain down after the state's first page: %v", err)
	}
	if cur, _ := again.refs.cursor(); cur.Height != 10 {
		t.Fatalf("cursor at %d after a reseed cut short, want 10", cur.Height)
	}
	wantStored(t, e, true, append(away, onlyIndexed, late, orphan)...)

	again.refs.onAdd, e.chain.down, e.chain.stateCalls = nil, false, 0
	rep, err := again.Sweep(ctx)
	if err != nil || rep.Height != 15 || rep.Deleted != 1 {
		t.Fatalf("sweep after the rejoin: %+v %v", rep, err)
	}
	wantStored(t, e, true, append(away, onlyIndexed, late)...)
	wantStored(t, e, false, orphan)
	if e.chain.stateCalls != 1 {
		t.Fatalf("the reseed read %d pages of the state after it was cut short, want 1: the page left", e.chain.stateCalls)
	}
	if cur, _ := again.refs.cursor(); cur.Height != 15 || !cur.Time.Equal(e.chain.times[15]) {
		t.Fatalf("cursor %+v, want block 15 at %s", cur, e.chain.times[15])
	}
}

// TestSweepIndexAtASnapshotsHeight: a node restored from a snapshot at the
// height of its kept index's cursor holds every block after it, only not
// the block at the cursor that the catch-up would check. It reads on from
// the next block, without the state.
func TestSweepIndexAtASnapshotsHeight(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	dir := t.TempDir()
	srv := newSweeper(t, e, dir)
	if rep, err := srv.Sweep(ctx); err != nil || rep.Height != 10 {
		t.Fatalf("first sweep: %+v %v", rep, err)
	}
	shutdown(t, srv)
	e.chain.head.Earliest = 11
	e.chain.advance(time.Second)
	late := storeBlob(t, e, "a record after the restore")
	e.chain.addRecord(e.pid, late, e.writer) // at 11
	orphan := storeBlob(t, e, "never referenced")

	e.chain.blockCalls, e.chain.stateCalls = nil, 0
	again := newSweeper(t, e, dir)
	defer shutdown(t, again)
	if rep, err := again.Sweep(ctx); err != nil || rep.Height != 11 || rep.Deleted != 1 {
		t.Fatalf("sweep after the restore: %+v %v", rep, err)
	}
	wantStored(t, e, true, late)
	wantStored(t, e, false, orphan)
	if e.chain.stateCalls != 0 || !slices.Equal(e.chain.blockCalls, []int64{11}) {
		t.Fatalf("read the state %d times and blocks from %v, want 0 and [11]", e.chain.stateCalls, e.chain.blockCalls)
	}
}

// TestSweepSeedProgressBelowTheEarliestBlock: a seed cut short after its
// last page, whose pages were read at a height the node then pruned, reads
// the state again instead of asking every pass for a block the node no
// longer has.
func TestSweepSeedProgressBelowTheEarliestBlock(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	referenced := restoredChain(t, e) // head 12, blocks from 10
	orphan := storeBlob(t, e, "never referenced")
	srv := newSweeper(t, e, t.TempDir())
	defer shutdown(t, srv)
	e.chain.failBlock = 12 // the block the seed's cursor goes to
	if _, err := srv.Sweep(ctx); !errors.Is(err, ErrChainUnavailable) {
		t.Fatalf("sweep with block 12 unreadable: %v", err)
	}
	if prog, err := srv.refs.seedProgress(); err != nil || !prog.Done || prog.Height != 12 {
		t.Fatalf("seed progress %+v %v, want every page read at 12", prog, err)
	}

	e.chain.failBlock = 0
	e.chain.advance(time.Second)
	e.chain.head.Earliest = 13 // pruned past the seed's height
	e.chain.stateCalls = 0
	if rep, err := srv.Sweep(ctx); err != nil || rep.Height != 13 || rep.Deleted != 1 {
		t.Fatalf("sweep after the node pruned past the seed: %+v %v", rep, err)
	}
	wantStored(t, e, true, referenced...)
	wantStored(t, e, false, orphan)
	if e.chain.stateCalls != 2 {
		t.Fatalf("%d pages of the state read, want both again", e.chain.stateCalls)
	}
}

// TestSweepSeedFails: a seed that stops half way (the chain down after its
// first page) leaves the cursor at 0 and deletes nothing; the next pass
// goes on from the page that failed. A node that holds block 1 never reads
// the state.
func TestSweepSeedFails(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	referenced := restoredChain(t, e)
	orphan := storeBlob(t, e, "never referenced")
	srv := newSweeper(t, e, "")
	defer shutdown(t, srv)

	srv.refs.onAdd = func([]blobstore.Key) { e.chain.down = true }
	rep, err := srv.Sweep(ctx)
	if !errors.Is(err, ErrChainUnavailable) || rep.Deleted != 0 || rep.Checked != 0 || e.chain.stateCalls != 2 {
		t.Fatalf("sweep with the chain down after the first page: %+v %v (%d StateBlobs calls)", rep, err, e.chain.stateCalls)
	}
	if cur, _ := srv.refs.cursor(); cur.Height != 0 {
		t.Fatalf("cursor at %d after a failed seed, want 0", cur.Height)
	}
	wantStored(t, e, true, append(referenced, orphan)...)

	srv.refs.onAdd, e.chain.down, e.chain.stateCalls = nil, false, 0
	if rep, err := srv.Sweep(ctx); err != nil || rep.Deleted != 1 || rep.Kept != len(referenced) || e.chain.stateCalls != 1 {
		t.Fatalf("the next sweep: %+v %v (%d StateBlobs calls, want 1: the second page)", rep, err, e.chain.stateCalls)
	}
	wantStored(t, e, true, referenced...)

	// A node whose pages go round in a cycle is refused, not followed
	// forever.
	cyclic := newEnv(t, nil)
	restoredChain(t, cyclic)
	cyclic.chain.stateCycle = true
	sweeper := newSweeper(t, cyclic, "")
	defer shutdown(t, sweeper)
	if _, err := sweeper.Sweep(ctx); err == nil || !strings.Contains(err.Error(), "cycle") || cyclic.chain.stateCalls > 3 {
		t.Fatalf("sweep over pages in a cycle: %v after %d pages", err, cyclic.chain.stateCalls)
	}

	full := newEnv(t, nil)
	storeBlob(t, full, "orphan")
	fullSweeper := newSweeper(t, full, "")
	defer shutdown(t, fullSweeper)
	if rep, err := fullSweeper.Sweep(ctx); err != nil || rep.Deleted != 1 || full.chain.stateCalls != 0 {
		t.Fatalf("sweep of a node with every block: %+v %v (%d StateBlobs calls)", rep, err, full.chain.stateCalls)
	}
}

// writeLog records every write that reaches a database as a unit: one
// batch, or one Set or Delete outside a batch.
type writeLog struct {
	dbm.DB
	units  [][]writeOp
	synced []bool
}

type writeOp struct {
	key, value []byte // value nil: delete
}

type loggedBatch struct {
	dbm.Batch
	log *writeLog
	ops []writeOp
}

func (l *writeLog) NewBatch() dbm.Batch { return &loggedBatch{Batch: l.DB.NewBatch(), log: l} }

func (l *writeLog) unit(sync bool, ops ...writeOp) {
	l.units = append(l.units, ops)
	l.synced = append(l.synced, sync)
}

func (l *writeLog) Set(k, v []byte) error     { l.unit(false, writeOp{k, v}); return l.DB.Set(k, v) }
func (l *writeLog) SetSync(k, v []byte) error { l.unit(true, writeOp{k, v}); return l.DB.SetSync(k, v) }
func (l *writeLog) Delete(k []byte) error     { l.unit(false, writeOp{k, nil}); return l.DB.Delete(k) }
func (l *writeLog) DeleteSync(k []byte) error {
	l.unit(true, writeOp{k, nil})
	return l.DB.DeleteSync(k)
}

func (b *loggedBatch) Set(k, v []byte) error {
	b.ops = append(b.ops, writeOp{bytes.Clone(k), bytes.Clone(v)})
	return b.Batch.Set(k, v)
}

func (b *loggedBatch) Delete(k []byte) error {
	b.ops = append(b.ops, writeOp{bytes.Clone(k), nil})
	return b.Batch.Delete(k)
}

func (b *loggedBatch) Write() error     { b.log.unit(false, b.ops...); return b.Batch.Write() }
func (b *loggedBatch) WriteSync() error { b.log.unit(true, b.ops...); return b.Batch.WriteSync() }

// TestRefIndexCrashConsistency: a crash after any write leaves an index
// whose cursor vouches only for sums it holds. Every write unit is replayed
// in turn into a fresh database, as a crash right after it would leave the
// disk, and the reopened index must hold every blob of blocks 1 through its
// cursor. Each unit is synced.
func TestRefIndexCrashConsistency(t *testing.T) {
	chain := newFakeChain(time.Now())
	writer := chain.addMember("writer", 0, "")
	pid := bytes.Repeat([]byte{1}, 32)
	for i := range 45 {
		if i%3 == 0 {
			chain.addRecord(pid, sha256.Sum256([]byte{byte(i), 'r'}), writer)
		}
		if i%7 == 0 {
			chain.addShare(chain.records[0], "s1", sha256.Sum256([]byte{byte(i), 's'}), writer)
		}
		chain.advance(time.Second)
	}
	log := loggedCatchUp(t, chain)
	if len(log.units) < 3 {
		t.Fatalf("%d writes for %d blocks: want one per page", len(log.units), chain.head.Height)
	}
	disk := dbm.NewMemDB()
	for i, unit := range log.units {
		if !log.synced[i] {
			t.Fatalf("write %d is not synced", i)
		}
		replay(t, disk, unit)
		after, err := newRefIndex(disk)
		if err != nil {
			t.Fatal(err)
		}
		cur, _ := after.cursor()
		if cur.Height == 0 {
			t.Fatalf("write %d moved no cursor", i)
		}
		if !cur.Time.Equal(chain.times[cur.Height]) {
			t.Fatalf("after write %d the cursor is at height %d, time %s; the block's time is %s", i, cur.Height, cur.Time, chain.times[cur.Height])
		}
		blocks, err := chain.BlockBlobs(context.Background(), 1, int(cur.Height))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			for _, blob := range b.Blobs {
				if ok, err := after.has(blob.Key); err != nil || !ok {
					t.Fatalf("after write %d the cursor is at height %d but blob %s of block %d is missing", i, cur.Height, blob.Key, b.Height)
				}
			}
		}
	}
}

// TestRefIndexSeedCrashConsistency: a crash after any write of a seed from
// the state leaves either an index whose cursor is still 0, from which a
// catch-up goes on to a complete index, or one that holds every blob the
// state references; only the write that moves the cursor is synced.
func TestRefIndexSeedCrashConsistency(t *testing.T) {
	chain := newFakeChain(time.Now())
	writer := chain.addMember("writer", 0, "")
	pid := bytes.Repeat([]byte{1}, 32)
	for i := range 7 {
		rec := chain.addRecord(pid, sha256.Sum256([]byte{byte(i), 'r'}), writer)
		chain.addShare(rec, "s1", sha256.Sum256([]byte{byte(i), 's'}), writer)
	}
	chain.head.Earliest = 9
	state, err := chain.StateBlobs(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var all []blobstore.Key
	for page := state; ; {
		all = append(all, blobKeys(page.Blobs)...)
		if page.Next == "" {
			break
		}
		if page, err = chain.StateBlobs(context.Background(), page.Next); err != nil {
			t.Fatal(err)
		}
	}
	log := loggedCatchUp(t, chain)
	if want := len(all)/fakeStatePage + 1; len(log.units) != want {
		t.Fatalf("%d writes for %d blobs in pages of %d: want one per page and one for the cursor", len(log.units), len(all), fakeStatePage)
	}
	disk := dbm.NewMemDB()
	for i, unit := range log.units {
		last := i == len(log.units)-1
		if log.synced[i] != last {
			t.Fatalf("write %d of %d: synced %v", i, len(log.units), log.synced[i])
		}
		replay(t, disk, unit)
		after, err := newRefIndex(copyDB(t, disk))
		if err != nil {
			t.Fatal(err)
		}
		cur, _ := after.cursor()
		if cur.Height != 0 && !last || cur.Height != chain.head.Height && last {
			t.Fatalf("after write %d of %d the cursor is at %d", i, len(log.units), cur.Height)
		}
		if !last { // restarted from here, the seed goes on and completes
			chain.stateCalls = 0
			if cur, err = after.catchUp(context.Background(), chain, nopLogger{}); err != nil || cur.Height != chain.head.Height {
				t.Fatalf("catch-up after write %d: %+v %v", i, cur, err)
			}
			if want := len(log.units) - 1 - (i + 1); chain.stateCalls != want {
				t.Fatalf("catch-up after write %d of %d read %d pages, want the %d left", i, len(log.units), chain.stateCalls, want)
			}
		}
		for _, k := range all {
			if ok, err := after.has(k); err != nil || !ok {
				t.Fatalf("after write %d the cursor is at %d but blob %s is missing", i, cur.Height, k)
			}
		}
	}
}

// loggedCatchUp catches a new index in memory up with chain and returns
// the log of its writes.
func loggedCatchUp(t *testing.T, chain *fakeChain) *writeLog {
	t.Helper()
	log := &writeLog{DB: dbm.NewMemDB()}
	x, err := newRefIndex(log)
	if err != nil {
		t.Fatal(err)
	}
	if cur, err := x.catchUp(context.Background(), chain, nopLogger{}); err != nil || cur.Height != chain.head.Height {
		t.Fatalf("catch-up: %+v %v", cur, err)
	}
	return log
}

// replay applies one logged write unit to db, as a crash right after it
// would leave the disk.
func replay(t *testing.T, db dbm.DB, unit []writeOp) {
	t.Helper()
	for _, op := range unit {
		var err error
		if op.value == nil {
			err = db.Delete(op.key)
		} else {
			err = db.Set(op.key, op.value)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// copyDB is a copy of db in memory.
func copyDB(t *testing.T, db dbm.DB) dbm.DB {
	t.Helper()
	out := dbm.NewMemDB()
	it, err := db.Iterator(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for ; it.Valid(); it.Next() {
		if err := out.Set(it.Key(), it.Value()); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// deleteHook runs fn once, just before the store's next Delete.
type deleteHook struct {
	blobstore.Store
	fn func()
}

func (d *deleteHook) Delete(ctx context.Context, key blobstore.Key) error {
	if fn := d.fn; fn != nil {
		d.fn = nil
		fn()
	}
	return d.Store.Delete(ctx, key)
}

// TestSweepAgainstReupload: a client uploads a blob again (to retry its
// AddRecord) while a sweep, which found it old and unreferenced, is about to
// delete it. An upload that was acknowledged leaves the blob stored: the
// upload waits for the sweep's check and delete, then stores it anew. The
// hook gives the upload half a second to complete before the delete, which
// it did before uploads and deletes were locked against each other.
func TestSweepAgainstReupload(t *testing.T) {
	var hook *deleteHook
	e := newEnv(t, func(o *Options) {
		hook = &deleteHook{Store: o.Store}
		o.Store = hook
	})
	data := []byte("uploaded an hour ago; its AddRecord is about to be retried")
	sum := sha256.Sum256(data)
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	put := make(chan error, 1)
	hook.fn = func() {
		go func() {
			_, err := e.put(e.writer, data)
			put <- err
		}()
		select {
		case err := <-put:
			put <- err
		case <-time.After(500 * time.Millisecond):
		}
	}
	ageBlobs(t, e)
	rep, err := e.srv.Sweep(context.Background())
	if err != nil || rep.Deleted != 1 {
		t.Fatalf("sweep: %+v %v", rep, err)
	}
	if err := <-put; err != nil {
		t.Fatalf("the upload during the sweep: %v", err)
	}
	wantStored(t, e, true, sum)
}

// oldLeftover writes a 2-day-old temporary file into e's store, as an
// upload interrupted by a crash leaves, and returns its path.
func oldLeftover(t *testing.T, e *env) string {
	t.Helper()
	leftover := filepath.Join(e.store.Dir(), "tmp", "put-crashed")
	if err := os.WriteFile(leftover, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(leftover, old, old); err != nil {
		t.Fatal(err)
	}
	return leftover
}

// TestSweepCleansTempWhenIndexBehind: a pass whose reference index cannot
// read every block (pruned blocks) deletes no blob, but still removes the
// leftovers of interrupted uploads.
func TestSweepCleansTempWhenIndexBehind(t *testing.T) {
	e := newEnv(t, nil)
	for range 40 {
		e.chain.advance(time.Second)
	}
	leftover := oldLeftover(t, e)
	srv := newSweeper(t, e, "")
	defer shutdown(t, srv)
	e.chain.failBlock = 30 // e.g. pruned
	rep, err := srv.Sweep(context.Background())
	if err == nil {
		t.Fatal("a sweep whose index cannot read block 30 succeeded")
	}
	if _, serr := os.Stat(leftover); serr == nil || rep.TempRemoved != 1 {
		t.Fatalf("a 2-day-old temporary upload survived the sweep (TempRemoved=%d, stat %v)", rep.TempRemoved, serr)
	}
}

// TestServeCleansTempWithSweepDisabled: with the sweep disabled the
// leftovers of interrupted uploads are still removed, the first time as
// the server starts.
func TestServeCleansTempWithSweepDisabled(t *testing.T) {
	e := newEnv(t, nil)
	leftover := oldLeftover(t, e)
	srv, err := New(Options{Store: e.store, Chain: e.chain, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, srv)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(leftover); errors.Is(err, os.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a 2-day-old temporary upload survived 5 s after the start of a sidecar whose sweep is disabled")
		}
	}
}

// TestSweepSkipsBlobBeingUploaded: a member re-uploads an old blob no
// record references and sends no body. The upload holds the blob's lock
// while the store waits for the body; the sweep passes over the blob at
// once (the upload refreshes its age) instead of waiting for the lock, so
// the pass, and the quota accounting and temp cleaning after it, go on.
func TestSweepSkipsBlobBeingUploaded(t *testing.T) {
	e, hook := hookedEnv(t, nil)
	data := []byte("uploaded, never referenced")
	sum := sha256.Sum256(data)
	if _, err := e.put(e.writer, data); err != nil {
		t.Fatal(err)
	}
	<-hook.entered // that first upload's
	// The stalled upload holds the key lock, waiting for its body.
	pw, uploaded := stalledUpload(t, e, hook, e.writer, sum, int64(len(data)))

	ageBlobs(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	var rep SweepReport
	var err error
	go func() { rep, err = e.srv.Sweep(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("the sweep is blocked behind an upload that sends no body")
	}
	if err != nil || rep.Busy != 1 || rep.Deleted != 0 {
		t.Fatalf("sweep: %+v, %v; want the blob passed over as busy", rep, err)
	}
	wantStored(t, e, true, sum)
	// The upload completes and refreshes the blob's age.
	if _, err := pw.Write(data); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-uploaded; err != nil {
		t.Fatalf("re-upload: %v", err)
	}
	wantStored(t, e, true, sum)
}

// TestKeyLocksTryLock: tryLock fails while the key is held or waited for,
// and succeeds once it is free again.
func TestKeyLocksTryLock(t *testing.T) {
	var l keyLocks
	k := blobstore.Key{Sum: blobstore.Sum{1}}
	unlock := l.lock(k)
	if _, ok := l.tryLock(k); ok {
		t.Fatal("tryLock of a held key succeeded")
	}
	if u, ok := l.tryLock(blobstore.Key{Sum: blobstore.Sum{2}}); !ok {
		t.Fatal("tryLock of another key failed")
	} else {
		u()
	}
	// Another waits for k: once its holder lets go, k is the waiter's
	// (held, or about to be), and tryLock still fails.
	release := make(chan struct{})
	go func() {
		unlock := l.lock(k)
		<-release
		unlock()
	}()
	for users := 0; users < 2; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		users = l.held[k].users
		l.mu.Unlock()
	}
	unlock()
	if _, ok := l.tryLock(k); ok {
		t.Fatal("tryLock of a key waited for succeeded")
	}
	close(release)
	u, ok := l.tryLock(k)
	for deadline := time.Now().Add(5 * time.Second); !ok; u, ok = l.tryLock(k) {
		if time.Now().After(deadline) {
			t.Fatal("tryLock of a released key failed")
		}
		time.Sleep(time.Millisecond)
	}
	u()
	if len(l.held) != 0 {
		t.Fatalf("%d lock entries left", len(l.held))
	}
}
