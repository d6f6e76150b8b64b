package store

import "testing"

// TestRestoreOfAnIdleVersionHoldsNothingBelowIt: a snapshot of version V
// whose state last changed at R < V (an idle chain's empty blocks since)
// imports its root under IAVL's root key of R. The restored store holds
// no version below V: not right after the restore, nor after pruning past
// V and a restart, when IAVL's search for the first version could land on
// R, whose other nodes pruning deleted (restoredVersionKey). (The review
// found FirstVersion 12 and reads of version 12 failing as missing nodes,
// which queries answered as an internal error.)
func TestRestoreOfAnIdleVersionHoldsNothingBelowIt(t *testing.T) {
	src := memStore(t)
	for v := 1; v <= 12; v++ {
		for i := range 50 {
			mustSet(t, src.Working(), keyN(v*50+i), "value")
		}
		mustCommit(t, src)
	}
	for v := 13; v <= 20; v++ { // blocks that change nothing
		mustCommit(t, src)
	}
	version, root := src.LastCommit()
	sn, info := snapshotOf(t, src, version, 2<<10)

	dir := t.TempDir()
	opts := Options{Backend: BackendPebble, CacheSize: 1000, KeepRecent: 1, PruneInterval: 1}
	dst := openTest(t, dir, opts)
	if err := restoreAll(t, dst, sn, info, root); err != nil {
		t.Fatal(err)
	}
	// Without pruning, too, the store says it begins at the restored
	// version (a query below it then says so: app.heightError).
	kept := memStore(t)
	if err := restoreAll(t, kept, sn, info, root); err != nil {
		t.Fatal(err)
	}
	if first := kept.FirstVersion(); first != version {
		t.Errorf("restored at %d with every version kept: FirstVersion %d, want %d", version, first, version)
	}
	if _, err := dst.ReaderAt(12); !isNotFound(err) {
		t.Errorf("right after the restore of %d, version 12 (never committed here) reads: err %v", version, err)
	}
	for v := 21; v <= 24; v++ {
		mustSet(t, dst.Working(), keyN(v), "later")
		mustCommit(t, dst)
	}
	dst.Close()
	dst = openTest(t, dir, opts)
	defer dst.Close()
	if first := dst.FirstVersion(); first != 24 {
		t.Errorf("reopened at 24 with KeepRecent 1: FirstVersion %d, want 24", first)
	}
	r, err := dst.ReaderAt(12)
	if err == nil {
		_, err = r.Get([]byte(keyN(50)))
	}
	if !isNotFound(err) {
		t.Fatalf("version 12, never committed on this node and pruned past: %v, want ErrVersionNotFound", err)
	}
	// Pruning goes on after the restart.
	for v := 25; v <= 28; v++ {
		mustSet(t, dst.Working(), keyN(v), "after the restart")
		mustCommit(t, dst)
	}
	if first := dst.FirstVersion(); first != 28 {
		t.Errorf("at 28 with KeepRecent 1: FirstVersion %d, want 28", first)
	}
	if _, err := dst.ReaderAt(26); !isNotFound(err) {
		t.Errorf("version 26, pruned: %v, want ErrVersionNotFound", err)
	}
}
