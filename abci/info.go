package abci

import (
	"context"
	"fmt"

	"github.com/cometbft/cometbft/abci/types"
)

// Info reports the last height and app hash the app has committed. This is
// the crash-recovery handshake: CometBFT replays every block it has above
// that height through FinalizeBlock and Commit, or calls InitChain when the
// height is 0. Info must therefore describe persisted state only, never a
// staged block — app.LastCommit does exactly that.
func (a *Application) Info(_ context.Context, req *types.InfoRequest) (*types.InfoResponse, error) {
	if err := a.rlock(); err != nil {
		return nil, err
	}
	defer a.readMu.RUnlock()

	height, appHash := a.app.LastCommit()
	a.logger.Debug("ABCI Info", "height", height, "app_hash", fmt.Sprintf("%X", appHash),
		"cometbft", req.Version, "abci", req.AbciVersion)
	if height == 0 {
		// Nothing committed: CometBFT will call InitChain and ignores the hash.
		appHash = nil
	}
	return &types.InfoResponse{
		Data:             "emrchain",
		Version:          a.version,
		AppVersion:       AppVersion,
		LastBlockHeight:  height,
		LastBlockAppHash: appHash,
	}, nil
}
