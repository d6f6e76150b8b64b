package sidecar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"
	ctypes "github.com/cometbft/cometbft/rpc/core/types"
	"github.com/cometbft/cometbft/types"
)

// fakeNode answers BlockchainInfo and BlockResults like CometBFT: metas
// highest first, at most 20, starting at its base.
type fakeNode struct {
	NodeClient // other methods: unused
	base       int64
	numTxs     map[int64]int
	results    map[int64][]*abci.ExecTxResult
	resultsErr error
	asked      []int64 // heights BlockResults was called for
	// last is the latest block (0: the highest asked for); its results
	// fail lagging times before they are there.
	last    int64
	lagging int
}

func (n *fakeNode) BlockchainInfo(_ context.Context, lo, hi int64) (*ctypes.ResultBlockchainInfo, error) {
	lo = max(lo, n.base, hi-19)
	res := &ctypes.ResultBlockchainInfo{LastHeight: max(hi, n.last)}
	for h := hi; h >= lo; h-- {
		res.BlockMetas = append(res.BlockMetas, &types.BlockMeta{
			Header: types.Header{Height: h, Time: time.Unix(h, 0).UTC()}, NumTxs: n.numTxs[h]})
	}
	return res, nil
}

func (n *fakeNode) BlockResults(_ context.Context, h *int64) (*ctypes.ResultBlockResults, error) {
	n.asked = append(n.asked, *h)
	if n.resultsErr != nil {
		return nil, n.resultsErr
	}
	if *h == n.last && n.lagging > 0 {
		n.lagging--
		return nil, fmt.Errorf("could not find results for height #%d", *h)
	}
	return &ctypes.ResultBlockResults{Height: *h, TxResults: n.results[*h]}, nil
}

func blobTx(code uint32, evType string, sums ...string) *abci.ExecTxResult {
	ev := abci.Event{Type: evType, Attributes: []abci.EventAttribute{{Key: "action", Value: "AddRecord", Index: true}}}
	for _, s := range sums {
		ev.Attributes = append(ev.Attributes, abci.EventAttribute{Key: appBlobAttribute, Value: s})
	}
	return &abci.ExecTxResult{Code: code, Events: []abci.Event{ev}}
}

// TestNodeBlockBlobs: blocks come oldest first with their times; only
// blocks with transactions are asked for results; only successful
// transactions' emrchain.blob attributes count; a malformed one, a pruned
// block or results the node cannot give are errors.
func TestNodeBlockBlobs(t *testing.T) {
	ctx := context.Background()
	a, b, c := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b")), sha256.Sum256([]byte("c"))
	hx := func(s [32]byte) string { return hex.EncodeToString(s[:]) }
	n := &fakeNode{
		numTxs: map[int64]int{3: 2, 5: 3},
		results: map[int64][]*abci.ExecTxResult{
			3: {blobTx(0, appEventType, hx(a)), blobTx(0, appEventType)},
			5: {blobTx(0, appEventType, hx(b)), blobTx(7, appEventType, hx(c)), blobTx(0, "other", hx(c))},
		},
	}
	got, err := nodeBlockBlobs(ctx, n, 2, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 || got[0].Height != 2 || got[19].Height != 21 || !got[0].Time.Equal(time.Unix(2, 0)) {
		t.Fatalf("blocks %d-%d (%d), want 2-21", got[0].Height, got[len(got)-1].Height, len(got))
	}
	if !slices.Equal(got[1].Sums, [][32]byte{a}) || !slices.Equal(got[3].Sums, [][32]byte{b}) {
		t.Fatalf("sums of block 3: %x, of block 5: %x", got[1].Sums, got[3].Sums)
	}
	for _, blk := range got {
		if blk.Height != 3 && blk.Height != 5 && len(blk.Sums) > 0 {
			t.Fatalf("block %d has sums %x", blk.Height, blk.Sums)
		}
	}
	if !slices.Equal(n.asked, []int64{3, 5}) {
		t.Fatalf("BlockResults asked for %v, want [3 5]", n.asked)
	}

	for name, tc := range map[string]struct {
		mod  func(*fakeNode)
		want string
	}{
		"malformed": {func(n *fakeNode) { n.results[3][0] = blobTx(0, appEventType, "xyz") }, "emrchain.blob"},
		"pruned":    {func(n *fakeNode) { n.base = 4 }, "did not return block 2"},
		"results":   {func(n *fakeNode) { n.resultsErr = errors.New("discarded") }, "block_results 3"},
		"count":     {func(n *fakeNode) { n.numTxs[5] = 4 }, "4 transactions but 3 results"},
	} {
		// Each case spoils a copy of n.
		bad := &fakeNode{base: n.base, numTxs: maps.Clone(n.numTxs), results: map[int64][]*abci.ExecTxResult{3: slices.Clone(n.results[3]), 5: n.results[5]}}
		tc.mod(bad)
		if _, err := nodeBlockBlobs(ctx, bad, 2, 10); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, tc.want)
		}
	}
	// The latest block's results are not stored yet: asked again.
	n.last, n.lagging, n.asked = 5, 2, nil
	if got, err := nodeBlockBlobs(ctx, n, 3, 3); err != nil || len(got) != 3 || !slices.Equal(got[2].Sums, [][32]byte{b}) {
		t.Fatalf("latest block's results lagging: %+v %v", got, err)
	}
	if !slices.Equal(n.asked, []int64{3, 5, 5, 5}) {
		t.Fatalf("BlockResults asked for %v, want [3 5 5 5]", n.asked)
	}
	n.resultsErr = errors.New("discarded")
	if _, err := nodeBlockBlobs(ctx, n, 2, 10); !errors.Is(err, ErrChainUnavailable) {
		t.Fatalf("BlockResults failing: %v, want ErrChainUnavailable", err)
	}
}
