package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cometbft/cometbft/libs/log"
	"github.com/cometbft/cometbft/mempool"
	rpccore "github.com/cometbft/cometbft/rpc/core"
	ctypes "github.com/cometbft/cometbft/rpc/core/types"
	rpctypes "github.com/cometbft/cometbft/rpc/jsonrpc/types"
	cmttypes "github.com/cometbft/cometbft/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/internal/ctxtime"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Bounds of txServer.
const (
	// maxBroadcastWaiters bounds the broadcasts waiting for their block at
	// once (each holds an event subscription); more are RESOURCE_EXHAUSTED.
	maxBroadcastWaiters = 1000
	// broadcastPollInterval is how often a waiting broadcast also looks its
	// tx up in the tx index, in case the event was missed (a subscription
	// cancelled under load, or a tx committed before the wait began).
	broadcastPollInterval = time.Second
)

// txServer is the emrchain.v1.TxService both API servers expose. It
// broadcasts through the node in this process — CometBFT's RPC environment,
// the code behind broadcast_tx_sync and tx — without a network hop, and
// waits for the commit on the node's event bus.
type txServer struct {
	emrv1.UnimplementedTxServiceServer

	rpc *rpccore.Environment
	bus *cmttypes.EventBus
	// lookupTx reads the tx index (rpc.Tx; replaceable in tests).
	lookupTx func(hash []byte) (*ctypes.ResultTx, error)
	// sequenceUsed reports whether tx's sequence is below its signer's
	// next in the committed state, which is when tx itself may be
	// committed (replaceable in tests).
	sequenceUsed func(tx []byte) bool
	app          *app.App
	timeout      time.Duration
	// mempoolMaxTxBytes is CometBFT's own limit (config.toml mempool.max_tx_bytes).
	mempoolMaxTxBytes int
	logger            log.Logger

	// done ends every wait when the services stop.
	done      chan struct{}
	closeOnce sync.Once
	waiters   chan struct{}
	nextSub   atomic.Uint64
}

var _ emrv1.TxServiceServer = (*txServer)(nil)

// newTxServer prepares the TxService over env.node. It stops (see close)
// when ctx ends.
func newTxServer(ctx context.Context, env serviceEnv) (*txServer, error) {
	rpcEnv, err := env.node.ConfigureRPC()
	if err != nil {
		return nil, fmt.Errorf("tx service: %w", err)
	}
	s := &txServer{
		rpc:               rpcEnv,
		bus:               env.node.EventBus(),
		app:               env.app,
		timeout:           env.appConfig.GRPC.BroadcastTimeout,
		mempoolMaxTxBytes: env.config.Mempool.MaxTxBytes,
		logger:            env.logger.With("module", "txservice"),
		done:              make(chan struct{}),
		waiters:           make(chan struct{}, maxBroadcastWaiters),
	}
	s.lookupTx = func(hash []byte) (*ctypes.ResultTx, error) { return rpcEnv.Tx(&rpctypes.Context{}, hash, false) }
	accounts := app.NewQueryService(env.app)
	s.sequenceUsed = func(tx []byte) bool { return committedSequenceUsed(accounts, tx) }
	if s.timeout <= 0 {
		s.timeout = defaultBroadcastTimeout
	}
	go func() {
		select {
		case <-ctx.Done():
			s.close()
		case <-s.done:
		}
	}()
	return s, nil
}

// close ends every broadcast still waiting (UNAVAILABLE); it is idempotent.
func (s *txServer) close() { s.closeOnce.Do(func() { close(s.done) }) }

// maxTxBytes is the largest tx worth receiving: the smaller of the chain's
// params.max_tx_bytes and the mempool's own limit.
func (s *txServer) maxTxBytes() int {
	limit := s.mempoolMaxTxBytes
	if p := s.app.Params(); p != nil && p.MaxTxBytes > 0 && (limit <= 0 || p.MaxTxBytes < uint64(limit)) {
		limit = int(p.MaxTxBytes)
	}
	if limit <= 0 {
		limit = int(app.DefaultParams().MaxTxBytes)
	}
	return limit
}

// maxMessageBytes is the largest gRPC message the server takes, fixed at
// start: sized for CometBFT's mempool limit, the most params.max_tx_bytes
// can be raised to by proposal and still count without a restart
// (BroadcastTx checks each transaction against the params of the moment),
// and never below gRPC's default.
func (s *txServer) maxMessageBytes() int {
	return max(max(s.mempoolMaxTxBytes, s.maxTxBytes())+grpcMsgMargin, 4<<20)
}

// BroadcastTx implements emrchain.v1.TxService: CheckTx, then (unless async)
// wait for the block. See tx_service.proto for the contract.
func (s *txServer) BroadcastTx(ctx context.Context, req *emrv1.BroadcastTxRequest) (resp *emrv1.BroadcastTxResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("BroadcastTx panicked", "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, grpcstatus.Error(codes.Internal, "internal error in BroadcastTx")
		}
	}()
	select {
	case <-s.done:
		return nil, grpcstatus.Error(codes.Unavailable, "the node is shutting down")
	default:
	}
	if len(req.GetTx()) == 0 {
		return nil, grpcstatus.Error(codes.InvalidArgument, "empty tx: send a serialized emrchain.v1.Tx")
	}
	if max := s.maxTxBytes(); len(req.Tx) > max {
		return nil, grpcstatus.Errorf(codes.InvalidArgument, "tx of %d bytes is above the maximum %d", len(req.Tx), max)
	}
	tx := cmttypes.Tx(req.Tx)
	hash := tx.Hash()
	out := &emrv1.BroadcastTxResponse{Hash: hex.EncodeToString(hash)}

	// Subscribe before CheckTx: on a fast chain the block can come before
	// CheckTx's answer has been read.
	var sub cmttypes.Subscription
	if !req.Async {
		select {
		case s.waiters <- struct{}{}:
			defer func() { <-s.waiters }()
		default:
			return nil, grpcstatus.Errorf(codes.ResourceExhausted, "%d broadcasts are already waiting for their block; retry later or use async", maxBroadcastWaiters)
		}
		subscriber := fmt.Sprintf("emrchain-txservice-%d", s.nextSub.Add(1))
		query := cmttypes.EventQueryTxFor(tx)
		sub, err = s.bus.Subscribe(ctx, subscriber, query, 1)
		if err != nil {
			return nil, grpcstatus.Errorf(codes.Unavailable, "subscribe to the tx event: %v", err)
		}
		defer func() {
			if uerr := s.bus.Unsubscribe(context.Background(), subscriber, query); uerr != nil {
				s.logger.Debug("unsubscribe", "subscriber", subscriber, "err", uerr)
			}
		}()
	}

	// The zero rpctypes.Context has a background context: CheckTx on the
	// local ABCI client answers promptly and cannot be abandoned halfway.
	check, err := s.rpc.BroadcastTxSync(&rpctypes.Context{}, tx)
	var invalid mempool.ErrInvalidTx
	switch {
	case errors.As(err, &invalid):
		// CometBFT v1 reports CheckTx's rejection as an error.
		return s.rejected(ctx, out, req.Tx, hash, req.Async, invalid.Code, invalid.Codespace, invalid.Log), nil
	case errors.Is(err, mempool.ErrTxInCache):
		// Seen before: committed already, or still in the mempool.
		if res := s.lookup(hash); res != nil {
			return res, nil
		}
		if req.Async {
			return out, nil
		}
	case err != nil:
		return nil, mempoolError(err)
	case check.Code != 0:
		return s.rejected(ctx, out, req.Tx, hash, req.Async, check.Code, check.Codespace, check.Log), nil
	case req.Async:
		return out, nil
	}
	return s.wait(ctx, sub, hash)
}

// BroadcastTxs implements emrchain.v1.TxService: BroadcastTx with async
// for every tx of a stream, answered in order. A tx the node does not take
// is answered with the status BroadcastTx would return, and the stream
// goes on; it ends when the client closes it (OK), goes away, or the
// services stop (UNAVAILABLE, also for a stream idle in Recv).
func (s *txServer) BroadcastTxs(stream grpc.BidiStreamingServer[emrv1.BroadcastTxsRequest, emrv1.BroadcastTxsResponse]) error {
	ctx := stream.Context()
	reqs, recvErr := make(chan *emrv1.BroadcastTxsRequest), make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done(): // the handler returned
				return
			}
		}
	}()
	for {
		select {
		case req := <-reqs:
			if err := stream.Send(s.broadcastAsync(ctx, req.GetTx())); err != nil {
				return err
			}
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil // the client closed its side: every tx is answered
			}
			return err
		case <-s.done:
			return grpcstatus.Error(codes.Unavailable, "the node is shutting down")
		case <-ctx.Done():
			return grpcstatus.FromContextError(ctx.Err()).Err()
		}
	}
}

// broadcastAsync is one tx of a BroadcastTxs stream: BroadcastTx with
// async, its error status turned into the answer's refusal.
func (s *txServer) broadcastAsync(ctx context.Context, raw []byte) *emrv1.BroadcastTxsResponse {
	out, err := s.BroadcastTx(ctx, &emrv1.BroadcastTxRequest{Tx: raw, Async: true})
	if err != nil {
		return &emrv1.BroadcastTxsResponse{Outcome: &emrv1.BroadcastTxsResponse_Refusal{Refusal: grpcstatus.Convert(err).Proto()}}
	}
	return &emrv1.BroadcastTxsResponse{Outcome: &emrv1.BroadcastTxsResponse_Result{Result: out}}
}

// wait waits for the tx's block, polling the tx index as a fallback.
func (s *txServer) wait(ctx context.Context, sub cmttypes.Subscription, hash []byte) (*emrv1.BroadcastTxResponse, error) {
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	poll := time.NewTicker(broadcastPollInterval)
	defer poll.Stop()
	events, canceled := sub.Out(), sub.Canceled()
	for {
		select {
		case msg := <-events:
			if data, ok := msg.Data().(cmttypes.EventDataTx); ok {
				return txResponse(hash, data.Height, data.Result.Code, data.Result.Codespace, data.Result.Log), nil
			}
		case <-canceled:
			// The event bus dropped the subscription (node stopping, or a
			// slow consumer); the index poll still finds the tx.
			s.logger.Debug("tx subscription cancelled", "hash", fmt.Sprintf("%X", hash), "err", sub.Err())
			events, canceled = nil, nil
		case <-poll.C:
			if res := s.lookup(hash); res != nil {
				return res, nil
			}
		case <-timer.C:
			return nil, grpcstatus.Errorf(codes.DeadlineExceeded,
				"tx %x was not committed within %s; it may still be: send the same tx again for its result", hash, s.timeout)
		case <-ctx.Done():
			return nil, grpcstatus.FromContextError(ctx.Err()).Err()
		case <-s.done:
			return nil, grpcstatus.Error(codes.Unavailable, "the node is shutting down")
		}
	}
}

// rejected answers CheckTx's rejection of tx hash, unless the tx is
// committed already: a tx sent again after its commit (a retry after a
// timeout, after a restart of the node, or on another node, where the
// mempool's cache of seen txs does not have it) is refused for its
// sequence, which it used itself, or, past its timeout height, as
// expired; the tx index then has its result.
// The node indexes a block's transactions after it commits the block, so
// a tx resent at that moment is refused before the index has it: when its
// sequence is used in the committed state, the index is asked
// indexedLookups times, indexedLookupWait apart (once for an async
// broadcast, which answers before the commit anyway).
func (s *txServer) rejected(ctx context.Context, out *emrv1.BroadcastTxResponse, tx, hash []byte, async bool, code uint32, codespace, log string) *emrv1.BroadcastTxResponse {
	if (code == app.ErrBadSequence.Code() || code == app.ErrTxExpired.Code()) && codespace == app.Codespace {
		lookups := 1
		if !async && s.sequenceUsed(tx) { // an async sender (a stream) is not held up
			lookups = indexedLookups
		}
		for i := range lookups {
			if res := s.lookup(hash); res != nil {
				return res
			}
			if i == lookups-1 || ctxtime.Sleep(ctx, indexedLookupWait) != nil {
				break
			}
		}
	}
	out.Code, out.Codespace, out.Log = code, codespace, log
	return out
}

// committedSequenceUsed reports whether raw's sequence is below its
// signer's next sequence in the committed state (read through accounts).
func committedSequenceUsed(accounts *app.QueryService, raw []byte) bool {
	tx, err := app.DecodeTx(raw)
	if err != nil {
		return false
	}
	resp, err := accounts.Account(context.Background(), &emrv1.QueryAccountRequest{Address: hex.EncodeToString(tx.Signer)})
	if err != nil {
		return false // nothing committed yet, or the store failed: look once
	}
	return tx.Body.Sequence < resp.GetAccount().GetNextSequence()
}

const (
	indexedLookups    = 3
	indexedLookupWait = 100 * time.Millisecond
)

// lookup returns the result of a committed tx from the tx index, or nil.
func (s *txServer) lookup(hash []byte) *emrv1.BroadcastTxResponse {
	r, err := s.lookupTx(hash)
	if err != nil || r == nil {
		return nil
	}
	return txResponse(hash, r.Height, r.TxResult.Code, r.TxResult.Codespace, r.TxResult.Log)
}

func txResponse(hash []byte, height int64, code uint32, codespace, log string) *emrv1.BroadcastTxResponse {
	return &emrv1.BroadcastTxResponse{Hash: hex.EncodeToString(hash), Height: height, Code: code, Codespace: codespace, Log: log}
}

// mempoolError maps CometBFT's refusals to take a tx into the mempool —
// refusals before the app's CheckTx, or of the node — to gRPC status errors.
func mempoolError(err error) error {
	var (
		tooLarge mempool.ErrTxTooLarge
		full     mempool.ErrMempoolIsFull
		pre      mempool.ErrPreCheck
	)
	switch {
	case errors.As(err, &tooLarge), errors.As(err, &pre):
		return grpcstatus.Error(codes.InvalidArgument, err.Error())
	case errors.As(err, &full), errors.Is(err, mempool.ErrRecheckFull):
		return grpcstatus.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, rpccore.ErrEndpointClosedCatchingUp):
		return grpcstatus.Error(codes.Unavailable, "the node is catching up with the chain; retry later or use another node")
	}
	return grpcstatus.Errorf(codes.Unavailable, "the mempool refused the tx: %v", err)
}
