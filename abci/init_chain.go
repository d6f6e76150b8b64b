package abci

import (
	"context"
	"fmt"
	"slices"

	"github.com/cometbft/cometbft/abci/types"
	cmtproto "github.com/cometbft/cometbft/api/cometbft/types/v1"
	"github.com/cometbft/cometbft/crypto/ed25519"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// InitChain applies the genesis app_state (the protojson of
// emrchainv1.GenesisState) and returns the resulting app hash, which becomes
// the AppHash of the first block's header.
//
// The genesis's block and evidence limits are kept in the params, where a
// proposal changes them (returned from FinalizeBlock as consensus param
// updates).
//
// The response names the app version, AppVersion, for CometBFT's state:
// a genesis may leave it at 0.
//
// The genesis validators are kept in the state, where proposals change them
// (app MsgPropose, returned from FinalizeBlock as validator updates), and
// returned unchanged: an empty list tells CometBFT to keep the genesis's.
// Only ed25519 consensus keys are accepted, the only kind a proposal can name.
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
	// A validator change names an ed25519 key; CometBFT refuses one of a
	// type its consensus params do not allow (a halt at the first change).
	if keyTypes := req.ConsensusParams.GetValidator().GetPubKeyTypes(); len(keyTypes) > 0 && !slices.Contains(keyTypes, ed25519.KeyType) {
		return nil, fmt.Errorf("abci: the genesis consensus params allow validator keys of types %v; emrchain's validators change by ed25519 key, so ed25519 must be among them", keyTypes)
	}
	// The headers carry Info's AppVersion; a genesis that names another
	// app version (0, CometBFT's default, names none) is for another app.
	if v := req.ConsensusParams.GetVersion().GetApp(); v != 0 && v != AppVersion {
		return nil, fmt.Errorf("abci: the genesis consensus params name app version %d; this emrchaind is app version %d", v, AppVersion)
	}
	validators := make([]*emrv1.Validator, len(req.Validators))
	for i, v := range req.Validators {
		if v.PubKeyType != ed25519.KeyType {
			return nil, fmt.Errorf("abci: genesis validator %d has a %s key; emrchain validators use ed25519", i, v.PubKeyType)
		}
		validators[i] = &emrv1.Validator{PubKey: v.PubKeyBytes, Power: v.Power}
	}
	appHash, err := a.app.InitChain(req.ChainId, req.AppStateBytes, req.Time.UTC(), validators, consensusLimits(req.ConsensusParams))
	if err != nil {
		return nil, fmt.Errorf("abci: InitChain for chain %q: %w", req.ChainId, err)
	}
	a.logger.Info("ABCI InitChain", "chain_id", req.ChainId, "app_hash", fmt.Sprintf("%X", appHash),
		"validators", len(req.Validators))
	// The app version CometBFT's state holds from genesis on (it would
	// otherwise keep a genesis's 0 until the first params update, and its
	// own rollback restores the state's: consensusParamUpdates).
	return &types.InitChainResponse{AppHash: appHash, ConsensusParams: &cmtproto.ConsensusParams{Version: appVersionParams()}}, nil
}
