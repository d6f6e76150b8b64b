package abci

import (
	"context"
	"fmt"

	"github.com/cometbft/cometbft/abci/types"
	cmtproto "github.com/cometbft/cometbft/api/cometbft/types/v1"
	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
)

// FinalizeBlock executes the decided block: every tx gets an ExecTxResult (a
// failed tx has a non-zero code and is still part of the block) and the
// response carries the app hash of the staged state, the validator
// changes the block's executed proposals made (CometBFT applies them from
// height+2) and their change of the block and evidence limits (from
// height+1). Nothing is persisted
// here — Commit does that — so a crash after FinalizeBlock replays the block.
//
// An error returned here halts the chain, deliberately. The app returns one
// only for a broken invariant (a storage fault, an undecodable state object,
// a height that does not follow the last committed one). Carrying on would
// commit an app hash this node cannot vouch for and that may differ from the
// other validators'; stopping keeps the fault local and visible.
func (a *Application) FinalizeBlock(_ context.Context, req *types.FinalizeBlockRequest) (*types.FinalizeBlockResponse, error) {
	if err := a.lock(); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()

	b := blockInfo(req.Height, req.Time)
	for _, v := range req.DecidedLastCommit.Votes {
		if v.BlockIdFlag == cmtproto.BlockIDFlagCommit {
			b.Signers = append(b.Signers, v.Validator.Address)
		}
	}
	results, appHash, err := a.app.FinalizeBlock(b, req.Txs)
	if err != nil {
		return nil, a.halt(fmt.Errorf("abci: FinalizeBlock at height %d: %w", req.Height, err))
	}
	if len(results) != len(req.Txs) {
		return nil, a.halt(fmt.Errorf("abci: FinalizeBlock at height %d: %d results for %d txs", req.Height, len(results), len(req.Txs)))
	}
	txResults := make([]*types.ExecTxResult, len(results))
	failed := 0
	for i, r := range results {
		if r.Code != types.CodeTypeOK {
			failed++
		}
		txResults[i] = &types.ExecTxResult{
			Code:      r.Code,
			Log:       r.Log,
			Codespace: r.Codespace,
			Events:    events(r.Events),
		}
	}
	var updates []types.ValidatorUpdate
	for _, v := range a.app.ValidatorUpdates() {
		updates = append(updates, types.ValidatorUpdate{PubKeyType: ed25519.KeyType, PubKeyBytes: v.PubKey, Power: v.Power})
		a.logger.Info("Validator set change", "height", req.Height, "pub_key", app.ValidatorKeyText(v.PubKey),
			"power", v.Power, "from_height", req.Height+2)
	}
	var paramUpdates *cmtproto.ConsensusParams
	if c := a.app.ConsensusUpdate(); c != nil {
		paramUpdates = consensusParamUpdates(c)
		a.logger.Info("Consensus params change", "height", req.Height, "block_max_bytes", c.BlockMaxBytes,
			"evidence_max_bytes", c.EvidenceMaxBytes, "evidence_max_age_blocks", c.EvidenceMaxAgeBlocks,
			"evidence_max_age", c.EvidenceMaxAge.AsDuration(), "from_height", req.Height+1)
	}
	a.logger.Debug("ABCI FinalizeBlock", "height", req.Height, "txs", len(req.Txs), "failed", failed,
		"app_hash", fmt.Sprintf("%X", appHash))
	return &types.FinalizeBlockResponse{TxResults: txResults, AppHash: appHash, ValidatorUpdates: updates, ConsensusParamUpdates: paramUpdates}, nil
}
