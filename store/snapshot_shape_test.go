package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/cosmos/iavl"
)

func leaf(key string, value []byte) *iavl.ExportNode {
	return &iavl.ExportNode{Height: 0, Version: 1, Key: []byte(key), Value: value}
}

func inner(height int8, key string) *iavl.ExportNode {
	return &iavl.ExportNode{Height: height, Version: 1, Key: []byte(key)}
}

// TestStreamShape: what IAVL's hash does not cover (inner nodes' keys,
// which route lookups) and its importer does not check (leaf order,
// subtrees never joined, bytes held) is refused
// before a node reaches the importer; a tree as IAVL builds it passes.
func TestStreamShape(t *testing.T) {
	v := []byte("v")
	for _, c := range []struct {
		name  string
		nodes []*iavl.ExportNode
		want  string // "" accepts
	}{
		{"a tree as IAVL builds it", []*iavl.ExportNode{leaf("a", v), leaf("b", v), inner(1, "b"), leaf("c", v), inner(2, "c")}, ""},
		{"one leaf", []*iavl.ExportNode{leaf("a", v)}, ""},
		{"inner key not the right subtree's smallest", []*iavl.ExportNode{leaf("a", v), leaf("b", v), inner(1, "b\x00")}, "is not its right subtree's smallest"},
		{"inner key of the left subtree", []*iavl.ExportNode{leaf("a", v), leaf("b", v), inner(1, "a")}, "is not its right subtree's smallest"},
		{"leaves out of order", []*iavl.ExportNode{leaf("b", v), leaf("a", v)}, "does not come after"},
		{"a leaf twice", []*iavl.ExportNode{leaf("a", v), leaf("a", v)}, "does not come after"},
		{"inner node over one subtree", []*iavl.ExportNode{leaf("a", v), inner(1, "a")}, "with 1 subtrees to join"},
		{"inner node not above its children", []*iavl.ExportNode{leaf("a", v), leaf("b", v), inner(1, "b"), leaf("c", v), inner(1, "c")}, "over subtrees of heights"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var s streamShape
			var err error
			for _, n := range c.nodes {
				if err = s.add(n); err != nil {
					break
				}
			}
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (!errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want ErrBadSnapshot saying %q", err, c.want)
			}
		})
	}
}

// TestStreamShapeBoundsMemory: leaves no inner node joins are refused
// once the importer would hold more than its bounds, long before a peer's
// snapshot could fill the node's memory (iavl's importer keeps what waits
// for a parent); a well-formed tree of large values is not, since what
// waits for a parent in it stays small (what was written waits in batches
// bounded apart: TestRestoreOfManyLargeValues).
func TestStreamShapeBoundsMemory(t *testing.T) {
	t.Run("unjoined leaves", func(t *testing.T) {
		var s streamShape
		var err error
		for i := 0; err == nil && i < 10*maxImportStack; i++ {
			err = s.add(leaf(string(binary.BigEndian.AppendUint32(nil, uint32(i))), []byte("v")))
		}
		if !errors.Is(err, ErrBadSnapshot) || len(s.stack) > maxImportStack+1 {
			t.Fatalf("after %d subtrees waiting: %v", len(s.stack), err)
		}
	})
	t.Run("large values in a balanced tree are accepted", func(t *testing.T) {
		value := make([]byte, 1<<20) // shared: the check counts lengths
		var s streamShape
		var err error
		var keys []string
		for i := range 4 * (maxImportBytes >> 20) {
			keys = append(keys, string(binary.BigEndian.AppendUint32(nil, uint32(i))))
		}
		var most int64 // the most bytes waiting for a parent
		var walk func(lo, hi int) int8
		walk = func(lo, hi int) int8 {
			if err != nil {
				return 0
			}
			if hi-lo == 1 {
				err = s.add(leaf(keys[lo], value))
				most = max(most, s.stackBytes)
				return 0
			}
			mid := (lo + hi) / 2
			h := max(walk(lo, mid), walk(mid, hi)) + 1
			if err == nil {
				err = s.add(inner(h, keys[mid]))
				most = max(most, s.stackBytes)
			}
			return h
		}
		walk(0, len(keys))
		// A balanced tree of 512 leaves has height 9: at most a leaf and
		// a subtree of each height wait, each with two children.
		if err != nil || most > 32<<20 {
			t.Fatalf("a tree of %d MiB of values: %v, %d MiB waiting at the most", len(keys), err, most>>20)
		}
	})
}

// TestRestoreRefusesUnjoinedLeaves: through AddChunk, a chunk of leaves
// that never join is refused, and the store is empty and usable again.
func TestRestoreRefusesUnjoinedLeaves(t *testing.T) {
	dst := memStore(t)
	r, err := dst.BeginRestore(1)
	if err != nil {
		t.Fatal(err)
	}
	var chunk []byte
	for i := range 2 * maxImportStack {
		chunk = appendNode(chunk, leaf(string(binary.BigEndian.AppendUint32(nil, uint32(i))), []byte("v")))
	}
	if err := r.AddChunk(chunk); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("AddChunk = %v, want ErrBadSnapshot", err)
	}
	if err := r.Abort(); err != nil {
		t.Fatal(err)
	}
	if v, _ := dst.LastCommit(); v != 0 {
		t.Fatalf("store at version %d after the refused restore", v)
	}
	if _, err := dst.BeginRestore(1); err != nil {
		t.Fatalf("a next restore: %v", err)
	}
}

// TestRestoreChunkCostsItsBytes: a peer's chunk is decoded one node at a
// time, so a chunk packed with millions of tiny nodes costs the restoring
// node about its own size, not a slice of a node per 4 bytes (found by a
// reviewer: 484 MiB for a 16 MiB chunk); and a chunk over MaxChunkSize is
// refused unread.
func TestRestoreChunkCostsItsBytes(t *testing.T) {
	dst := memStore(t)
	r, err := dst.BeginRestore(1)
	if err != nil {
		t.Fatal(err)
	}
	node := appendNode(nil, inner(1, "k"))
	chunk := bytes.Repeat(node, (16<<20)/len(node))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err = r.AddChunk(chunk)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("AddChunk of a chunk of unjoined inner nodes = %v, want ErrBadSnapshot", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(len(chunk)) {
		t.Fatalf("a %d MiB chunk cost %d MiB before it was refused", len(chunk)>>20, alloc>>20)
	}
	if err := r.Abort(); err != nil {
		t.Fatal(err)
	}
	if r, err = dst.BeginRestore(1); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, MaxChunkSize+1)
	if err := r.AddChunk(big); !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("AddChunk of %d bytes = %v, want ErrBadSnapshot", len(big), err)
	}
}

// TestCloseDuringRestore: closing the store while iavl's importer writes
// a batch from its own goroutine neither panics (pebble: closed) nor
// leaves a state behind: the restore marker wipes it at the next open.
func TestCloseDuringRestore(t *testing.T) {
	for range 3 {
		dir := t.TempDir()
		dst := openTest(t, dir, Options{Backend: BackendPebble, CacheSize: 1000})
		r, err := dst.BeginRestore(1)
		if err != nil {
			t.Fatal(err)
		}
		// Over 10,000 nodes, so that the importer has written a batch.
		var chunk []byte
		var walk func(lo, hi int) int8
		walk = func(lo, hi int) int8 {
			key := func(i int) string { return string(binary.BigEndian.AppendUint32([]byte{'k'}, uint32(i))) }
			if hi-lo == 1 {
				chunk = appendNode(chunk, leaf(key(lo), bytes.Repeat([]byte{'v'}, 200)))
				return 0
			}
			mid := (lo + hi) / 2
			h := max(walk(lo, mid), walk(mid, hi)) + 1
			chunk = appendNode(chunk, inner(h, key(mid)))
			return h
		}
		walk(0, 1<<13)
		walk(1<<13, 1<<14) // two subtrees, no root: the import is unfinished
		if err := r.AddChunk(chunk); err != nil {
			t.Fatal(err)
		}
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
		again := openTest(t, dir, Options{Backend: BackendPebble, CacheSize: 1000})
		if v, _ := again.LastCommit(); v != 0 {
			t.Fatalf("reopened at version %d after a restore cut short", v)
		}
		if err := again.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
