package abci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cometbft/cometbft/abci/types"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/store"
)

// State sync (see docs/decisions.md, "State sync").
//
// Serving: with Options.Snapshots set, Commit starts, every Interval
// blocks, a snapshot of the block just committed on a goroutine of its own
// (store.Snapshots.Create), so consensus never waits for it; one at a time
// (one due while another is being written is written next).
// ListSnapshots and LoadSnapshotChunk answer from the snapshot directory;
// a chunk this node does not hold is an empty answer, which CometBFT
// treats as "ask another peer".
//
// Restoring: OfferSnapshot accepts a snapshot of store.SnapshotFormat only
// into an empty app, and only with metadata that decodes, matches the
// chunk count and the snapshot hash, and names the app hash CometBFT's
// light client verified (request.AppHash) as its root. ApplySnapshotChunk
// checks each chunk's SHA-256 against the metadata before it decodes it:
// a mismatch is RETRY with the chunk refetched and its sender rejected.
// After the last chunk the import is committed and its root compared with
// the trusted app hash before the app takes the state. Any peer input that
// fails is an answer (REJECT, RETRY), never a Go error: an ABCI error
// halts CometBFT. A refused snapshot's partial import is wiped, so another
// can be tried; a snapshot that proves bad after its chunks matched their
// hashes is rejected with every peer that served it (failRestore). A
// failure of this node's own (its disk) aborts state sync instead.

// SnapshotOptions configure the snapshots a node makes and serves.
type SnapshotOptions struct {
	// Dir holds the snapshots, taken of the app's state.
	Dir *store.Snapshots
	// Interval: a snapshot of every block whose height is a multiple of it
	// (0: none are made; the ones on disk are still served).
	Interval uint64
}

// snapshotter makes snapshots in the background and restores one.
type snapshotter struct {
	opts SnapshotOptions // Dir nil: this node serves none

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// mu guards busy (a snapshot is being written) and pending (the
	// height of the one due next, 0 if none).
	mu      sync.Mutex
	busy    bool
	pending int64
	// beforeWrite, if set (tests only), is called before each snapshot is
	// written, with its height.
	beforeWrite func(height int64)

	// restore is the restore in progress (guarded by Application.mu).
	restore *restoring
	// aborted is why this node aborted state sync, if it did.
	aborted atomic.Pointer[abortCause]
}

// abortCause is why state sync was aborted.
type abortCause struct{ err error }

// StateSyncAborted is why this node aborted state sync (ABORT: a failure
// of its own, which CometBFT does not retry), or nil. CometBFT then logs
// the failure once and the node waits, neither restoring nor syncing
// blocks, until it is restarted.
func (a *Application) StateSyncAborted() error {
	if c := a.snaps.aborted.Load(); c != nil {
		return c.err
	}
	return nil
}

// abortStateSync records why state sync is aborted, and logs it.
func (a *Application) abortStateSync(step string, err error) {
	a.snaps.aborted.CompareAndSwap(nil, &abortCause{err})
	a.logger.Error("state sync aborted: this node cannot restore a snapshot; mend the cause and restart the node (the partial restore is wiped at start)",
		"step", step, "err", err)
}

// restoring is an accepted snapshot being applied.
type restoring struct {
	r    *store.Restore
	meta store.SnapshotMetadata // its Root is the trusted app hash (checkOffer)
	next uint32                 // index of the next chunk to apply
	// senders are the peers whose chunks were taken, each named once.
	senders []string
}

// took notes that sender served a chunk of the snapshot.
func (rs *restoring) took(sender string) {
	if sender != "" && !slices.Contains(rs.senders, sender) {
		rs.senders = append(rs.senders, sender)
	}
}

func newSnapshotter(opts *SnapshotOptions) *snapshotter {
	ctx, cancel := context.WithCancel(context.Background())
	s := &snapshotter{ctx: ctx, cancel: cancel}
	if opts != nil {
		s.opts = *opts
	}
	return s
}

// stop cancels a snapshot being made and waits for it to end.
func (s *snapshotter) stop() {
	s.cancel()
	s.wg.Wait()
}

// maybeSnapshot starts a snapshot of height if one is due. It never
// blocks: while a snapshot is being written, the latest one due waits and
// is written next (an earlier one waiting is dropped).
func (a *Application) maybeSnapshot(height int64) {
	s := a.snaps
	if s.opts.Dir == nil || s.opts.Interval == 0 || height <= 0 || uint64(height)%s.opts.Interval != 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy {
		if s.pending != 0 {
			a.logger.Info("snapshot skipped: a later one is due", "height", s.pending)
		}
		s.pending = height
		return
	}
	s.busy = true
	s.wg.Add(1)
	go a.writeSnapshots(height)
}

// writeSnapshots writes the snapshot of height, then the one due
// meanwhile, if any, until none is left or the adapter closes.
func (a *Application) writeSnapshots(height int64) {
	s := a.snaps
	defer s.wg.Done()
	for height != 0 {
		if s.beforeWrite != nil {
			s.beforeWrite(height)
		}
		info, err := a.app.Snapshot(s.ctx, s.opts.Dir, height)
		switch {
		case err != nil && s.ctx.Err() != nil:
			a.logger.Info("snapshot abandoned: the node is stopping", "height", height)
		case err != nil:
			a.logger.Error("snapshot failed", "height", height, "err", err)
		default:
			a.logger.Info("snapshot written", "height", info.Height, "chunks", info.Chunks, "hash", fmt.Sprintf("%X", info.Hash))
		}
		s.mu.Lock()
		height, s.pending = s.pending, 0
		if height == 0 || s.ctx.Err() != nil {
			height, s.busy = 0, false
		}
		s.mu.Unlock()
	}
}

// ListSnapshots lists the snapshots this node holds, newest first; each
// listed is kept a while for the peer that asked (store Advertise).
func (a *Application) ListSnapshots(context.Context, *types.ListSnapshotsRequest) (*types.ListSnapshotsResponse, error) {
	if err := a.rlock(); err != nil {
		return nil, err
	}
	defer a.readMu.RUnlock()
	if a.snaps.opts.Dir == nil {
		return &types.ListSnapshotsResponse{}, nil
	}
	list, err := a.snaps.opts.Dir.Advertise()
	if err != nil { // the snapshots that read are listed all the same
		a.logger.Error("ListSnapshots: not every snapshot is offered", "err", err)
	}
	out := make([]*types.Snapshot, len(list))
	for i, s := range list {
		out[i] = &types.Snapshot{Height: uint64(s.Height), Format: s.Format, Chunks: s.Chunks, Hash: s.Hash, Metadata: s.Metadata}
	}
	return &types.ListSnapshotsResponse{Snapshots: out}, nil
}

// LoadSnapshotChunk returns a chunk of a snapshot this node holds; one it
// does not hold (never made, or pruned since it was listed) is an empty
// chunk.
func (a *Application) LoadSnapshotChunk(_ context.Context, req *types.LoadSnapshotChunkRequest) (*types.LoadSnapshotChunkResponse, error) {
	if err := a.rlock(); err != nil {
		return nil, err
	}
	defer a.readMu.RUnlock()
	if a.snaps.opts.Dir == nil || req.Height == 0 || req.Height > maxSnapshotHeight {
		return &types.LoadSnapshotChunkResponse{}, nil
	}
	chunk, err := a.snaps.opts.Dir.LoadChunk(int64(req.Height), req.Format, req.Chunk)
	switch {
	case errors.Is(err, store.ErrSnapshotNotFound):
		a.logger.Debug("LoadSnapshotChunk: no such chunk", "height", req.Height, "format", req.Format, "chunk", req.Chunk, "err", err)
		return &types.LoadSnapshotChunkResponse{}, nil
	case err != nil: // a disk fault or a damaged snapshot of our own
		a.logger.Error("LoadSnapshotChunk: cannot read a chunk this node holds", "height", req.Height, "format", req.Format, "chunk", req.Chunk, "err", err)
		return &types.LoadSnapshotChunkResponse{}, nil
	}
	return &types.LoadSnapshotChunkResponse{Chunk: chunk}, nil
}

// OfferSnapshot accepts a snapshot to restore; see the comment above.
func (a *Application) OfferSnapshot(_ context.Context, req *types.OfferSnapshotRequest) (*types.OfferSnapshotResponse, error) {
	if err := a.lock(); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	a.abortRestore()
	result := a.offer(req)
	return &types.OfferSnapshotResponse{Result: result}, nil
}

// offer validates the offer and starts the restore. Called with a.mu held.
func (a *Application) offer(req *types.OfferSnapshotRequest) types.OfferSnapshotResult {
	snap := req.Snapshot
	if snap == nil {
		return types.OFFER_SNAPSHOT_RESULT_REJECT
	}
	if snap.Format != store.SnapshotFormat {
		a.logger.Info("OfferSnapshot: unknown format", "format", snap.Format)
		return types.OFFER_SNAPSHOT_RESULT_REJECT_FORMAT
	}
	meta, err := checkOffer(snap, req.AppHash)
	if err != nil {
		a.logger.Info("OfferSnapshot: rejected", "height", snap.Height, "err", err)
		return types.OFFER_SNAPSHOT_RESULT_REJECT
	}
	r, err := a.app.BeginRestore(int64(snap.Height))
	switch {
	case errors.Is(err, app.ErrNotEmpty):
		a.logger.Error("OfferSnapshot: the app already holds a state; state sync needs an empty data directory", "err", err)
		return types.OFFER_SNAPSHOT_RESULT_REJECT
	case err != nil:
		a.abortStateSync("offer", err)
		return types.OFFER_SNAPSHOT_RESULT_ABORT
	}
	a.snaps.restore = &restoring{r: r, meta: meta}
	a.logger.Info("OfferSnapshot: restoring", "height", snap.Height, "chunks", snap.Chunks)
	return types.OFFER_SNAPSHOT_RESULT_ACCEPT
}

// errOffer is why an offered snapshot is refused.
var errOffer = errors.New("snapshot refused")

// maxSnapshotHeight bounds the heights a peer may name: far beyond any
// chain's, and an int64 for the store.
const maxSnapshotHeight = math.MaxInt64

// checkOffer checks an offered snapshot of the known format against its
// metadata and the trusted app hash, and returns the metadata.
func checkOffer(snap *types.Snapshot, appHash []byte) (store.SnapshotMetadata, error) {
	var none store.SnapshotMetadata
	switch {
	case snap.Height < 1 || snap.Height > maxSnapshotHeight:
		return none, fmt.Errorf("%w: height %d", errOffer, snap.Height)
	case len(appHash) != sha256.Size:
		return none, fmt.Errorf("%w: the light client's app hash has %d bytes, not %d", errOffer, len(appHash), sha256.Size)
	}
	meta, err := store.DecodeSnapshotMetadata(snap.Metadata)
	switch {
	case err != nil:
		return none, fmt.Errorf("%w: metadata: %w", errOffer, err)
	case len(meta.ChunkHashes) != int(snap.Chunks):
		return none, fmt.Errorf("%w: %d chunks offered, the metadata lists %d", errOffer, snap.Chunks, len(meta.ChunkHashes))
	case !bytes.Equal(snap.Hash, meta.Hash()):
		return none, fmt.Errorf("%w: the snapshot hash is not its metadata's", errOffer)
	case !bytes.Equal(meta.Root, appHash):
		// The exporter's root is only a hint, but one that differs from
		// the trusted hash cannot restore it: save the download.
		return none, fmt.Errorf("%w: its root %X is not the app hash %X the light client verified for height %d (another chain, or wrong trust settings?)",
			errOffer, meta.Root, appHash, snap.Height)
	}
	return meta, nil
}

// ApplySnapshotChunk verifies and applies one chunk; see the comment above.
func (a *Application) ApplySnapshotChunk(_ context.Context, req *types.ApplySnapshotChunkRequest) (*types.ApplySnapshotChunkResponse, error) {
	if err := a.lock(); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	return a.applyChunk(req), nil
}

// applyChunk is ApplySnapshotChunk with a.mu held.
func (a *Application) applyChunk(req *types.ApplySnapshotChunkRequest) *types.ApplySnapshotChunkResponse {
	rs := a.snaps.restore
	answer := func(r types.ApplySnapshotChunkResult) *types.ApplySnapshotChunkResponse {
		return &types.ApplySnapshotChunkResponse{Result: r}
	}
	switch {
	case rs == nil:
		a.logger.Error("ApplySnapshotChunk without an accepted snapshot")
		return answer(types.APPLY_SNAPSHOT_CHUNK_RESULT_ABORT)
	case req.Index >= uint32(len(rs.meta.ChunkHashes)) || req.Index > rs.next:
		// CometBFT applies chunks in order; anything else is not this
		// snapshot's stream.
		a.logger.Info("ApplySnapshotChunk: chunk out of order", "index", req.Index, "want", rs.next)
		a.abortRestore()
		return answer(types.APPLY_SNAPSHOT_CHUNK_RESULT_REJECT_SNAPSHOT)
	case req.Index < rs.next:
		return answer(types.APPLY_SNAPSHOT_CHUNK_RESULT_ACCEPT) // applied already
	case sha256.Sum256(req.Chunk) != rs.meta.ChunkHashes[req.Index]:
		a.logger.Info("ApplySnapshotChunk: chunk does not match its hash; refetching", "index", req.Index, "sender", req.Sender)
		resp := answer(types.APPLY_SNAPSHOT_CHUNK_RESULT_RETRY)
		resp.RefetchChunks = []uint32{req.Index}
		if req.Sender != "" {
			resp.RejectSenders = []string{req.Sender}
		}
		return resp
	}
	rs.took(req.Sender)
	if err := rs.r.AddChunk(req.Chunk); err != nil {
		return a.failRestore(rs, "chunk", err)
	}
	rs.next++
	if int(rs.next) < len(rs.meta.ChunkHashes) {
		return answer(types.APPLY_SNAPSHOT_CHUNK_RESULT_ACCEPT)
	}
	a.snaps.restore = nil
	if err := a.app.FinishRestore(rs.r, rs.meta.Root); err != nil {
		return a.failRestore(rs, "finish", err)
	}
	height, hash := a.app.LastCommit()
	a.logger.Info("snapshot restored", "height", height, "app_hash", hash)
	return answer(types.APPLY_SNAPSHOT_CHUNK_RESULT_ACCEPT)
}

// failRestore abandons the restore rs after err; its import is wiped.
//
// A snapshot that proves bad (chunks that match their hashes but not a
// tree, or a tree that is not the trusted app hash) is rejected, so that
// CometBFT tries another, and so is every peer that served a chunk of it:
// CometBFT asks for a snapshot's chunks only the peers that advertised
// it, under a hash that names every chunk, so each of them offered a bad
// snapshot (CometBFT takes a late answer to an earlier snapshot's request
// too, but a chunk counts only if it matches this snapshot's hash).
// Unrejected, such a peer could offer one bad snapshot after another,
// each downloaded in turn.
//
// Any other failure is this node's (its disk, a closed store),
// and another snapshot would meet it too: state sync aborts, CometBFT
// stops the sync with an error, and the operator restarts the node once
// the cause is mended (the partial import is wiped at open). Called with
// a.mu held.
func (a *Application) failRestore(rs *restoring, step string, err error) *types.ApplySnapshotChunkResponse {
	a.abortRestore()
	if !snapshotsFault(err) {
		a.abortStateSync(step, err)
		return &types.ApplySnapshotChunkResponse{Result: types.APPLY_SNAPSHOT_CHUNK_RESULT_ABORT}
	}
	a.logger.Error("ApplySnapshotChunk: snapshot rejected, and the peers that served it", "step", step, "peers", rs.senders, "err", err)
	return &types.ApplySnapshotChunkResponse{
		Result:        types.APPLY_SNAPSHOT_CHUNK_RESULT_REJECT_SNAPSHOT,
		RejectSenders: slices.Clone(rs.senders),
	}
}

// snapshotsFault reports whether a restore failed for err because of the
// snapshot (store.Restore tells them apart).
func snapshotsFault(err error) bool {
	return errors.Is(err, store.ErrBadSnapshot) || errors.Is(err, store.ErrRootMismatch)
}

// abortRestore abandons the restore in progress, if any, and wipes its
// partial import. Called with a.mu held.
func (a *Application) abortRestore() {
	rs := a.snaps.restore
	if rs == nil {
		return
	}
	a.snaps.restore = nil
	if err := rs.r.Abort(); err != nil {
		a.logger.Error("abandoning a restore", "err", err)
	}
}
