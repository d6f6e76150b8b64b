package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/emrchain/emrchain/store"
)

// ErrNotEmpty is returned by BeginRestore when the app already holds a
// state (a committed block, or a genesis awaiting its first block): a
// snapshot is only restored into an empty app.
var ErrNotEmpty = errors.New("app: state is not empty")

// BeginRestore starts restoring the state of block height from a
// state-sync snapshot. The app must be empty. Feed the chunks to the
// returned restore (AddChunk), then call FinishRestore, or Abort it.
func (a *App) BeginRestore(height int64) (*store.Restore, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.params != nil { // InitChain ran; the store refuses committed blocks itself
		return nil, fmt.Errorf("%w: a genesis is applied", ErrNotEmpty)
	}
	r, err := a.store.BeginRestore(height)
	if errors.Is(err, store.ErrNotEmpty) {
		return nil, fmt.Errorf("%w: %w", ErrNotEmpty, err)
	}
	return r, err
}

// Snapshot writes a state-sync snapshot of committed block height into
// dir (store.Snapshots.Create); it runs for as long as the export takes,
// off the consensus path.
func (a *App) Snapshot(ctx context.Context, dir *store.Snapshots, height int64) (store.SnapshotInfo, error) {
	return dir.Create(ctx, a.store, height)
}

// FinishRestore completes r. The restored state counts only if its root
// is trusted (the app hash the light client verified for r's height) and
// it holds the app's bookkeeping (chain id, params, a last-block record of
// r's height or an earlier one: blocks that change nothing record none);
// otherwise it is wiped and the app is empty again. On success the app resumes from the restored block as if
// it had committed it: the next block it executes is height+1.
func (a *App) FinishRestore(r *store.Restore, trusted []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var b bookkeeping
	err := r.Finish(trusted, func(rd store.Reader) error {
		var err error
		b, err = readBookkeeping(rd, r.Version())
		return err
	})
	if err != nil {
		return fmt.Errorf("restore block %d: %w", r.Version(), err)
	}
	a.chainID, a.params, a.last = b.chainID, b.params, b.last
	a.executed, a.pending = nil, nil
	return a.resetCheckState()
}
