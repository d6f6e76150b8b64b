package abci

import (
	"context"
	"fmt"

	"github.com/cometbft/cometbft/abci/types"
)

// ProcessProposal accepts a proposed block only if every tx in it would
// execute successfully. A correct proposer never includes an invalid tx (see
// PrepareProposal), so a rejection points at a faulty or malicious proposer;
// the round then moves on to the next proposer.
//
// The app's reason is logged, not returned: an error from ProcessProposal
// would be treated by CometBFT as a failure of this node, not of the block.
func (a *Application) ProcessProposal(_ context.Context, req *types.ProcessProposalRequest) (*types.ProcessProposalResponse, error) {
	if err := a.lock(); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()

	if err := a.app.ProcessProposal(blockInfo(req.Height, req.Time), req.Txs); err != nil {
		a.logger.Error("ProcessProposal: rejecting block", "height", req.Height,
			"hash", fmt.Sprintf("%X", req.Hash), "proposer", fmt.Sprintf("%X", req.ProposerAddress), "reason", err)
		return &types.ProcessProposalResponse{Status: types.PROCESS_PROPOSAL_STATUS_REJECT}, nil
	}
	return &types.ProcessProposalResponse{Status: types.PROCESS_PROPOSAL_STATUS_ACCEPT}, nil
}
