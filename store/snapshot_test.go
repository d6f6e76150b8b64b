package store

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
	"sync"
	"testing"
	"time"

	"github.com/cosmos/iavl"
)

// buildVersions commits versions of a tree with many keys: sets, overwrites
// and deletes over several versions, so nodes of many versions remain.
func buildVersions(t *testing.T, s *Store, versions, keysPer int) map[string]string {
	t.Helper()
	model := map[string]string{}
	for v := 1; v <= versions; v++ {
		for i := range keysPer {
			k := keyN((v*7919 + i*104729) % (versions * keysPer))
			val := fmt.Sprintf("v%d-%d-%s", v, i, bytes.Repeat([]byte{'x'}, i%50))
			mustSet(t, s.Working(), k, val)
			model[k] = val
		}
		if v > 1 {
			del := keyN(v * 13 % (versions * keysPer))
			mustDelete(t, s.Working(), del)
			delete(model, del)
		}
		mustCommit(t, s)
	}
	return model
}

// snapshotOf exports version of s into a new snapshot directory with small
// chunks, so the stream spans many of them.
func snapshotOf(t *testing.T, s *Store, version int64, chunkSize int) (*Snapshots, SnapshotInfo) {
	t.Helper()
	sn, err := OpenSnapshots(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	sn.SetChunkSize(chunkSize)
	info, err := sn.Create(context.Background(), s, version)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return sn, info
}

// restoreAll feeds every chunk of info to a restore into dst and finishes
// it against trusted.
func restoreAll(t *testing.T, dst *Store, sn *Snapshots, info SnapshotInfo, trusted []byte) error {
	t.Helper()
	r, err := addChunks(t, dst, sn, info)
	if err != nil {
		return err
	}
	return r.Finish(trusted, nil)
}

// importAll is a restore into dst that has taken every chunk of info, to
// be finished.
func importAll(t *testing.T, dst *Store, sn *Snapshots, info SnapshotInfo) *Restore {
	t.Helper()
	r, err := addChunks(t, dst, sn, info)
	if err != nil {
		t.Fatalf("AddChunk: %v", err)
	}
	return r
}

// addChunks begins a restore into dst and feeds it every chunk of info; a
// chunk it refuses aborts it, with the error.
func addChunks(t *testing.T, dst *Store, sn *Snapshots, info SnapshotInfo) (*Restore, error) {
	t.Helper()
	r, err := dst.BeginRestore(info.Height)
	if err != nil {
		t.Fatalf("BeginRestore: %v", err)
	}
	for i := range info.Chunks {
		chunk, err := sn.LoadChunk(info.Height, info.Format, i)
		if err != nil {
			t.Fatalf("LoadChunk %d: %v", i, err)
		}
		if err := r.AddChunk(chunk); err != nil {
			_ = r.Abort()
			return nil, err
		}
	}
	return r, nil
}

func TestSnapshotRoundTrip(t *testing.T) {
	for _, backend := range diskBackends {
		t.Run(backend, func(t *testing.T) {
			src := openTest(t, t.TempDir(), Options{Backend: backend, CacheSize: 10_000})
			defer src.Close()
			model := buildVersions(t, src, 6, 800)
			version, root := src.LastCommit()
			sn, info := snapshotOf(t, src, version, 8<<10)
			if info.Chunks < 10 {
				t.Fatalf("%d chunks; want the stream cut into many", info.Chunks)
			}
			meta, err := DecodeSnapshotMetadata(info.Metadata)
			if err != nil || !bytes.Equal(meta.Root, root) || !bytes.Equal(info.Hash, meta.Hash()) {
				t.Fatalf("metadata %+v, %v; want root %X", meta, err, root)
			}
			for i := range info.Chunks {
				chunk, _ := sn.LoadChunk(info.Height, info.Format, i)
				if sha256.Sum256(chunk) != meta.ChunkHashes[i] || len(chunk) > 8<<10+MaxSnapshotKeyLen {
					t.Fatalf("chunk %d: %d bytes, hash not the metadata's", i, len(chunk))
				}
			}

			dir := t.TempDir()
			dst := openTest(t, dir, Options{Backend: backend, CacheSize: 10_000})
			if err := restoreAll(t, dst, sn, info, root); err != nil {
				t.Fatalf("restore: %v", err)
			}
			checkRestored(t, dst, version, root, model)
			// The restored store keeps going, and reopens where it was.
			mustSet(t, dst.Working(), "after", "restore")
			h1, v1 := mustCommit(t, dst)
			mustSet(t, src.Working(), "after", "restore")
			h2, _ := mustCommit(t, src)
			if !bytes.Equal(h1, h2) {
				t.Fatalf("next version differs after restore: %X vs %X", h1, h2)
			}
			dst.Close()
			dst = openTest(t, dir, Options{Backend: backend, CacheSize: 10_000})
			defer dst.Close()
			if v, h := dst.LastCommit(); v != v1 || !bytes.Equal(h, h1) {
				t.Fatalf("reopened at %d %X, want %d %X", v, h, v1, h1)
			}
		})
	}
}

// checkRestored checks that s is at version with root and holds exactly
// model, through the working tree (and its value cache) and the version.
func checkRestored(t *testing.T, s *Store, version int64, root []byte, model map[string]string) {
	t.Helper()
	if v, h := s.LastCommit(); v != version || !bytes.Equal(h, root) {
		t.Fatalf("restored store at %d %X, want %d %X", v, h, version, root)
	}
	r, err := s.ReaderAt(version)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, r, nil, nil, true)
	if want := expectRange(model, nil, nil, true); !samePairs(got, want) {
		t.Fatalf("restored %d pairs, want %d", len(got), len(want))
	}
	for k, v := range model {
		wantValue(t, s.Working(), k, v)
		wantValue(t, r, k, v)
	}
}

func TestRestoreWrongRootIsWiped(t *testing.T) {
	src := memStore(t)
	model := buildVersions(t, src, 3, 200)
	version, root := src.LastCommit()
	sn, info := snapshotOf(t, src, version, 4<<10)

	dst := openTest(t, t.TempDir(), Options{Backend: BackendPebble, CacheSize: 1000})
	defer dst.Close()
	wrong := bytes.Clone(root)
	wrong[0] ^= 1
	if err := restoreAll(t, dst, sn, info, wrong); !errors.Is(err, ErrRootMismatch) {
		t.Fatalf("restore against a wrong app hash: %v, want ErrRootMismatch", err)
	}
	if v, _ := dst.LastCommit(); v != 0 {
		t.Fatalf("store at %d after a refused restore, want empty", v)
	}
	// The same store takes the right snapshot afterwards.
	if err := restoreAll(t, dst, sn, info, root); err != nil {
		t.Fatalf("restore after a wiped one: %v", err)
	}
	checkRestored(t, dst, version, root, model)
}

func TestRestoreRefusals(t *testing.T) {
	src := memStore(t)
	buildVersions(t, src, 2, 100)
	version, root := src.LastCommit()
	sn, info := snapshotOf(t, src, version, 1<<10)

	if _, err := src.BeginRestore(version); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("restore into a non-empty store: %v, want ErrNotEmpty", err)
	}
	dst := memStore(t)
	// Chunks out of order do not form a tree.
	r, err := dst.BeginRestore(version)
	if err != nil {
		t.Fatal(err)
	}
	last, _ := sn.LoadChunk(version, SnapshotFormat, info.Chunks-1)
	if err = r.AddChunk(last); err == nil {
		err = r.Finish(root, nil)
	}
	if !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("the last chunk alone: %v, want ErrBadSnapshot", err)
	}
	_ = r.Abort()
	// A node of a version above the snapshot's is refused.
	r, _ = dst.BeginRestore(1)
	first, _ := sn.LoadChunk(version, SnapshotFormat, 0)
	if err := r.AddChunk(first); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("nodes newer than the restored version: %v, want ErrBadSnapshot", err)
	}
	if err := r.Abort(); err != nil {
		t.Fatal(err)
	}
	// A check of the restored state that fails wipes it too.
	errCheck := errors.New("bookkeeping")
	r, _ = dst.BeginRestore(version)
	for i := range info.Chunks {
		c, _ := sn.LoadChunk(version, SnapshotFormat, i)
		if err := r.AddChunk(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Finish(root, func(Reader) error { return errCheck }); !errors.Is(err, errCheck) {
		t.Fatalf("Finish with a failing check: %v", err)
	}
	if v, _ := dst.LastCommit(); v != 0 {
		t.Fatalf("store at %d after a failed check, want empty", v)
	}
}

// TestUnfinishedRestoreIsWipedAtOpen: a crash after the import was
// committed but before its root was checked leaves nothing behind.
func TestUnfinishedRestoreIsWipedAtOpen(t *testing.T) {
	src := memStore(t)
	buildVersions(t, src, 2, 100)
	version, root := src.LastCommit()
	sn, info := snapshotOf(t, src, version, 2<<10)
	dir := t.TempDir()
	dst := openTest(t, dir, Options{Backend: BackendPebble, CacheSize: 1000})
	r, err := dst.BeginRestore(version)
	if err != nil {
		t.Fatal(err)
	}
	for i := range info.Chunks {
		c, _ := sn.LoadChunk(version, SnapshotFormat, i)
		if err := r.AddChunk(c); err != nil {
			t.Fatal(err)
		}
	}
	dst.mu.Lock()
	if err := r.imp.Commit(); err != nil { // as Finish, up to the crash
		t.Fatal(err)
	}
	dst.mu.Unlock()
	dst.Close()
	dst = openTest(t, dir, Options{Backend: BackendPebble, CacheSize: 1000})
	defer dst.Close()
	if v, _ := dst.LastCommit(); v != 0 {
		t.Fatalf("reopened at %d after an unchecked restore, want empty", v)
	}
	if err := restoreAll(t, dst, sn, info, root); err != nil {
		t.Fatalf("restore after the wipe: %v", err)
	}
}

// exportResult is what an Export returned.
type exportResult struct {
	root []byte
	err  error
}

// pausedExport starts an export of version and returns once it holds its
// first node, paused there until resume is called (again: a no-op); done
// gets what Export returned.
func pausedExport(t *testing.T, s *Store, version int64) (resume func(), done <-chan exportResult) {
	t.Helper()
	started, paused := make(chan struct{}), make(chan struct{})
	out := make(chan exportResult, 1)
	go func() {
		first := true
		root, err := s.Export(context.Background(), version, func(*iavl.ExportNode) error {
			if first {
				first = false
				close(started)
				<-paused
			}
			return nil
		})
		out <- exportResult{root, err}
	}()
	<-started
	return sync.OnceFunc(func() { close(paused) }), out
}

// TestPruningKeepsExportedVersion: versions pruned while a snapshot of one
// of them is exported stop below it, and the export completes.
func TestPruningKeepsExportedVersion(t *testing.T) {
	s := openTest(t, "", Options{Backend: BackendMemDB, CacheSize: 1000, KeepRecent: 1, PruneInterval: 1})
	defer s.Close()
	buildVersions(t, s, 3, 100)
	version, root := s.LastCommit()
	resume, done := pausedExport(t, s, version)
	defer resume() // before s.Close, which waits for the export
	for i := range 3 {
		mustSet(t, s.Working(), keyN(i), "later")
		if _, _, err := s.Commit(); err != nil {
			t.Fatalf("commit while exporting: %v", err)
		}
	}
	if _, err := s.ReaderAt(version); err != nil {
		t.Fatalf("exported version pruned: %v", err)
	}
	resume()
	if res := <-done; res.err != nil || !bytes.Equal(res.root, root) {
		t.Fatalf("export: %X, %v; want %X", res.root, res.err, root)
	}
	mustSet(t, s.Working(), "k", "v")
	mustCommit(t, s)
	if _, err := s.ReaderAt(version); !isNotFound(err) {
		t.Fatalf("version %d still kept after its export: %v", version, err)
	}
}

func TestSnapshotsDirectory(t *testing.T) {
	s := memStore(t)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, snapshotTempPrefix+"9-1-x"), 0o700); err != nil {
		t.Fatal(err)
	}
	sn, err := OpenSnapshots(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, snapshotTempPrefix+"9-1-x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an unfinished snapshot survived OpenSnapshots: %v", err)
	}
	for v := 1; v <= 4; v++ {
		mustSet(t, s.Working(), keyN(v), "v")
		mustCommit(t, s)
		if _, err := sn.Create(context.Background(), s, int64(v)); err != nil {
			t.Fatal(err)
		}
	}
	list, err := sn.List()
	if err != nil || len(list) != 2 || list[0].Height != 4 || list[1].Height != 3 {
		t.Fatalf("List = %+v, %v; want heights 4 and 3", list, err)
	}
	if _, err := sn.LoadChunk(2, SnapshotFormat, 0); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("chunk of a pruned snapshot: %v", err)
	}
	if _, err := sn.LoadChunk(4, SnapshotFormat, list[0].Chunks); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("chunk past the last: %v", err)
	}
	if _, err := sn.Create(context.Background(), s, 9); !isNotFound(err) {
		t.Fatalf("snapshot of an uncommitted version: %v", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 2 {
		t.Fatalf("%d entries left in the directory, want the 2 snapshots", len(left))
	}
	// A snapshot whose metadata no longer reads is left out, and the error
	// says which; the others are still listed.
	if err := os.WriteFile(filepath.Join(dir, snapshotName(3, SnapshotFormat), snapshotMetadataFile), []byte{0xff}, 0o600); err != nil {
		t.Fatal(err)
	}
	list, err = sn.List()
	if err == nil || !strings.Contains(err.Error(), snapshotName(3, SnapshotFormat)) || len(list) != 1 || list[0].Height != 4 {
		t.Fatalf("List with snapshot 3 damaged = %+v, %v; want height 4 and an error naming 3", list, err)
	}
}

// TestCloseStopsExport: Close waits for an export under way, which ends at
// its next node with errExportStopped instead of reading a closed
// database; Close then returns.
func TestCloseStopsExport(t *testing.T) {
	s := openTest(t, "", Options{Backend: BackendMemDB, CacheSize: 1000})
	buildVersions(t, s, 1, 100)
	version, _ := s.LastCommit()
	resume, exported := pausedExport(t, s, version)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while an export was reading", err)
	case <-time.After(100 * time.Millisecond):
	}
	resume()
	select {
	case res := <-exported:
		if !errors.Is(res.err, errExportStopped) {
			t.Fatalf("Export = %v, want errExportStopped", res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Export did not stop after Close")
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs after the export stopped")
	}
}

// TestServedSnapshotOutlivesKeepRecent: a snapshot a peer fetched a chunk
// of within ServingGrace is not pruned when a newer one is made, so a
// join under way can finish; once the fetching stops it goes, and at most
// keepRecent snapshots are kept that way (the newest served ones).
func TestServedSnapshotOutlivesKeepRecent(t *testing.T) {
	s := memStore(t)
	sn, err := OpenSnapshots(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	sn.now = func() time.Time { return now }
	create := func(v int64) {
		t.Helper()
		mustSet(t, s.Working(), keyN(int(v)), "v")
		mustCommit(t, s)
		if _, err := sn.Create(context.Background(), s, v); err != nil {
			t.Fatal(err)
		}
	}
	heights := func() []int64 {
		t.Helper()
		list, err := sn.List()
		if err != nil {
			t.Fatal(err)
		}
		return listedHeights(list)
	}
	serve := func(v int64) {
		t.Helper()
		if _, err := sn.LoadChunk(v, SnapshotFormat, 0); err != nil {
			t.Fatalf("LoadChunk(%d): %v", v, err)
		}
	}
	for _, step := range []struct {
		name    string
		advance time.Duration
		serve   []int64
		create  int64
		want    []int64
	}{
		{name: "first", create: 1, want: []int64{1}},
		{name: "served just now", serve: []int64{1}, create: 2, want: []int64{2, 1}},
		{name: "still served", advance: ServingGrace - time.Second, serve: []int64{1}, create: 3, want: []int64{3, 1}},
		{name: "two served, room for keepRecent more", advance: time.Second, serve: []int64{3, 1}, create: 4, want: []int64{4, 3}},
		{name: "no longer served", advance: ServingGrace + time.Second, create: 5, want: []int64{5}},
	} {
		now = now.Add(step.advance)
		for _, v := range step.serve {
			serve(v)
		}
		create(step.create)
		if got := heights(); !slices.Equal(got, step.want) {
			t.Fatalf("%s: snapshots at heights %v, want %v", step.name, got, step.want)
		}
	}
	if n := len(sn.served); n != 0 {
		t.Fatalf("%d served entries left for pruned snapshots", n)
	}

	// A snapshot offered to a peer counts as served: the peer asks for
	// its first chunk only after its discovery time, when newer snapshots
	// may have been made.
	if _, err := sn.Advertise(); err != nil {
		t.Fatal(err)
	}
	now = now.Add(15 * time.Second)
	create(6)
	create(7)
	if got := heights(); !slices.Equal(got, []int64{7, 5}) {
		t.Fatalf("after an offer of 5: snapshots at heights %v, want [7 5]", got)
	}
	serve(5)
	now = now.Add(ServingGrace + time.Second)
	create(8)
	if got := heights(); !slices.Equal(got, []int64{8}) {
		t.Fatalf("long after the offer: snapshots at heights %v, want [8]", got)
	}
}

// TestInterruptedPruneListsNoPartialSnapshot: a removal that fails part
// way (a crash, a disk error) after deleting one chunk of a pruned
// snapshot must not leave that snapshot listed, since a joining node
// would ask for the missing chunk in vain. What it left is gone once the
// directory is opened again, and a later prune still removes the rest.
func TestInterruptedPruneListsNoPartialSnapshot(t *testing.T) {
	s := memStore(t)
	dir := t.TempDir()
	sn, err := OpenSnapshots(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	sn.SetChunkSize(MinChunkSize)
	create := func(v int64) error { // on sn, whichever it is then
		for i := range 40 { // several chunks
			mustSet(t, s.Working(), keyN(int(v)*100+i), strings.Repeat("v", 100))
		}
		mustCommit(t, s)
		_, err := sn.Create(context.Background(), s, v)
		return err
	}
	if err := create(1); err != nil {
		t.Fatal(err)
	}
	if list, err := sn.List(); err != nil || len(list) != 1 || list[0].Chunks < 2 {
		t.Fatalf("List = %v, %v; want one snapshot of several chunks", listedHeights(list), err)
	}
	failed := errors.New("removal interrupted")
	interrupted := func(path string) error { // removes one chunk, then fails
		if err := os.Remove(filepath.Join(path, chunkName(0))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return failed
	}
	sn.removeAll = interrupted
	if err := create(2); !errors.Is(err, failed) {
		t.Fatalf("Create with a failing prune: %v, want %v", err, failed)
	}
	list, err := sn.List()
	if err != nil || len(list) != 1 || list[0].Height != 2 {
		t.Fatalf("after a prune that failed part way: snapshots at heights %v, %v; want 2 alone", listedHeights(list), err)
	}
	if _, err := sn.LoadChunk(1, SnapshotFormat, 1); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("a chunk of the snapshot being pruned is still served: %v", err)
	}

	// Opened again (a restart), the directory holds the new snapshot alone.
	sn, err = OpenSnapshots(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 || left[0].Name() != snapshotName(2, SnapshotFormat) {
		t.Fatalf("after reopening, the directory holds %v, want snapshot 2 alone", left)
	}
	// Without a restart, the next prune takes what the failed one left.
	sn.removeAll = interrupted
	if err := create(3); !errors.Is(err, failed) {
		t.Fatalf("Create with a failing prune: %v", err)
	}
	if list, err := sn.List(); err != nil || len(list) != 1 || list[0].Height != 3 {
		t.Fatalf("after a second prune that failed part way: snapshots at heights %v, %v; want 3 alone", listedHeights(list), err)
	}
	sn.removeAll = os.RemoveAll
	if err := create(4); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 || left[0].Name() != snapshotName(4, SnapshotFormat) {
		t.Fatalf("after a prune that worked, the directory holds %v, want snapshot 4 alone", left)
	}
}

// listedHeights are the heights of a List, in its order.
func listedHeights(list []SnapshotInfo) []int64 {
	hs := make([]int64, len(list))
	for i, info := range list {
		hs[i] = info.Height
	}
	return hs
}
