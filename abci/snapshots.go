package abci

import (
	"context"

	"github.com/cometbft/cometbft/abci/types"
)

// State sync is not offered yet: a node joins by replaying blocks from
// genesis (block sync), which for a consortium chain is correct, only slower.
// Snapshots of the IAVL tree are planned in a later issue; until then these
// methods answer explicitly rather than pretend:
//
//   - ListSnapshots lists none, so this node never advertises a snapshot.
//   - OfferSnapshot rejects every snapshot: the app cannot restore one, and
//     accepting would leave the node with an empty state under a trusted app
//     hash. REJECT (not ABORT) lets CometBFT try others and then give up on
//     state sync cleanly if statesync.enable was set by mistake.
//   - LoadSnapshotChunk returns no chunk: no snapshot was ever listed.
//   - ApplySnapshotChunk aborts: unreachable after a rejected offer.

// ListSnapshots returns no snapshots.
func (a *Application) ListSnapshots(context.Context, *types.ListSnapshotsRequest) (*types.ListSnapshotsResponse, error) {
	return &types.ListSnapshotsResponse{}, nil
}

// OfferSnapshot rejects the snapshot; see the comment above.
func (a *Application) OfferSnapshot(context.Context, *types.OfferSnapshotRequest) (*types.OfferSnapshotResponse, error) {
	a.logger.Info("OfferSnapshot: state sync is not supported yet; rejecting snapshot (disable statesync.enable and block-sync instead)")
	return &types.OfferSnapshotResponse{Result: types.OFFER_SNAPSHOT_RESULT_REJECT}, nil
}

// LoadSnapshotChunk returns no chunk.
func (a *Application) LoadSnapshotChunk(context.Context, *types.LoadSnapshotChunkRequest) (*types.LoadSnapshotChunkResponse, error) {
	return &types.LoadSnapshotChunkResponse{}, nil
}

// ApplySnapshotChunk aborts state sync.
func (a *Application) ApplySnapshotChunk(context.Context, *types.ApplySnapshotChunkRequest) (*types.ApplySnapshotChunkResponse, error) {
	return &types.ApplySnapshotChunkResponse{Result: types.APPLY_SNAPSHOT_CHUNK_RESULT_ABORT}, nil
}
