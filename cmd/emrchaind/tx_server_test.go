package main

import (
	"context"
	"errors"
	"testing"
	"time"

	abcitypes "github.com/cometbft/cometbft/abci/types"
	"github.com/cometbft/cometbft/libs/log"
	cmtpubsub "github.com/cometbft/cometbft/libs/pubsub"
	"github.com/cometbft/cometbft/mempool"
	rpccore "github.com/cometbft/cometbft/rpc/core"
	ctypes "github.com/cometbft/cometbft/rpc/core/types"
	cmttypes "github.com/cometbft/cometbft/types"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// fakeSub is an event subscription the test drives.
type fakeSub struct {
	out      chan cmtpubsub.Message
	canceled chan struct{}
}

func newFakeSub() *fakeSub {
	return &fakeSub{out: make(chan cmtpubsub.Message, 1), canceled: make(chan struct{})}
}

func (s *fakeSub) Out() <-chan cmtpubsub.Message { return s.out }
func (s *fakeSub) Canceled() <-chan struct{}     { return s.canceled }
func (s *fakeSub) Err() error                    { return errors.New("canceled by the test") }

var _ cmttypes.Subscription = (*fakeSub)(nil)

// TestTxServerWait covers every way a waiting broadcast ends.
func TestTxServerWait(t *testing.T) {
	hash := []byte{0xab, 0xcd}
	notIndexed := func([]byte) (*ctypes.ResultTx, error) { return nil, errors.New("tx not found") }
	newServer := func(timeout time.Duration, lookup func([]byte) (*ctypes.ResultTx, error)) *txServer {
		return &txServer{timeout: timeout, lookupTx: lookup, logger: log.NewNopLogger(), done: make(chan struct{})}
	}

	t.Run("event", func(t *testing.T) {
		s, sub := newServer(time.Minute, notIndexed), newFakeSub()
		sub.out <- cmtpubsub.NewMessage(cmttypes.EventDataTx{TxResult: abcitypes.TxResult{
			Height: 7, Result: abcitypes.ExecTxResult{Code: 13, Codespace: "emrchain", Log: "no permission"}}}, nil)
		r, err := s.wait(context.Background(), sub, hash)
		if err != nil || r.Hash != "abcd" || r.Height != 7 || r.Code != 13 || r.Codespace != "emrchain" || r.Log != "no permission" {
			t.Fatalf("wait = %+v, %v", r, err)
		}
	})
	t.Run("subscription cancelled, found by polling", func(t *testing.T) {
		found := func([]byte) (*ctypes.ResultTx, error) {
			return &ctypes.ResultTx{Height: 9, TxResult: abcitypes.ExecTxResult{}}, nil
		}
		s, sub := newServer(time.Minute, found), newFakeSub()
		close(sub.canceled)
		r, err := s.wait(context.Background(), sub, hash)
		if err != nil || r.Height != 9 || r.Code != 0 {
			t.Fatalf("wait = %+v, %v", r, err)
		}
	})
	for _, c := range []struct {
		name string
		end  func(s *txServer, cancel context.CancelFunc)
		want codes.Code
	}{
		{"timeout", func(*txServer, context.CancelFunc) {}, codes.DeadlineExceeded},
		{"caller gone", func(_ *txServer, cancel context.CancelFunc) { cancel() }, codes.Canceled},
		{"services stopping", func(s *txServer, _ context.CancelFunc) { s.close(); s.close() }, codes.Unavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			timeout := time.Minute
			if c.want == codes.DeadlineExceeded {
				timeout = 50 * time.Millisecond
			}
			s := newServer(timeout, notIndexed)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c.end(s, cancel)
			_, err := s.wait(ctx, newFakeSub(), hash)
			if grpcstatus.Code(err) != c.want {
				t.Fatalf("wait: %v, want %v", err, c.want)
			}
		})
	}
}

// TestMempoolError: the mempool's refusals become the statuses the
// TxService contract names; a full mempool is RESOURCE_EXHAUSTED, which
// clients (the load among them) send again later.
func TestMempoolError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want codes.Code
	}{
		{mempool.ErrTxTooLarge{Max: 10, Actual: 11}, codes.InvalidArgument},
		{mempool.ErrPreCheck{Err: errors.New("too big")}, codes.InvalidArgument},
		{mempool.ErrMempoolIsFull{NumTxs: 5000, MaxTxs: 5000}, codes.ResourceExhausted},
		{mempool.ErrRecheckFull, codes.ResourceExhausted},
		{rpccore.ErrEndpointClosedCatchingUp, codes.Unavailable},
		{errors.New("something else"), codes.Unavailable},
	} {
		got := mempoolError(c.err)
		if grpcstatus.Code(got) != c.want || grpcstatus.Convert(got).Message() == "" {
			t.Errorf("%v: %v, want %v", c.err, got, c.want)
		}
	}
}

// TestBroadcastAsyncRefusals: a tx of a BroadcastTxs stream that the node
// does not take is answered with the status, not an error of the stream.
func TestBroadcastAsyncRefusals(t *testing.T) {
	stopping := &txServer{logger: log.NewNopLogger(), done: make(chan struct{})}
	stopping.close()
	// Without its app, maxTxBytes panics: the panic becomes INTERNAL.
	broken := &txServer{logger: log.NewNopLogger(), done: make(chan struct{})}
	for _, c := range []struct {
		name string
		s    *txServer
		tx   []byte
		want codes.Code
	}{
		{"node stopping", stopping, []byte("x"), codes.Unavailable},
		{"empty", broken, nil, codes.InvalidArgument},
		{"panic", broken, []byte("x"), codes.Internal},
	} {
		r := c.s.broadcastAsync(context.Background(), c.tx)
		if ref := r.GetRefusal(); ref == nil || codes.Code(ref.Code) != c.want || ref.Message == "" || r.GetResult() != nil {
			t.Errorf("%s: %v, want refusal %v", c.name, r, c.want)
		}
	}
}

// TestRejectedSequenceLooksUpTheIndex: a tx CheckTx refuses for its
// sequence may be committed already and not yet indexed (the node indexes
// after the commit): when its sequence is used in the committed state, the
// answer is its committed result once the index has it; a sequence not
// used yet is looked up once; any other rejection is answered as it is.
func TestRejectedSequenceLooksUpTheIndex(t *testing.T) {
	hash := []byte{0xab, 0xcd}
	lookups, indexedAt := 0, 2
	used := true
	s := &txServer{logger: log.NewNopLogger(), done: make(chan struct{}),
		sequenceUsed: func([]byte) bool { return used },
		lookupTx: func([]byte) (*ctypes.ResultTx, error) {
			lookups++
			if lookups < indexedAt {
				return nil, errors.New("tx not found") // not indexed yet
			}
			return &ctypes.ResultTx{Height: 7, TxResult: abcitypes.ExecTxResult{Code: 0}}, nil
		}}
	async := false
	reject := func(code uint32) *emrv1.BroadcastTxResponse {
		lookups = 0
		return s.rejected(context.Background(), &emrv1.BroadcastTxResponse{Hash: "abcd"}, []byte("tx"), hash, async, code, app.Codespace, "refused")
	}
	if res := reject(app.ErrBadSequence.Code()); res.Height != 7 || res.Code != 0 || lookups != 2 {
		t.Fatalf("a committed tx refused for its sequence: %+v after %d lookups, want its result at height 7", res, lookups)
	}
	indexedAt = 100 // never indexed
	if res := reject(app.ErrBadSequence.Code()); res.Code != app.ErrBadSequence.Code() || res.Height != 0 || lookups != indexedLookups {
		t.Fatalf("a tx refused for a used sequence, never committed: %+v after %d lookups", res, lookups)
	}
	async = true
	if res := reject(app.ErrBadSequence.Code()); res.Code != app.ErrBadSequence.Code() || lookups != 1 {
		t.Fatalf("an async tx refused for a used sequence: %+v after %d lookups, want 1 (a stream is not held up)", res, lookups)
	}
	async, used = false, false
	if res := reject(app.ErrBadSequence.Code()); res.Code != app.ErrBadSequence.Code() || lookups != 1 {
		t.Fatalf("a tx refused for a sequence not used yet: %+v after %d lookups, want 1", res, lookups)
	}
	if res := reject(app.ErrUnauthorized.Code()); res.Code != app.ErrUnauthorized.Code() || lookups != 0 {
		t.Fatalf("another rejection: %+v after %d lookups", res, lookups)
	}
}

// TestCommittedSequenceUsed: a tx's sequence is used when it is below its
// signer's next in the committed state.
func TestCommittedSequenceUsed(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	reg := apptest.Registrar(apptest.HospitalA)
	c.Must(reg, apptest.RegisterMember(apptest.NewActor("seq-doc"), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA))
	msg := apptest.RegisterMember(apptest.NewActor("seq-doc-2"), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalA)
	for _, tc := range []struct {
		name string
		tx   []byte
		want bool
	}{
		{"the sequence committed", reg.Tx(apptest.ChainID, 0, msg), true},
		{"the next sequence", reg.Tx(apptest.ChainID, 1, msg), false},
		{"a later one", reg.Tx(apptest.ChainID, 5, msg), false},
		{"a signer with nothing committed", apptest.NewActor("seq-nobody").Tx(apptest.ChainID, 0, msg), false},
		{"not a tx", []byte("garbage"), false},
	} {
		if got := committedSequenceUsed(app.NewQueryService(c.App), tc.tx); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestGRPCMessageLimitFollowsTheMempool: the gRPC server's message limit,
// fixed at start, is sized for CometBFT's mempool limit, not for the
// params of the moment: params.max_tx_bytes raised by proposal up to the
// mempool's limit then counts without a restart. It is never below gRPC's
// default of 4 MiB.
func TestGRPCMessageLimitFollowsTheMempool(t *testing.T) {
	c := apptest.New(t, apptest.Options{})
	params := c.App.Params().MaxTxBytes // 1 MiB
	for _, tc := range []struct {
		name    string
		mempool int
		want    int
	}{
		{"a mempool limit above the params", 16 << 20, 16<<20 + grpcMsgMargin},
		{"the mempool's limit as the params", int(params), 4 << 20},
		{"no mempool limit: the params", 0, 4 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &txServer{app: c.App, mempoolMaxTxBytes: tc.mempool}
			if got := s.maxMessageBytes(); got != tc.want {
				t.Fatalf("limit %d, want %d (params max_tx_bytes %d)", got, tc.want, params)
			}
			if s.maxTxBytes() > int(app.DefaultParams().MaxTxBytes) {
				t.Fatalf("each transaction is still checked against the params: %d", s.maxTxBytes())
			}
		})
	}
}
