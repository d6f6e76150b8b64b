package abci

import (
	cmtproto "github.com/cometbft/cometbft/api/cometbft/types/v1"
	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// consensusLimits are the block and evidence sections of CometBFT's
// consensus params, as the app keeps them; nil when either is missing
// (only a test's InitChain leaves them out: CometBFT completes a genesis
// with its defaults, as the app does then).
func consensusLimits(p *cmtproto.ConsensusParams) *emrv1.ConsensusLimits {
	if p.GetBlock() == nil || p.GetEvidence() == nil {
		return nil
	}
	return app.ConsensusLimitsOf(
		cmttypes.BlockParams{MaxBytes: p.Block.MaxBytes, MaxGas: p.Block.MaxGas},
		cmttypes.EvidenceParams{MaxAgeNumBlocks: p.Evidence.MaxAgeNumBlocks, MaxAgeDuration: p.Evidence.MaxAgeDuration, MaxBytes: p.Evidence.MaxBytes})
}

// consensusParamUpdates tells CometBFT to replace its block and evidence
// sections with c (the other sections stay).
func consensusParamUpdates(c *emrv1.ConsensusLimits) *cmtproto.ConsensusParams {
	return &cmtproto.ConsensusParams{
		Block: &cmtproto.BlockParams{MaxBytes: c.BlockMaxBytes, MaxGas: c.BlockMaxGas},
		Evidence: &cmtproto.EvidenceParams{
			MaxAgeNumBlocks: c.EvidenceMaxAgeBlocks,
			MaxAgeDuration:  c.EvidenceMaxAge.AsDuration(),
			MaxBytes:        c.EvidenceMaxBytes,
		},
	}
}
