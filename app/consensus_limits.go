package app

import (
	"errors"
	"fmt"
	"math"
	"time"

	cmttypes "github.com/cometbft/cometbft/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// CometBFT's consensus params hold the block and evidence limits; the
// chain keeps a copy in its params (Params.consensus), taken at genesis,
// so that a SetParams proposal can change them like any other param and
// FinalizeBlock can hand the change to CometBFT (ConsensusUpdate). CometBFT
// halts on a change it refuses, and panics making a block whose header,
// commit and evidence leave no room for data: validateConsensusLimits
// checks both before a proposal can be made or executed.

// maxEvidenceAgeBlocks bounds evidence_max_age_blocks: 2^48 blocks are
// 8.9 million years of a block a second.
const maxEvidenceAgeBlocks = 1 << 48

// DefaultConsensusLimits are CometBFT's defaults (types.DefaultConsensusParams),
// what its genesis holds when consensus_params leaves the sections out.
func DefaultConsensusLimits() *emrv1.ConsensusLimits {
	d := cmttypes.DefaultConsensusParams()
	return ConsensusLimitsOf(d.Block, d.Evidence)
}

// ConsensusLimitsOf copies CometBFT's block and evidence params.
func ConsensusLimitsOf(block cmttypes.BlockParams, evidence cmttypes.EvidenceParams) *emrv1.ConsensusLimits {
	return &emrv1.ConsensusLimits{
		BlockMaxBytes:        block.MaxBytes,
		BlockMaxGas:          block.MaxGas,
		EvidenceMaxAgeBlocks: evidence.MaxAgeNumBlocks,
		EvidenceMaxAge:       durationpb.New(evidence.MaxAgeDuration),
		EvidenceMaxBytes:     evidence.MaxBytes,
	}
}

// CometParams is c as CometBFT's consensus params: its defaults with c's
// block and evidence sections (CometBFT checks those apart from the
// others, and FinalizeBlock hands only those on).
func CometParams(c *emrv1.ConsensusLimits) cmttypes.ConsensusParams {
	p := cmttypes.DefaultConsensusParams()
	p.Block = cmttypes.BlockParams{MaxBytes: c.GetBlockMaxBytes(), MaxGas: c.GetBlockMaxGas()}
	p.Evidence = cmttypes.EvidenceParams{
		MaxAgeNumBlocks: c.GetEvidenceMaxAgeBlocks(),
		MaxAgeDuration:  c.GetEvidenceMaxAge().AsDuration(),
		MaxBytes:        c.GetEvidenceMaxBytes(),
	}
	return *p
}

// validateConsensusLimits checks c by CometBFT's rules and that a
// transaction of maxTxBytes fits in a block of c beside the most evidence
// and the commit of MaxValidators validators.
func validateConsensusLimits(c *emrv1.ConsensusLimits, maxTxBytes uint64) error {
	if c.EvidenceMaxAge == nil {
		return errors.New("params.consensus.evidence_max_age missing")
	}
	if err := c.EvidenceMaxAge.CheckValid(); err != nil {
		return fmt.Errorf("params.consensus.evidence_max_age: %w", err)
	}
	// CometBFT holds it as a time.Duration: past that range it would get
	// another value than the params say.
	if age := c.EvidenceMaxAge; !proto.Equal(durationpb.New(age.AsDuration()), age) {
		return fmt.Errorf("params.consensus.evidence_max_age is %ds, more than CometBFT's longest duration (%s)", age.Seconds, time.Duration(math.MaxInt64))
	}
	if err := CometParams(c).ValidateBasic(); err != nil {
		return fmt.Errorf("params.consensus: %w", err)
	}
	// CometBFT adds it to evidence heights: far past any chain's life,
	// and far from overflowing there.
	if c.EvidenceMaxAgeBlocks > maxEvidenceAgeBlocks {
		return fmt.Errorf("params.consensus.evidence_max_age_blocks is %d, more than %d", c.EvidenceMaxAgeBlocks, int64(maxEvidenceAgeBlocks))
	}
	block := c.BlockMaxBytes
	if block == -1 {
		block = cmttypes.MaxBlockSizeBytes
	}
	room := block - cmttypes.MaxOverheadForBlock - cmttypes.MaxHeaderBytes - cmttypes.MaxCommitBytes(MaxValidators) - c.EvidenceMaxBytes
	if need := protoSizeOfTxLen(maxTxBytes); room < need {
		return fmt.Errorf("params.max_tx_bytes is %d: a block of %d bytes (consensus.block_max_bytes) holds %d bytes of transactions beside %d of evidence (consensus.evidence_max_bytes) and the commit of %d validators, and a transaction of max_tx_bytes takes %d",
			maxTxBytes, block, max(room, 0), c.EvidenceMaxBytes, MaxValidators, need)
	}
	return nil
}

// consensusUpdate is the change to CometBFT's limits from params before to
// after: nil when they are the same, or after is nil (the params did not
// change). (Params always carry them: InitChain takes them from the
// genesis, and a proposal without them keeps them.)
func consensusUpdate(before, after *emrv1.Params) *emrv1.ConsensusLimits {
	if after == nil || proto.Equal(before.GetConsensus(), after.GetConsensus()) {
		return nil
	}
	return after.GetConsensus()
}

// takeConsensusLimits puts the genesis's consensus limits (nil: CometBFT's
// defaults) into its params, which must leave them out or give the same:
// CometBFT reads them from consensus_params only.
func takeConsensusLimits(p *emrv1.Params, consensus *emrv1.ConsensusLimits) error {
	if consensus == nil {
		consensus = DefaultConsensusLimits()
	}
	if p.Consensus != nil && !proto.Equal(p.Consensus, consensus) {
		return fmt.Errorf("%w: app_state params.consensus differs from the genesis's consensus_params (block and evidence); leave it out, CometBFT reads consensus_params", ErrInvalidGenesis)
	}
	p.Consensus = proto.Clone(consensus).(*emrv1.ConsensusLimits)
	if err := ValidateParams(p); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidGenesis, err)
	}
	return nil
}
