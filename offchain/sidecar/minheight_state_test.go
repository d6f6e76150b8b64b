package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"
	cmtbytes "github.com/cometbft/cometbft/libs/bytes"
	rpcclient "github.com/cometbft/cometbft/rpc/client"
	ctypes "github.com/cometbft/cometbft/rpc/core/types"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestUnauthenticatedHeightWaitIsCharged: the wait for X-Emr-Min-Height
// runs before the signature is checked. A host that cannot authenticate
// at all (a key that is no member's, any signature) would have its
// requests cost the node a Status call every 50 ms for MaxHeightWait each,
// without end, had their 503 been refunded (a reviewer's finding, session
// 37). It is charged as a failed authentication: with FailedAuthPerMinute
// 1, the host's second such request is refused (429), as it is without
// the header.
func TestUnauthenticatedHeightWaitIsCharged(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.MaxHeightWait = 200 * time.Millisecond
		o.FailedAuthPerMinute = 1
	})
	var heads atomic.Int64
	e.chain.mu.Lock()
	e.chain.onHead = func() { heads.Add(1) }
	e.chain.mu.Unlock()
	stranger := newActor("charged-stranger")
	sum := sha256.Sum256([]byte("anything"))
	ref := RecordRef(e.pid, 1)
	statuses := map[int]int{}
	const n = 10
	for range n {
		c := e.client(stranger)
		c.MinHeight = 1 << 40 // far ahead of any node: every request waits the whole MaxHeightWait
		var buf bytes.Buffer
		_, err := c.Get(context.Background(), ref, sum, &buf, nil)
		statuses[statusOf(err)]++
	}
	t.Logf("%d requests by a non-member: statuses %v; %d Status calls to the node", n, statuses, heads.Load())
	if statuses[http.StatusTooManyRequests] == 0 {
		t.Errorf("a host that never authenticated was never limited: %v (%d node Status calls for requests no member signed; with the default 3 s wait, 60 each, 60 at once per host)",
			statuses, heads.Load())
	}
}

// laggingStateNode is a CometBFT node as it is between saving block 11
// and committing it to the app (consensus.finalizeCommit: SaveBlock, the
// WAL's EndHeight fsync, then ApplyVerifiedBlock): /status says
// LatestBlockHeight 11 (BlockStore.Height()), while an ABCI query at the
// latest height reads the app's state 10, which lacks the member
// registered in block 11.
type laggingStateNode struct {
	NodeClient
	now time.Time
}

func (n *laggingStateNode) Status(context.Context) (*ctypes.ResultStatus, error) {
	return &ctypes.ResultStatus{SyncInfo: ctypes.SyncInfo{LatestBlockHeight: 11, LatestBlockTime: n.now}}, nil
}

func (n *laggingStateNode) ABCIInfo(context.Context) (*ctypes.ResultABCIInfo, error) {
	return &ctypes.ResultABCIInfo{Response: abci.InfoResponse{LastBlockHeight: 10}}, nil
}

func (n *laggingStateNode) ABCIQueryWithOptions(_ context.Context, path string, _ cmtbytes.HexBytes, _ rpcclient.ABCIQueryOptions) (*ctypes.ResultABCIQuery, error) {
	if path == QueryPathPrefix+"Params" {
		raw, _ := proto.Marshal(&emrv1.QueryParamsResponse{Params: &emrv1.Params{MaxBlobBytes: 1 << 20}})
		return &ctypes.ResultABCIQuery{Response: abci.QueryResponse{Value: raw, Height: 10}}, nil
	}
	// State 10: the member of block 11 is not there yet.
	return &ctypes.ResultABCIQuery{Response: abci.QueryResponse{
		Code: app.ErrNotFound.Code(), Codespace: app.Codespace, Log: "member not found", Height: 10}}, nil
}

// TestBlockStoreHeightIsNotState: CometBFT raises the node's
// LatestBlockHeight when it saves a block, before the app executes and
// commits it, so reachHeight must compare the client's MinHeight with the
// app's committed height (ABCI Info), not with that (a reviewer's
// finding, session 37).
// A clinician registered in block 11 (its client's MinHeight 11) asks a
// sidecar whose node has saved block 11 and is still applying it: the
// node's state is 10. The answer must be "not yet" (503), not 401 "not a
// member" (charged to the host), which is what the header was meant to
// end. A node that lags a block is the case the header is for, and its
// 50 ms poll lets the request through at the first poll after the save,
// that is, most likely inside this window.
func TestBlockStoreHeightIsNotState(t *testing.T) {
	store, err := blobstore.OpenFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Store: store, Chain: NewNodeChainView(&laggingStateNode{now: time.Now()}),
		SweepInterval: -1, MaxHeightWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, srv: srv}
	e.ts = newTestServer(t, srv)
	late := newActor("late-in-block")
	c := NewClient(e.ts.URL, late, nil)
	c.MinHeight = 11
	sum := sha256.Sum256([]byte("x"))
	var buf bytes.Buffer
	_, err = c.Get(context.Background(), RecordRef(bytes.Repeat([]byte{0xaa}, 32), 1), sum, &buf, nil)
	if statusOf(err) != http.StatusServiceUnavailable {
		t.Fatalf("a member of block 11, at a node whose block store has 11 and whose state is 10: %v; want 503 (not yet), since the client saw block 11 committed", err)
	}
}

func newTestServer(t *testing.T, srv *Server) *httptest.Server {
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts
}
