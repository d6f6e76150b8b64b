package abci

import (
	"context"

	"github.com/cometbft/cometbft/abci/types"
)

// CheckTx admits a transaction to the mempool if it would pass against the
// check state (the last committed state plus the txs already admitted). A
// recheck — CometBFT re-validating the mempool after a block — is passed on
// as such so the app can skip work it cached (e.g. the signature check).
//
// A rejected tx gets its code and log; CheckTx never returns an error for a
// bad tx. The only error is ErrClosed during shutdown.
func (a *Application) CheckTx(_ context.Context, req *types.CheckTxRequest) (*types.CheckTxResponse, error) {
	if err := a.lock(); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()

	res := a.app.CheckTx(req.Tx, req.Type == types.CHECK_TX_TYPE_RECHECK)
	return &types.CheckTxResponse{
		Code:      res.Code,
		Log:       res.Log,
		Codespace: res.Codespace,
		Events:    events(res.Events),
	}, nil
}
