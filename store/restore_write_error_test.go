package store

import (
	"encoding/binary"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"

	dbm "github.com/cosmos/cosmos-db"
)

// TestRestoreReportsAFailedBackgroundWrite: a restore of 6,000
// leaves imports 11,999 nodes. iavl's importer hands its first 10,000 to a
// goroutine (batch.Write through flushingBatch.Write), and only looks at
// that write's result when the next 10,000 are full, which never comes:
// Importer.Commit writes the rest, loads the version (its root is in the
// last batch), and Close drops the goroutine's error. The failed write
// fails the restore (flushingBatch keeps its error for Finish). (The
// review found Finish succeeding, the marker deleted and the store at the
// version with 10,000 nodes missing.) With 12,000 leaves the importer
// sees the failure at its second batch, in Add, and reports it like a node
// that does not fit. Either way the failure is this node's, not the
// snapshot's: not ErrBadSnapshot, for which state sync would reject the
// snapshot and its peers and download the next, to fail alike.
func TestRestoreReportsAFailedBackgroundWrite(t *testing.T) {
	for _, leaves := range []int{6000, 12000} {
		t.Run(strconv.Itoa(leaves), func(t *testing.T) { testRestoreWithAFailedWrite(t, leaves) })
	}
}

func testRestoreWithAFailedWrite(t *testing.T, leaves int) {
	src := openTest(t, t.TempDir(), Options{Backend: BackendPebble, CacheSize: 1000})
	defer src.Close()
	for i := range leaves {
		if err := src.Working().Set(binary.BigEndian.AppendUint32([]byte{0x14}, uint32(i)), []byte("value")); err != nil {
			t.Fatal(err)
		}
	}
	root, version := mustCommit(t, src)
	sn, info := snapshotOf(t, src, version, DefaultChunkSize)

	// The restore's first batch write is the importer's first 10,000
	// nodes, from its goroutine.
	db := &failingDB{DB: dbm.NewMemDB(), failAt: 2}
	dst := memStoreOver(t, db)
	err := restoreAll(t, dst, sn, info, root)
	if db.writes.Load() < 1 {
		t.Fatalf("no batch write failed (the importer did not write from its goroutine); restore: %v", err)
	}
	if err != nil {
		if !errors.Is(err, errDiskFull) {
			t.Fatalf("the restore failed, but not for the failed write: %v", err)
		}
		if errors.Is(err, ErrBadSnapshot) || errors.Is(err, ErrRootMismatch) {
			t.Fatalf("a write that failed on this node is reported as the snapshot's fault: %v", err)
		}
		return // the failure was reported: the restore is wiped
	}
	if marked, _ := db.Has(restoreMarker); marked {
		t.Fatal("Finish succeeded but left the restore marker")
	}
	// Finish said the store is at the version: every key must read back.
	rd, err := dst.ReaderAt(version)
	if err != nil {
		t.Fatalf("Finish succeeded, but the version cannot be read: %v", err)
	}
	var missing int
	var firstErr error
	for i := range leaves {
		v, err := rd.Get(binary.BigEndian.AppendUint32([]byte{0x14}, uint32(i)))
		if err != nil || string(v) != "value" {
			if missing == 0 {
				firstErr = errors.Join(err, errors.New("value "+string(v)))
			}
			missing++
		}
	}
	if v, _ := dst.LastCommit(); v == version {
		t.Fatalf("a batch write of the import failed (%v), yet Finish succeeded and the store is at version %d with %d of %d keys unreadable (first: %v)",
			errDiskFull, version, missing, leaves, firstErr)
	}
}

// readFailDB is a database whose reads fail once failGets is set (a disk
// read error of this node).
type readFailDB struct {
	dbm.DB
	failGets atomic.Bool
}

var errDiskRead = errors.New("disk read error")

func (d *readFailDB) Get(key []byte) ([]byte, error) {
	if d.failGets.Load() {
		return nil, errDiskRead
	}
	return d.DB.Get(key)
}

// smallSnapshot is a small committed store and its snapshot.
func smallSnapshot(t *testing.T) (root []byte, sn *Snapshots, info SnapshotInfo) {
	t.Helper()
	src := memStore(t)
	buildVersions(t, src, 1, 200)
	version, root := src.LastCommit()
	sn, info = snapshotOf(t, src, version, MinChunkSize)
	return root, sn, info
}

// TestReadErrorAtFinishIsNotTheSnapshots: iavl's Importer.Commit loads
// the imported version (LoadVersion) after its last write. A read of this
// node's disk that fails there is this node's failure, which any other
// snapshot would meet too: not ErrBadSnapshot, for which state sync would
// reject the snapshot and every (honest) peer that served it. (The
// re-review of session 53 found it reported as ErrBadSnapshot.)
func TestReadErrorAtFinishIsNotTheSnapshots(t *testing.T) {
	root, sn, info := smallSnapshot(t)
	db := &readFailDB{DB: dbm.NewMemDB()}
	dst := memStoreOver(t, db)
	r := importAll(t, dst, sn, info)
	db.failGets.Store(true) // the disk fails to read from here on
	err := r.Finish(root, nil)
	db.failGets.Store(false)
	if !errors.Is(err, errDiskRead) {
		t.Fatalf("Finish did not fail for the read error: %v", err)
	}
	if errors.Is(err, ErrBadSnapshot) || errors.Is(err, ErrRootMismatch) {
		t.Fatalf("a read of this node's disk that failed is reported as the snapshot's fault (state sync would reject the snapshot and every peer that served it): %v", err)
	}
}

// TestRootMismatchWithAFailedWipeIsTheNodes: a snapshot whose root is
// not the trusted one fails Finish with ErrRootMismatch, and Finish wipes
// the import. When that wipe fails (this node's disk), the store is left
// at the snapshot's version and refuses every other snapshot (ErrNotEmpty)
// until it is opened again: the error must be the node's, so that state
// sync aborts, and not the snapshot's, for which it would try another in
// vain, for ever. (The re-review of session 53 found it the snapshot's.)
func TestRootMismatchWithAFailedWipeIsTheNodes(t *testing.T) {
	_, sn, info := smallSnapshot(t)
	// Writes of batches: the import's last batch (1), then the wipe's
	// first delete batch (2) fails.
	db := &failingDB{DB: dbm.NewMemDB(), failAt: 2}
	dst := memStoreOver(t, db)
	r := importAll(t, dst, sn, info)
	wrong := make([]byte, 32) // the light client's app hash is another
	err := r.Finish(wrong, nil)
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("the wipe did not fail (writes %d): %v", db.writes.Load(), err)
	}
	if _, berr := dst.BeginRestore(info.Height); berr == nil {
		t.Fatalf("the store takes another snapshot after Finish failed (%v): the wipe did not fail", err)
	}
	if errors.Is(err, ErrBadSnapshot) || errors.Is(err, ErrRootMismatch) {
		t.Fatalf("Finish failed as the snapshot's fault (%v), so state sync would try another snapshot, but the store cannot take one", err)
	}
}
