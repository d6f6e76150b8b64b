package abci

import (
	"context"
	"fmt"

	"github.com/cometbft/cometbft/abci/types"
)

// InitChain applies the genesis app_state (the protojson of
// emrchainv1.GenesisState) and returns the resulting app hash, which becomes
// the AppHash of the first block's header.
//
// Validators are returned unchanged (an empty list tells CometBFT to keep the
// genesis validators): the consortium's validator set is fixed at genesis and
// changed only by a coordinated genesis or upgrade, never by a transaction.
//
// An error here stops the node before it makes a block, which is what an
// operator needs for a genesis the app rejects: a clear message at start-up
// instead of a chain built on an unknown state.
func (a *Application) InitChain(_ context.Context, req *types.InitChainRequest) (*types.InitChainResponse, error) {
	if err := a.lock(); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()

	// The app numbers its committed versions from 1 and has no notion of an
	// initial height; a genesis with initial_height > 1 would make every block
	// height disagree with the store version.
	if req.InitialHeight > 1 {
		return nil, fmt.Errorf("abci: genesis initial_height %d is not supported (must be 1)", req.InitialHeight)
	}
	appHash, err := a.app.InitChain(req.ChainId, req.AppStateBytes, req.Time.UTC())
	if err != nil {
		return nil, fmt.Errorf("abci: InitChain for chain %q: %w", req.ChainId, err)
	}
	a.logger.Info("ABCI InitChain", "chain_id", req.ChainId, "app_hash", fmt.Sprintf("%X", appHash),
		"validators", len(req.Validators))
	return &types.InitChainResponse{AppHash: appHash}, nil
}
