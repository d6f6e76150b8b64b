package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"

	dbm "github.com/cosmos/cosmos-db"
	"github.com/cosmos/iavl"
)

// discardDB drops every batched write, so that what a restore holds in
// memory can be measured without the database's own copies of the nodes.
type discardDB struct{ dbm.DB }

func (d discardDB) NewBatch() dbm.Batch              { return discardBatch{d.DB.NewBatch()} }
func (d discardDB) NewBatchWithSize(n int) dbm.Batch { return discardBatch{d.DB.NewBatchWithSize(n)} }

type discardBatch struct{ dbm.Batch }

func (discardBatch) Set(_, _ []byte) error { return nil }

// TestImportCountsTheChildrenOfWaitingSubtrees: iavl's importer keeps the
// two children of every node on its stack (linked from it, values and
// all) until that node is itself joined. A peer interleaves height-1
// subtrees over two 8 MiB leaves with small filler subtrees of more than
// 10,000 written nodes (which empty the importer's batch): the import is
// refused (ErrBadSnapshot) before it holds more than maxImportBytes, and
// never holds more. (The review found streamShape counting a waiting
// subtree as its root alone: every chunk was accepted while the importer
// held 192 MiB.)
func TestImportCountsTheChildrenOfWaitingSubtrees(t *testing.T) {
	s := memStoreOver(t, discardDB{dbm.NewMemDB()})
	r, err := s.BeginRestore(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Abort()

	const bigValue = MaxSnapshotValueLen // 8 MiB
	const groups = 12                    // 12 * 2 * 8 MiB = 192 MiB held by waiting subtrees
	value := make([]byte, bigValue)
	key := func(g, i int) []byte {
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(g)), uint32(i))
	}
	node := func(h int8, k []byte, v []byte) *iavl.ExportNode {
		return &iavl.ExportNode{Height: h, Version: 1, Key: k, Value: v}
	}

	refused := false
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for g := 0; g < groups; g++ {
		// Chunk 1: the left big leaf.
		if err := r.AddChunk(appendNode(nil, node(0, key(2*g, 0), value))); err != nil {
			t.Fatalf("group %d, left leaf: %v", g, err)
		}
		// Chunk 2: the right big leaf, their parent (a subtree that waits
		// on the stack, holding both 8 MiB leaves), then a filler subtree of
		// 8192 tiny leaves whose 16,382 written nodes reset streamShape's
		// batch count.
		chunk := appendNode(nil, node(0, key(2*g, 1), value))
		chunk = appendNode(chunk, node(1, key(2*g, 1), nil))
		var walk func(lo, hi int) int8
		walk = func(lo, hi int) int8 {
			if hi-lo == 1 {
				chunk = appendNode(chunk, node(0, key(2*g+1, lo), []byte{'v'}))
				return 0
			}
			mid := (lo + hi) / 2
			h := max(walk(lo, mid), walk(mid, hi)) + 1
			chunk = appendNode(chunk, node(h, key(2*g+1, mid), nil))
			return h
		}
		walk(0, 1<<13) // 16382 written nodes: past iavl's 10,000-node batch
		if err := r.AddChunk(chunk); err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("group %d, right leaf and filler: %v, want ErrBadSnapshot", g, err)
			}
			refused = true
			break
		}
	}
	value = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("refused: %v; heap held by the import: %d MiB (bound %d MiB)", refused, held>>20, maxImportBytes>>20)
	if !refused {
		t.Errorf("a stream holding %d MiB in waiting subtrees was accepted", groups*2*bigValue>>20)
	}
	if held > maxImportBytes+(32<<20) {
		t.Fatalf("the import holds %d MiB of a peer's nodes, over the %d MiB bound streamShape promises", held>>20, maxImportBytes>>20)
	}
}

// TestRestoreOfManyLargeValues: a state whose values run to tens of KB
// (a consortium's params proposals, 33 KB each at the most, which nothing
// deletes) restores: iavl's importer writes its batch every 10,000 nodes
// whatever their size, so five thousand such leaves in one batch held
// more than maxImportBytes and every snapshot of that state was refused;
// the restore's batches now write themselves out at importBatchBytes
// (flushingBatch). (From the review of session 52; 4,000 proposals were
// refused, 3,000 restored.)
func TestRestoreOfManyLargeValues(t *testing.T) {
	const values = 4500
	const valueLen = 33_332
	src := openTest(t, t.TempDir(), Options{Backend: BackendPebble, CacheSize: 1000})
	defer src.Close()
	value := make([]byte, valueLen)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	for id := uint64(1); id <= values; id++ {
		binary.BigEndian.PutUint64(value, id)
		if err := src.Working().Set(binary.BigEndian.AppendUint64([]byte{0x14}, id), value); err != nil {
			t.Fatal(err)
		}
		if id%500 == 0 {
			mustCommit(t, src)
		}
	}
	root, version := mustCommit(t, src)
	sn, info := snapshotOf(t, src, version, DefaultChunkSize)
	db := &batchSizeDB{DB: dbm.NewMemDB()}
	dst := memStoreOver(t, db)
	if err := restoreAll(t, dst, sn, info, root); err != nil {
		t.Fatalf("restore of %d values of %d bytes (%d MiB): %v", values, valueLen, values*valueLen>>20, err)
	}
	if v, h := dst.LastCommit(); v != version || !bytes.Equal(h, root) {
		t.Fatalf("restored at %d %X, want %d %X", v, h, version, root)
	}
	if most := db.most.Load(); most > importBatchBytes+2*valueLen {
		t.Fatalf("a batch of the restore held %d MiB, over the %d MiB it may", most>>20, importBatchBytes>>20)
	}
}

// batchSizeDB records the most bytes of keys and values any of its
// batches held when written.
type batchSizeDB struct {
	dbm.DB
	most atomic.Int64
}

func (d *batchSizeDB) NewBatch() dbm.Batch { return &sizedBatch{Batch: d.DB.NewBatch(), db: d} }
func (d *batchSizeDB) NewBatchWithSize(n int) dbm.Batch {
	return &sizedBatch{Batch: d.DB.NewBatchWithSize(n), db: d}
}

type sizedBatch struct {
	dbm.Batch
	db    *batchSizeDB
	bytes int64
}

func (b *sizedBatch) Set(key, value []byte) error {
	b.bytes += int64(len(key) + len(value))
	return b.Batch.Set(key, value)
}

func (b *sizedBatch) Write() error     { b.record(); return b.Batch.Write() }
func (b *sizedBatch) WriteSync() error { b.record(); return b.Batch.WriteSync() }

func (b *sizedBatch) record() {
	for {
		most := b.db.most.Load()
		if b.bytes <= most || b.db.most.CompareAndSwap(most, b.bytes) {
			return
		}
	}
}
