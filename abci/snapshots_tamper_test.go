package abci_test

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"testing"

	"github.com/cometbft/cometbft/abci/types"
	"github.com/cosmos/iavl"

	"github.com/emrchain/emrchain/store"
)

// TestStateSyncRefusesTamperedInnerKeys: IAVL hashes the keys of leaves,
// not of inner nodes, which route lookups. A peer that changes the inner
// keys on the way to the clinician's entry still offers a stream with the
// trusted root; accepted, the restored node would answer "not found" for
// a committed member. The restore refuses it, and the app stays empty.
func TestStateSyncRefusesTamperedInnerKeys(t *testing.T) {
	src, snap, appHash := sourceChain(t)
	var nodes []*iavl.ExportNode
	for i := range snap.Chunks {
		ns, err := store.DecodeChunk(bytes.Clone(chunkOf(t, src, snap, i)), int64(snap.Height))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, ns...)
	}
	tampered := 0
	for _, n := range nodes {
		if n.Height > 0 && bytes.Contains(n.Key, clinicianOf.Address) {
			n.Key = append(bytes.Clone(n.Key), 0) // just above the separator
			tampered++
		}
	}
	if tampered == 0 {
		t.Fatal("no inner key leads to the clinician: the test tampers with nothing")
	}
	chunk := store.EncodeChunk(nodes)
	meta := store.SnapshotMetadata{Root: appHash, ChunkHashes: [][sha256.Size]byte{sha256.Sum256(chunk)}}
	evil := &types.Snapshot{Height: snap.Height, Format: snap.Format, Chunks: 1, Hash: meta.Hash(), Metadata: meta.Encode()}

	dst := snapNode(t, t.TempDir(), 0, store.MinChunkSize)
	if r := offer(t, dst, evil, appHash); r != types.OFFER_SNAPSHOT_RESULT_ACCEPT {
		t.Fatalf("offer = %v", r)
	}
	if r := apply(t, dst, 0, chunk, "evil"); r.Result != types.APPLY_SNAPSHOT_CHUNK_RESULT_REJECT_SNAPSHOT || !slices.Equal(r.RejectSenders, []string{"evil"}) {
		t.Fatalf("a stream with %d tampered inner keys: ApplySnapshotChunk = %v, want REJECT_SNAPSHOT and its sender rejected", tampered, r)
	}
	checkInfo(t, dst, 0, nil)
}
