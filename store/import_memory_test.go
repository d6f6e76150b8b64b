package store

import (
	"encoding/binary"
	"errors"
	"runtime"
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
	s, err := openWithDB(discardDB{dbm.NewMemDB()}, Options{Backend: BackendMemDB, CacheSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
