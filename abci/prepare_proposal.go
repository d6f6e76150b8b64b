package abci

import (
	"context"

	"github.com/cometbft/cometbft/abci/types"
)

// PrepareProposal lets the proposer drop the mempool txs that are no longer
// valid for the block it builds (e.g. a grant revoked since the tx entered
// the mempool), within req.MaxTxBytes. Nothing in it can fail: an invalid tx
// is simply left out.
func (a *Application) PrepareProposal(_ context.Context, req *types.PrepareProposalRequest) (*types.PrepareProposalResponse, error) {
	if err := a.lock(); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()

	txs := a.app.PrepareProposal(blockInfo(req.Height, req.Time), req.Txs, req.MaxTxBytes)
	if len(txs) != len(req.Txs) {
		a.logger.Debug("PrepareProposal dropped txs", "height", req.Height,
			"offered", len(req.Txs), "kept", len(txs))
	}
	return &types.PrepareProposalResponse{Txs: txs}, nil
}
