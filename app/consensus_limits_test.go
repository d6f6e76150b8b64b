package app_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	cmttypes "github.com/cometbft/cometbft/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// initChainWith starts an app from genesis g with validators and CometBFT's
// limits consensus (as InitChain gets them from consensus_params).
func initChainWith(t *testing.T, g *emrv1.GenesisState, validators []*emrv1.Validator, consensus *emrv1.ConsensusLimits) error {
	t.Helper()
	a := apptest.MemApp(t)
	appState, err := app.MarshalGenesis(g)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.InitChain(apptest.ChainID, appState, apptest.GenesisTime, validators, consensus)
	return err
}

// TestGenesisConsensusLimits: the chain's params take CometBFT's block and
// evidence limits from the genesis's consensus_params. app_state may leave
// them out or repeat them; different ones are refused, as are limits under
// which a transaction of max_tx_bytes would not fit in a block.
func TestGenesisConsensusLimits(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	if p, _ := paramsAndChanges(c); !proto.Equal(p.Consensus, app.DefaultConsensusLimits()) {
		t.Fatalf("a genesis without consensus params started with %v, want CometBFT's defaults %v", p.Consensus, app.DefaultConsensusLimits())
	}
	eightMiB := app.DefaultConsensusLimits()
	eightMiB.BlockMaxBytes = 8 << 20
	if err := initChainWith(t, apptest.Consortium(), apptest.GenesisValidators(), eightMiB); err != nil {
		t.Fatalf("InitChain with an 8 MiB block: %v", err)
	}
	repeated := apptest.Consortium()
	repeated.Params.Consensus = proto.Clone(eightMiB).(*emrv1.ConsensusLimits)
	if err := initChainWith(t, repeated, apptest.GenesisValidators(), eightMiB); err != nil {
		t.Fatalf("app_state repeating consensus_params: %v", err)
	}
	for _, tc := range []struct {
		name      string
		g         func() *emrv1.GenesisState
		consensus *emrv1.ConsensusLimits
		want      string
	}{
		{"app_state differs", func() *emrv1.GenesisState { return repeated }, app.DefaultConsensusLimits(),
			"app_state params.consensus differs from the genesis's consensus_params"},
		{"no room for max_tx_bytes", apptest.Consortium, &emrv1.ConsensusLimits{
			BlockMaxBytes: 2 << 20, BlockMaxGas: -1, EvidenceMaxAgeBlocks: 100, EvidenceMaxAge: durationpb.New(time.Hour), EvidenceMaxBytes: 1 << 20,
		}, fmt.Sprintf("params.max_tx_bytes is 1048576: a block of 2097152 bytes (consensus.block_max_bytes) holds %d bytes of transactions", cmttypes.MaxDataBytes(2<<20, 1<<20, app.MaxValidators))},
		{"by CometBFT's rules", apptest.Consortium, &emrv1.ConsensusLimits{
			BlockMaxBytes: 4 << 20, BlockMaxGas: -1, EvidenceMaxAgeBlocks: 0, EvidenceMaxAge: durationpb.New(time.Hour), EvidenceMaxBytes: 1 << 20,
		}, "evidence.MaxAgeNumBlocks must be greater than 0"},
	} {
		err := initChainWith(t, tc.g(), apptest.GenesisValidators(), tc.consensus)
		if app.CodeOf(err) != app.ErrInvalidGenesis.Code() || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: InitChain = %v, want an invalid genesis saying %q", tc.name, err, tc.want)
		}
	}
}

// TestParamsChangeConsensusLimits: a SetParams proposal changes CometBFT's
// limits like the app's own params; the block that executes it hands the
// new ones to CometBFT (FinalizeBlock's ConsensusUpdate), and no other
// block does. Limits CometBFT would refuse (it halts on them) or that
// leave no room in a block for a transaction of max_tx_bytes (CometBFT
// panics making such a block) are refused when proposed. A proposal that
// leaves them out keeps the chain's.
func TestParamsChangeConsensusLimits(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	current, changes := paramsAndChanges(c)
	with := func(change func(*emrv1.Params)) *emrv1.Params {
		p := proto.Clone(current).(*emrv1.Params)
		change(p)
		return p
	}
	for _, tc := range []struct {
		name   string
		change func(*emrv1.Params)
		want   string
	}{
		{"block of 0 bytes", func(p *emrv1.Params) { p.Consensus.BlockMaxBytes = 0 }, "block.MaxBytes cannot be 0"},
		{"block below -1", func(p *emrv1.Params) { p.Consensus.BlockMaxBytes = -2 }, "block.MaxBytes must be -1 or greater than 0"},
		{"block over CometBFT's largest", func(p *emrv1.Params) { p.Consensus.BlockMaxBytes = cmttypes.MaxBlockSizeBytes + 1 }, "block.MaxBytes is too big"},
		{"gas below -1", func(p *emrv1.Params) { p.Consensus.BlockMaxGas = -2 }, "block.MaxGas must be greater or equal to -1"},
		{"evidence larger than the block", func(p *emrv1.Params) { p.Consensus.EvidenceMaxBytes = p.Consensus.BlockMaxBytes + 1 }, "evidence.MaxBytesEvidence is greater than upper bound"},
		{"negative evidence", func(p *emrv1.Params) { p.Consensus.EvidenceMaxBytes = -1 }, "evidence.MaxBytes must be non negative"},
		{"evidence age of no blocks", func(p *emrv1.Params) { p.Consensus.EvidenceMaxAgeBlocks = 0 }, "evidence.MaxAgeNumBlocks must be greater than 0"},
		{"evidence age of no time", func(p *emrv1.Params) { p.Consensus.EvidenceMaxAge = durationpb.New(0) }, "evidence.MaxAgeDuration must be greater than 0"},
		{"evidence age missing", func(p *emrv1.Params) { p.Consensus.EvidenceMaxAge = nil }, "params.consensus.evidence_max_age missing"},
		{"evidence age out of range", func(p *emrv1.Params) { p.Consensus.EvidenceMaxAge = &durationpb.Duration{Seconds: 1, Nanos: -1} }, "params.consensus.evidence_max_age"},
		{"evidence age past 2^48 blocks", func(p *emrv1.Params) { p.Consensus.EvidenceMaxAgeBlocks = 1<<48 + 1 }, "params.consensus.evidence_max_age_blocks is 281474976710657, more than 281474976710656"},
		{"evidence age past a time.Duration", func(p *emrv1.Params) {
			p.Consensus.EvidenceMaxAge = &durationpb.Duration{Seconds: 300 * 365 * 24 * 3600}
		},
			"params.consensus.evidence_max_age is 9460800000s, more than CometBFT's longest duration (2562047h47m16.854775807s)"},
		{"a block too small for its header", func(p *emrv1.Params) { p.Consensus.BlockMaxBytes, p.Consensus.EvidenceMaxBytes = 1000, 0 },
			"holds 0 bytes of transactions beside 0 of evidence (consensus.evidence_max_bytes) and the commit of 100 validators"},
		{"a block too small for max_tx_bytes", func(p *emrv1.Params) { p.Consensus.BlockMaxBytes = 2 << 20 }, "params.max_tx_bytes is 1048576: a block of 2097152 bytes"},
		{"max_tx_bytes too large for the block", func(p *emrv1.Params) { p.MaxTxBytes = 3 << 20 }, "params.max_tx_bytes is 3145728"},
		{"max_tx_bytes too large for the block left out", func(p *emrv1.Params) { p.MaxTxBytes, p.Consensus = 3<<20, nil }, "params.max_tx_bytes is 3145728"},
	} {
		ruleCheck(t, tc.name, c.Exec(w.regA, apptest.SetParams(with(tc.change), changes)), app.ErrInvalidMsg, tc.want)
	}
	ruleCheck(t, "evidence age of 2^48 blocks, the most", c.Simulate(w.regA, c.Now,
		apptest.SetParams(with(func(p *emrv1.Params) { p.Consensus.EvidenceMaxAgeBlocks = 1 << 48 }), changes)), nil)

	// Smaller blocks, older evidence: executed by the third approval,
	// whose block alone hands the change to CometBFT.
	next := with(func(p *emrv1.Params) {
		p.Consensus.BlockMaxBytes = 2<<20 + 20<<10
		p.Consensus.EvidenceMaxAgeBlocks = 200_000
		p.Consensus.EvidenceMaxAge = durationpb.New(96 * time.Hour)
	})
	c.Must(w.regA, apptest.SetParams(next, changes))
	id := ruleProposalsMade(c)
	c.Must(w.regB, apptest.Approve(id))
	if c.ConsensusUpdate != nil {
		t.Fatalf("a block approving without executing changed CometBFT's limits: %v", c.ConsensusUpdate)
	}
	c.Must(w.regR, apptest.Approve(id))
	if !proto.Equal(c.ConsensusUpdate, next.Consensus) {
		t.Fatalf("the executing block hands CometBFT %v, want %v", c.ConsensusUpdate, next.Consensus)
	}
	if p, _ := paramsAndChanges(c); !proto.Equal(p, next) {
		t.Fatalf("params after the change: %v, want %v", p, next)
	}
	c.Block()
	if c.ConsensusUpdate != nil {
		t.Fatalf("the block after the change hands CometBFT %v again", c.ConsensusUpdate)
	}

	// A proposal that leaves the limits out keeps them: the chain stores
	// it with the chain's, and its block changes nothing of CometBFT's.
	current, changes = paramsAndChanges(c)
	smallPages := with(func(p *emrv1.Params) { p.MaxPageSize, p.Consensus = 50, nil })
	executeByAll(t, w, apptest.SetParams(smallPages, changes))
	if c.ConsensusUpdate != nil {
		t.Fatalf("a change of max_page_size handed CometBFT %v", c.ConsensusUpdate)
	}
	stored := ruleProposal(c, ruleProposalsMade(c)).Proposal.Change.GetSetParams().Params
	if p, _ := paramsAndChanges(c); !proto.Equal(p.Consensus, next.Consensus) || !proto.Equal(stored.Consensus, next.Consensus) || p.MaxPageSize != 50 {
		t.Fatalf("after a proposal without limits: params %v, stored proposal %v; want the limits %v kept", p, stored, next.Consensus)
	}
}

// TestConsensusLimitsRoom: the room rule is CometBFT's own arithmetic
// (types.MaxDataBytes with the most validators): a block with exactly
// room for a transaction of max_tx_bytes beside the evidence is accepted,
// one byte less is refused, with -1 counted as CometBFT's largest block.
func TestConsensusLimitsRoom(t *testing.T) {
	p := app.DefaultParams()
	p.Consensus = app.DefaultConsensusLimits()
	need := int64(p.MaxTxBytes) + 4 // tag and a 3-byte length
	evidence := p.Consensus.EvidenceMaxBytes
	exact := need + (4 << 20) - cmttypes.MaxDataBytes(4<<20, evidence, app.MaxValidators)
	p.Consensus.BlockMaxBytes = exact
	if err := app.ValidateParams(p); err != nil {
		t.Fatalf("a block of %d bytes, exactly room for a transaction of %d: %v", exact, p.MaxTxBytes, err)
	}
	p.Consensus.BlockMaxBytes = exact - 1
	if err := app.ValidateParams(p); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("holds %d bytes of transactions", need-1)) {
		t.Fatalf("a block of %d bytes, one short: %v", exact-1, err)
	}
	p.Consensus.BlockMaxBytes = -1
	p.Consensus.EvidenceMaxBytes = cmttypes.MaxDataBytes(cmttypes.MaxBlockSizeBytes, 0, app.MaxValidators) - need
	if err := app.ValidateParams(p); err != nil {
		t.Fatalf("block -1 with evidence leaving exactly room: %v", err)
	}
	p.Consensus.EvidenceMaxBytes++
	if err := app.ValidateParams(p); err == nil {
		t.Fatal("block -1 with evidence leaving one byte too few: accepted")
	}
}

// TestConsensusUpdateAfterRestart: a node that finalized the block
// executing a change and stopped before Commit finalizes it again on
// restart (CometBFT replays it) and hands CometBFT the same change.
func TestConsensusUpdateAfterRestart(t *testing.T) {
	g := apptest.Consortium()
	g.Organizations, g.Members = g.Organizations[:1], g.Members[:1] // one organization decides alone
	c := apptest.New(t, apptest.Options{Dir: t.TempDir(), Genesis: g})
	next := proto.Clone(g.Params).(*emrv1.Params)
	next.Consensus = app.DefaultConsensusLimits()
	next.Consensus.BlockMaxBytes = 3 << 20
	tx := c.Tx(apptest.Registrar(apptest.HospitalA), apptest.SetParams(next, 0))
	b := app.BlockInfo{Height: c.Height() + 1, Time: c.Now}
	finalize := func(c *apptest.Chain) *emrv1.ConsensusLimits {
		t.Helper()
		results, _, err := c.App.FinalizeBlock(b, [][]byte{tx})
		if err != nil || !results[0].OK() {
			t.Fatalf("FinalizeBlock: %v, %v", results, err)
		}
		return c.App.ConsensusUpdate()
	}
	first := finalize(c)
	if !proto.Equal(first, next.Consensus) {
		t.Fatalf("first FinalizeBlock hands %v, want %v", first, next.Consensus)
	}
	if again := finalize(c.Reopen()); !proto.Equal(again, first) {
		t.Fatalf("after a restart before Commit the block hands %v, first %v", again, first)
	}
}
