package abci

import (
	"context"

	"github.com/cometbft/cometbft/abci/types"
)

// emrchain does not use vote extensions (its genesis leaves
// feature.vote_extensions_enable_height at 0, so CometBFT never calls these).
// They are answered so that enabling extensions by mistake is harmless: no
// extension is produced and an empty one is accepted.

// ExtendVote returns an empty vote extension.
func (a *Application) ExtendVote(context.Context, *types.ExtendVoteRequest) (*types.ExtendVoteResponse, error) {
	return &types.ExtendVoteResponse{}, nil
}

// VerifyVoteExtension accepts an empty extension and rejects any other, since
// no correct emrchain validator produces one.
func (a *Application) VerifyVoteExtension(_ context.Context, req *types.VerifyVoteExtensionRequest) (*types.VerifyVoteExtensionResponse, error) {
	if len(req.VoteExtension) != 0 {
		return &types.VerifyVoteExtensionResponse{Status: types.VERIFY_VOTE_EXTENSION_STATUS_REJECT}, nil
	}
	return &types.VerifyVoteExtensionResponse{Status: types.VERIFY_VOTE_EXTENSION_STATUS_ACCEPT}, nil
}
