package store

import (
	"encoding/binary"
	"errors"
	"strconv"
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
	db := &failingDB{DB: dbm.NewMemDB(), failAt: 1}
	dst, err := openWithDB(db, Options{Backend: BackendMemDB, CacheSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	err = restoreAll(t, dst, sn, info, root)
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
