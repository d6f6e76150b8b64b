package abci_test

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cometbft/cometbft/abci/types"
	"github.com/cometbft/cometbft/libs/log"

	"github.com/emrchain/emrchain/abci"
	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/store"
)

// stallLogger holds up the adapter at the Debug line FinalizeBlock logs
// while it holds the adapter's lock: entered is closed when a
// FinalizeBlock gets there, and it goes on once release is closed.
type stallLogger struct {
	log.Logger
	armed            atomic.Bool
	once             sync.Once
	entered, release chan struct{}
}

func (l *stallLogger) Debug(msg string, keyvals ...any) {
	if msg == "ABCI FinalizeBlock" && l.armed.Load() {
		l.once.Do(func() { close(l.entered) })
		<-l.release
	}
}

func (l *stallLogger) With(...any) log.Logger { return l }

// TestReadsDoNotWaitForBlocks: while a block is being finalized (the
// adapter's lock held), Query and Info are answered from the last
// committed version: a proven read does not wait for a block, and reads
// cannot hold one up.
func TestReadsDoNotWaitForBlocks(t *testing.T) {
	opts := store.DefaultOptions()
	opts.Backend = store.BackendGoLevelDB
	st, err := store.Open(filepath.Join(t.TempDir(), "app.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := app.New(st, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logger := &stallLogger{Logger: log.NewNopLogger(), entered: make(chan struct{}), release: make(chan struct{})}
	conn := abci.New(a, abci.Options{Version: "test", Logger: logger})
	defer conn.Close()
	ctx := context.Background()
	initChain(t, conn)
	block(t, conn, 1)

	logger.armed.Store(true)
	finalized := make(chan error, 1)
	go func() {
		_, err := conn.FinalizeBlock(ctx, &types.FinalizeBlockRequest{Height: 2, Time: genesisTime.Add(2 * time.Second)})
		finalized <- err
	}()
	<-logger.entered // FinalizeBlock holds the adapter's lock now

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
		close(logger.release)
		t.Fatal("Info and Query waited for the block being finalized")
	}
	close(logger.release)
	if err := <-finalized; err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Commit(ctx, &types.CommitRequest{}); err != nil {
		t.Fatal(err)
	}
}
