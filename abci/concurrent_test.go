package abci_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cometbft/cometbft/abci/types"
	"github.com/cometbft/cometbft/libs/log"

	"github.com/emrchain/emrchain/abci"
	"github.com/emrchain/emrchain/app/apptest"
)

// TestReadsDoNotWaitForBlocks: while a block is being finalized (the
// adapter's lock held), Query and Info are answered from the last
// committed version: a proven read does not wait for a block, and reads
// cannot hold one up.
func TestReadsDoNotWaitForBlocks(t *testing.T) {
	conn, logger, finalized := blockHeldUp(t)
	defer conn.Close()
	ctx := context.Background()

	type reads struct {
		query *types.QueryResponse
		info  *types.InfoResponse
		err   error
	}
	answered := make(chan reads, 1)
	go func() {
		var r reads
		if r.info, r.err = conn.Info(ctx, &types.InfoRequest{}); r.err == nil {
			r.query, r.err = conn.Query(ctx, &types.QueryRequest{Path: abci.QueryServicePrefix + "Params", Height: 0})
		}
		answered <- r
	}()
	select {
	case r := <-answered:
		if r.err != nil || r.info.LastBlockHeight != 1 || r.query.Code != 0 || r.query.Height != 1 || len(r.query.Value) == 0 {
			t.Fatalf("reads during block 2: %+v", r)
		}
	case <-time.After(20 * time.Second): // a bound on a hang, not a measurement
		close(logger.release[blockMsg])
		t.Fatal("Info and Query waited for the block being finalized")
	}
	close(logger.release[blockMsg])
	if err := <-finalized; err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Commit(ctx, &types.CommitRequest{}); err != nil {
		t.Fatal(err)
	}
}

// blockMsg is the Debug line FinalizeBlock logs while it holds the
// adapter's lock.
const blockMsg = "ABCI FinalizeBlock"

// blockHeldUp is an adapter at height 1 whose FinalizeBlock of height 2 is
// held up at blockMsg (with the adapter's lock) until the test closes
// logger.release[blockMsg]; finalized then gets its error. The logger also
// holds up the first call that logs any of msgs, once armed (it is).
func blockHeldUp(t *testing.T, msgs ...string) (*abci.Application, *gateLogger, <-chan error) {
	t.Helper()
	logger := newGateLogger(append(msgs, blockMsg)...)
	conn := abci.New(apptest.MemApp(t), abci.Options{Version: "test", Logger: logger})
	initChain(t, conn)
	block(t, conn, 1)
	logger.armed.Store(true)
	finalized := make(chan error, 1)
	go func() {
		_, err := conn.FinalizeBlock(context.Background(), &types.FinalizeBlockRequest{Height: 2, Time: genesisTime.Add(2 * time.Second)})
		finalized <- err
	}()
	<-logger.entered[blockMsg]
	return conn, logger, finalized
}

// gateLogger holds up the adapter at chosen log lines once armed: the first
// call that logs msg closes entered[msg] and waits for release[msg] to be
// closed.
type gateLogger struct {
	log.Logger
	armed            atomic.Bool
	entered, release map[string]chan struct{}
	once             map[string]*sync.Once
}

func newGateLogger(msgs ...string) *gateLogger {
	l := &gateLogger{Logger: log.NewNopLogger(), entered: map[string]chan struct{}{}, release: map[string]chan struct{}{}, once: map[string]*sync.Once{}}
	for _, m := range msgs {
		l.entered[m], l.release[m], l.once[m] = make(chan struct{}), make(chan struct{}), new(sync.Once)
	}
	return l
}

func (l *gateLogger) gate(msg string) {
	if once := l.once[msg]; once != nil && l.armed.Load() {
		once.Do(func() { close(l.entered[msg]); <-l.release[msg] })
	}
}

func (l *gateLogger) Debug(msg string, _ ...any) { l.gate(msg) }
func (l *gateLogger) Info(msg string, _ ...any)  { l.gate(msg) }
func (l *gateLogger) With(...any) log.Logger     { return l }

// TestCloseWithCallsInFlight: Close, called while a FinalizeBlock holds the
// adapter's lock and a Query holds the read lock, waits for both without
// deadlocking; reads go on being answered while Close waits for the block,
// and every call after Close is refused.
func TestCloseWithCallsInFlight(t *testing.T) {
	const queryMsg = "refused a peer that is not one of the consortium's nodes"
	// A FinalizeBlock holding mu, and a Query (a peer refused) holding
	// readMu for reading.
	conn, logger, finalized := blockHeldUp(t, queryMsg)
	ctx := context.Background()
	refused := make(chan *types.QueryResponse, 1)
	go func() {
		res, _ := conn.Query(ctx, &types.QueryRequest{Path: abci.PeerFilterIDPath + "0000000000000000000000000000000000000001"})
		refused <- res
	}()
	<-logger.entered[queryMsg]

	closed := make(chan struct{})
	go func() { conn.Close(); close(closed) }()

	// Close waits for the block (mu) before it asks for readMu: reads are
	// still answered meanwhile.
	if res, err := conn.Query(ctx, &types.QueryRequest{Path: abci.QueryServicePrefix + "Params"}); err != nil || res.Code != 0 || res.Height != 1 {
		t.Fatalf("Query while Close waits for a block = %v, %v", res, err)
	}
	close(logger.release[blockMsg])
	if err := <-finalized; err != nil {
		t.Fatalf("FinalizeBlock in flight at Close: %v", err)
	}
	select {
	case <-closed:
		t.Fatal("Close returned while a Query was in flight")
	default:
	}
	close(logger.release[queryMsg])
	if res := <-refused; res == nil || res.Code != abci.CodePeerRefused {
		t.Fatalf("Query in flight at Close = %v, want the peer refused", res)
	}
	<-closed // a deadlock hangs here (go test -timeout bounds it)

	if _, err := conn.Commit(ctx, &types.CommitRequest{}); !errors.Is(err, abci.ErrClosed) {
		t.Fatalf("Commit after Close: %v, want ErrClosed", err)
	}
	if _, err := conn.Info(ctx, &types.InfoRequest{}); !errors.Is(err, abci.ErrClosed) {
		t.Fatalf("Info after Close: %v, want ErrClosed", err)
	}
	if res, err := conn.Query(ctx, &types.QueryRequest{Path: abci.QueryServicePrefix + "Params"}); err != nil || res.Code != abci.CodeClosed {
		t.Fatalf("Query after Close = %v, %v; want CodeClosed", res, err)
	}
}
