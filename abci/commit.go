package abci

import (
	"context"
	"fmt"

	"github.com/cometbft/cometbft/abci/types"
)

// Commit persists the state staged by FinalizeBlock and resets the check
// state to it. RetainHeight tells CometBFT which blocks the app no longer
// needs (0 = keep all); emrchain's audit value lies in its blocks, so the app
// keeps every one (app.Commit returns 0): app.toml's pruning removes old
// versions of the state, never blocks. When a snapshot is due (app.toml
// snapshot_interval), Commit starts it in the background and returns.
//
// An error here halts the chain: the block is decided and its app hash
// already agreed on, so a failure to persist it is a storage fault that no
// amount of retrying in consensus can fix. On restart CometBFT replays the
// block from its own store.
func (a *Application) Commit(context.Context, *types.CommitRequest) (*types.CommitResponse, error) {
	if err := a.lock(); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()

	retain, err := a.app.Commit()
	if err != nil {
		return nil, a.halt(fmt.Errorf("abci: Commit: %w", err))
	}
	if retain < 0 {
		retain = 0
	}
	// Off the consensus path: the snapshot is written in the background,
	// from the version just saved, and changes nothing the app computes.
	height, _ := a.app.LastCommit()
	a.maybeSnapshot(height)
	return &types.CommitResponse{RetainHeight: retain}, nil
}
