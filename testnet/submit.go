package testnet

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/internal/ctxtime"
)

// Bounds of Submit.
const (
	submitTimeout  = 60 * time.Second       // one transaction, all attempts
	maxBroadcasts  = 12                     // broadcasts of one transaction
	confirmWait    = 6 * time.Second        // after an admission, before broadcasting again
	retryPause     = 200 * time.Millisecond // after a failed broadcast
	txPollInterval = 150 * time.Millisecond
)

// Committed is a transaction a node's tx index reported in a block.
type Committed struct {
	Hash   []byte
	Height int64
	Code   uint32
	Log    string
}

// RejectedError is CheckTx refusing a transaction.
type RejectedError struct {
	Code uint32
	Log  string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("rejected by CheckTx: code %d: %s", e.Code, e.Log)
}

// Submit broadcasts tx (broadcast_tx_sync) to the running nodes in turn —
// each time one that has every block this process saw a transaction
// committed in (PickCurrent) — until one admits it, then waits until a node's tx index reports it in a
// block. If it is not committed within a few seconds of its admission — the
// admitting node may have died with the tx in its mempool — it is broadcast
// again to the next node. A transaction CheckTx refuses on its first
// broadcast is returned as a *RejectedError.
func (n *Net) Submit(ctx context.Context, tx []byte) (Committed, error) {
	ctx, cancel := context.WithTimeout(ctx, submitTimeout)
	defer cancel()
	hash := cmttypes.Tx(tx).Hash()
	admitted := false
	var lastErr error
	for attempt := range maxBroadcasts {
		// A node behind the writes seen committed would refuse a tx that
		// builds on them.
		pctx, pcancel := context.WithTimeout(ctx, confirmWait)
		i, err := n.PickCurrent(pctx)
		pcancel()
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		code, log, err := n.Broadcast(ctx, i, tx)
		switch {
		case err != nil && strings.Contains(err.Error(), "already exists in cache"):
			// This node has seen it: it is in a mempool or committed.
			admitted = true
		case err != nil:
			// Down, catching up, or shutting down: try the next node.
			lastErr = fmt.Errorf("%s: %w", n.nodes[i].name, err)
			if err := ctxtime.Sleep(ctx, retryPause); err != nil {
				return Committed{}, fmt.Errorf("tx %X: %w (last error: %v)", hash, err, lastErr)
			}
			continue
		case code == 0:
			admitted = true
		case !admitted:
			return Committed{}, &RejectedError{Code: code, Log: log}
		case code == app.ErrBadSequence.Code():
			// Admitted before and now out of sequence: most likely
			// committed already; look for it.
		default:
			lastErr = fmt.Errorf("%s: CheckTx code %d: %s", n.nodes[i].name, code, log)
		}
		if code == 0 && err == nil && attempt > 0 {
			n.rebroadcasts.Add(1)
		}
		if c, ok := n.waitTx(ctx, hash, confirmWait); ok {
			return c, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return Committed{}, fmt.Errorf("tx %X not committed after %d broadcasts (last error: %v)", hash, maxBroadcasts, lastErr)
}

// invalidTxRE matches the error CometBFT's broadcast_tx_sync returns when
// CheckTx refuses a transaction (mempool.ErrInvalidTx).
var invalidTxRE = regexp.MustCompile(`(?s)is invalid: code=(\d+), data=[0-9A-Fa-f]*, log='(.*)', codespace=`)

// Broadcast sends tx to node i with broadcast_tx_sync and returns CheckTx's
// code and log; err is for a transport or node failure (including "tx
// already exists in cache").
func (n *Net) Broadcast(ctx context.Context, i int, tx []byte) (code uint32, log string, err error) {
	ctx, cancel := context.WithTimeout(ctx, rpcCallTimeout)
	defer cancel()
	res, err := n.nodes[i].client.BroadcastTxSync(ctx, tx)
	if err != nil {
		if m := invalidTxRE.FindStringSubmatch(err.Error()); m != nil {
			c, perr := strconv.ParseUint(m[1], 10, 32)
			if perr == nil && c != 0 {
				return uint32(c), m[2], nil
			}
		}
		return 0, "", err
	}
	return res.Code, res.Log, nil
}

// Rebroadcasts is how many times Submit had a transaction admitted again
// after an earlier admission did not lead to a commit in time.
func (n *Net) Rebroadcasts() int64 { return n.rebroadcasts.Load() }

// waitTx polls the running nodes' tx indexes for hash for up to wait.
func (n *Net) waitTx(ctx context.Context, hash []byte, wait time.Duration) (Committed, bool) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		if i := n.Pick(); i >= 0 {
			if c, err := n.Tx(ctx, i, hash); err == nil {
				return c, true
			}
		}
		if ctxtime.Sleep(ctx, txPollInterval) != nil {
			return Committed{}, false
		}
	}
}

// Tx looks hash up in node i's tx index.
func (n *Net) Tx(ctx context.Context, i int, hash []byte) (Committed, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcCallTimeout)
	defer cancel()
	r, err := n.nodes[i].client.Tx(ctx, hash, false)
	if err != nil {
		return Committed{}, err
	}
	n.saw(r.Height)
	return Committed{Hash: hash, Height: r.Height, Code: r.TxResult.Code, Log: r.TxResult.Log}, nil
}

// saw records that a transaction was committed at h.
func (n *Net) saw(h int64) {
	for {
		old := n.seen.Load()
		if h <= old || n.seen.CompareAndSwap(old, h) {
			return
		}
	}
}

// PickCurrent returns a running node whose application has committed every
// block a transaction was seen committed in (Net.Tx), waiting for one if
// needed: a query there reads, and CheckTx there checks against, the
// writes this process saw committed. It asks ABCI Info, not /status: a node
// saves a block before it executes it, so /status may be a block ahead of
// the state.
func (n *Net) PickCurrent(ctx context.Context) (int, error) {
	want := n.seen.Load()
	for {
		for range n.Len() {
			i := n.Pick()
			if i < 0 {
				break
			}
			if h, err := n.AppHeight(ctx, i); err == nil && h >= want {
				return i, nil
			}
		}
		if err := ctxtime.Sleep(ctx, pollInterval); err != nil {
			return -1, fmt.Errorf("no running node has committed height %d: %w", want, err)
		}
	}
}

// AppHeight is the last height node i's application committed (ABCI Info).
func (n *Net) AppHeight(ctx context.Context, i int) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcCallTimeout)
	defer cancel()
	res, err := n.nodes[i].client.ABCIInfo(ctx)
	if err != nil {
		return 0, err
	}
	return res.Response.LastBlockHeight, nil
}
