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
// sections with c, and its version section with AppVersion (the other
// sections stay). The version goes with every update because CometBFT
// takes the app version of the headers that follow an update from its
// params (state/execution.go updateState), and until then from Info: on a
// genesis that leaves consensus_params.version.app at 0, as `cometbft
// init` writes it, an update without it would switch every later header
// to version 0 while Info says AppVersion, and state sync of a later
// snapshot would fail CometBFT's check that the two agree.
func consensusParamUpdates(c *emrv1.ConsensusLimits) *cmtproto.ConsensusParams {
	comet := app.CometParams(c)
	p := comet.ToProto()
	return &cmtproto.ConsensusParams{Version: appVersionParams(), Block: p.Block, Evidence: p.Evidence}
}

// appVersionParams is CometBFT's version section naming AppVersion.
func appVersionParams() *cmtproto.VersionParams { return &cmtproto.VersionParams{App: AppVersion} }
