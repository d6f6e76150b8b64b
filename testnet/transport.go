package testnet

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/testnet/scenario"
)

// transportTimeout bounds each call of a Transport.
const transportTimeout = 90 * time.Second

// Transport runs the stories of package scenario on a Net: a transaction is
// signed at the signer's committed sequence, broadcast to the running nodes
// in turn and confirmed through a tx index (Net.Submit); queries go to a
// running node that has the blocks of the transactions seen committed.
type Transport struct{ Net *Net }

var _ scenario.Transport = Transport{}

// Submit implements scenario.Transport. A refusal by CheckTx is an Outcome
// with its code; a committed transaction has code 0 and its height.
func (tr Transport) Submit(actor *apptest.Actor, msg *emrv1.Msg) (scenario.Outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), transportTimeout)
	defer cancel()
	seq, err := tr.Net.NextSequence(ctx, actor.Address)
	if err != nil {
		return scenario.Outcome{}, err
	}
	c, err := tr.Net.Submit(ctx, actor.Tx(tr.Net.ChainID, seq, msg))
	var rejected *RejectedError
	if errors.As(err, &rejected) {
		return scenario.Outcome{Code: rejected.Code, Log: rejected.Log}, nil
	}
	if err != nil {
		return scenario.Outcome{}, err
	}
	return scenario.Outcome{Code: c.Code, Log: c.Log, Height: c.Height}, nil
}

// Query implements scenario.Transport.
func (tr Transport) Query(method string, req, resp proto.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), transportTimeout)
	defer cancel()
	i, err := tr.Net.PickCurrent(ctx)
	if err != nil {
		return err
	}
	return tr.Net.Query(ctx, i, method, req, resp)
}

// Now implements scenario.Transport: the time of the latest block of a
// running node (the wall clock if none answers).
func (tr Transport) Now() time.Time {
	ctx, cancel := context.WithTimeout(context.Background(), rpcCallTimeout)
	defer cancel()
	if i := tr.Net.Pick(); i >= 0 {
		if st, err := tr.Net.RPC(i).Status(ctx); err == nil {
			return st.SyncInfo.LatestBlockTime
		}
	}
	return time.Now()
}
