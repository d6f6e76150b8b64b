package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"
	cmtbytes "github.com/cometbft/cometbft/libs/bytes"
	rpcclient "github.com/cometbft/cometbft/rpc/client"
	ctypes "github.com/cometbft/cometbft/rpc/core/types"
	"github.com/cometbft/cometbft/types"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
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
	// status is what Status answers.
	status ctypes.SyncInfo
}

func (n *fakeNode) Status(context.Context) (*ctypes.ResultStatus, error) {
	return &ctypes.ResultStatus{SyncInfo: n.status}, nil
}

// TestNodeHead: the head is the node's latest block, unless the node has
// none yet or is catching up, whose state lags the chain's (a revocation
// it has not reached would not count): then the chain is unavailable and
// the sidecar serves nothing.
func TestNodeHead(t *testing.T) {
	ctx := context.Background()
	at := time.Unix(1_700_000_000, 0).UTC()
	n := &fakeNode{status: ctypes.SyncInfo{LatestBlockHeight: 12, LatestBlockTime: at}}
	view := NewNodeChainView(n)
	if h, err := view.Head(ctx); err != nil || h.Height != 12 || !h.Time.Equal(at) {
		t.Fatalf("head = %+v, %v", h, err)
	}
	n.status.CatchingUp = true
	if _, err := view.Head(ctx); !errors.Is(err, ErrChainUnavailable) || !strings.Contains(err.Error(), "catching up") {
		t.Fatalf("head of a node catching up: %v, want ErrChainUnavailable", err)
	}
	n.status = ctypes.SyncInfo{}
	if _, err := view.Head(ctx); !errors.Is(err, ErrChainUnavailable) {
		t.Fatalf("head of a node without blocks: %v, want ErrChainUnavailable", err)
	}
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

// blobTxSize is the size blobTx gives every blob.
const blobTxSize = 4096

// blobTx is the result of a transaction whose event names patient,
// category (each left out when empty) and the blobs sums, each of
// blobTxSize bytes.
func blobTx(code uint32, evType string, patient []byte, category string, sums ...string) *abci.ExecTxResult {
	ev := abci.Event{Type: evType, Attributes: []abci.EventAttribute{{Key: "action", Value: "AddRecord", Index: true}}}
	if patient != nil {
		ev.Attributes = append(ev.Attributes, abci.EventAttribute{Key: app.PatientAttribute, Value: hex.EncodeToString(patient), Index: true})
	}
	if category != "" {
		ev.Attributes = append(ev.Attributes, abci.EventAttribute{Key: app.CategoryAttribute, Value: category})
	}
	for _, s := range sums {
		ev.Attributes = append(ev.Attributes, abci.EventAttribute{Key: app.BlobAttribute, Value: s},
			abci.EventAttribute{Key: app.BlobSizeAttribute, Value: strconv.Itoa(blobTxSize)})
	}
	return &abci.ExecTxResult{Code: code, Events: []abci.Event{ev}}
}

// TestNodeBlockBlobs: blocks come oldest first with their times; only
// blocks with transactions are asked for results; only successful
// transactions' emrchain.blob attributes count, each under the patient and
// category its event names; a malformed blob, a blob without exactly one
// patient and one category, a pruned block or results the node cannot give
// are errors.
func TestNodeBlockBlobs(t *testing.T) {
	ctx := context.Background()
	a, b, c := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b")), sha256.Sum256([]byte("c"))
	pa, pb := bytes.Repeat([]byte{0xa}, patientIDSize), bytes.Repeat([]byte{0xb}, patientIDSize)
	hx := func(s [32]byte) string { return hex.EncodeToString(s[:]) }
	n := &fakeNode{
		numTxs: map[int64]int{3: 2, 5: 3},
		results: map[int64][]*abci.ExecTxResult{
			3: {blobTx(0, app.EventType, pa, "lab", hx(a)), blobTx(0, app.EventType, pa, "")},
			5: {blobTx(0, app.EventType, pb, "imaging", hx(b)), blobTx(7, app.EventType, pb, "lab", hx(c)), blobTx(0, "other", pb, "lab", hx(c))},
		},
	}
	ka, kb := CommittedBlob{BlobKey(pa, "lab", a), blobTxSize}, CommittedBlob{BlobKey(pb, "imaging", b), blobTxSize}
	got, err := nodeBlockBlobs(ctx, n, 2, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 || got[0].Height != 2 || got[19].Height != 21 || !got[0].Time.Equal(time.Unix(2, 0)) {
		t.Fatalf("blocks %d-%d (%d), want 2-21", got[0].Height, got[len(got)-1].Height, len(got))
	}
	if !slices.Equal(got[1].Blobs, []CommittedBlob{ka}) || !slices.Equal(got[3].Blobs, []CommittedBlob{kb}) {
		t.Fatalf("blobs of block 3: %v, of block 5: %v", got[1].Blobs, got[3].Blobs)
	}
	for _, blk := range got {
		if blk.Height != 3 && blk.Height != 5 && len(blk.Blobs) > 0 {
			t.Fatalf("block %d has blobs %v", blk.Height, blk.Blobs)
		}
	}
	if !slices.Equal(n.asked, []int64{3, 5}) {
		t.Fatalf("BlockResults asked for %v, want [3 5]", n.asked)
	}

	for name, tc := range map[string]struct {
		mod  func(*fakeNode)
		want string
	}{
		"malformed":   {func(n *fakeNode) { n.results[3][0] = blobTx(0, app.EventType, pa, "lab", "xyz") }, "emrchain.blob"},
		"no patient":  {func(n *fakeNode) { n.results[3][0] = blobTx(0, app.EventType, nil, "lab", hx(a)) }, "want one of each"},
		"no category": {func(n *fakeNode) { n.results[3][0] = blobTx(0, app.EventType, pa, "", hx(a)) }, "want one of each"},
		"bad patient": {func(n *fakeNode) { n.results[3][0] = blobTx(0, app.EventType, []byte{1}, "lab", hx(a)) }, "not a patient id"},
		"two patients": {func(n *fakeNode) {
			n.results[3][0] = twoOf(blobTx(0, app.EventType, pa, "lab", hx(a)), app.PatientAttribute, hex.EncodeToString(pb))
		}, "want one of each"},
		"two categories": {func(n *fakeNode) {
			n.results[3][0] = twoOf(blobTx(0, app.EventType, pa, "lab", hx(a)), app.CategoryAttribute, "imaging")
		}, "want one of each"},
		"no size":   {func(n *fakeNode) { n.results[3][0] = sizedBlobTx(pa, hx(a)) }, "want one size per blob"},
		"two sizes": {func(n *fakeNode) { n.results[3][0] = sizedBlobTx(pa, hx(a), "7", "7") }, "want one size per blob"},
		"bad size":  {func(n *fakeNode) { n.results[3][0] = sizedBlobTx(pa, hx(a), "-1") }, "is not a size in bytes"},
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
	if got, err := nodeBlockBlobs(ctx, n, 3, 3); err != nil || len(got) != 3 || !slices.Equal(got[2].Blobs, []CommittedBlob{kb}) {
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

// TestBlobKeysOfShares: the blob a ShareRecord names is filed with the
// shared ciphertext (SharedBlobKey), apart from records' blobs, in blocks
// and in the state's BlobRefs alike.
func TestBlobKeysOfShares(t *testing.T) {
	pid, sum := bytes.Repeat([]byte{7}, patientIDSize), sha256.Sum256([]byte("shared"))
	share := blobTx(0, app.EventType, pid, "lab", hex.EncodeToString(sum[:]))
	share.Events[0].Attributes[0].Value = shareAction
	record := blobTx(0, app.EventType, pid, "lab", hex.EncodeToString(sum[:]))
	keys, err := ResultBlobs([]*abci.ExecTxResult{share, record})
	if err != nil || !slices.Equal(keys, []CommittedBlob{{SharedBlobKey(pid, "lab", sum), blobTxSize}, {BlobKey(pid, "lab", sum), blobTxSize}}) {
		t.Fatalf("keys of a share and a record of the same bytes: %v, %v", keys, err)
	}
	if SharedBlobKey(pid, "lab", sum) == BlobKey(pid, "lab", sum) {
		t.Fatal("a share's blob and a record's are filed alike")
	}
	refs := &emrv1.QueryBlobRefsResponse{Height: 9, Refs: []*emrv1.BlobRef{
		{Ref: "share/x/1", PatientId: pid, Category: "lab", Sha256: sum[:], Size: blobTxSize},
		{Ref: "record/x/1", PatientId: pid, Category: "lab", Sha256: sum[:], Size: blobTxSize},
	}}
	page, err := NewQueryChainView(func(_ context.Context, _ string, _, out proto.Message) error {
		proto.Merge(out, refs)
		return nil
	}, nil, nil).StateBlobs(context.Background(), "")
	if err != nil || !slices.Equal(page.Blobs, keys) {
		t.Fatalf("BlobRefs of a share and a record: %v, %v; want %v", page.Blobs, err, keys)
	}
}

// sizedBlobTx is blobTx's AddRecord of one blob, sum, of category "lab"
// for patient, whose event gives the blob the sizes (none, or several)
// instead of one.
func sizedBlobTx(patient []byte, sum string, sizes ...string) *abci.ExecTxResult {
	r := blobTx(0, app.EventType, patient, "lab", sum)
	ev := &r.Events[0]
	ev.Attributes = slices.DeleteFunc(ev.Attributes, func(a abci.EventAttribute) bool { return a.Key == app.BlobSizeAttribute })
	for _, size := range sizes {
		ev.Attributes = append(ev.Attributes, abci.EventAttribute{Key: app.BlobSizeAttribute, Value: size})
	}
	return r
}

// twoOf adds a second attribute key = value to the event of r.
func twoOf(r *abci.ExecTxResult, key, value string) *abci.ExecTxResult {
	r.Events[0].Attributes = append(r.Events[0].Attributes, abci.EventAttribute{Key: key, Value: value})
	return r
}

// TestQueryViewStateBlobs: a BlobRefs answer becomes store keys under each
// ref's patient and category, and an answer the seed cannot trust is
// refused: no height, an empty page that says more come, a ref without a
// 32-byte patient id, a 32-byte SHA-256 or a category.
func TestQueryViewStateBlobs(t *testing.T) {
	pid, sum := bytes.Repeat([]byte{7}, patientIDSize), sha256.Sum256([]byte("c"))
	good := &emrv1.BlobRef{Ref: "record/x/1", PatientId: pid, Category: "imaging", Sha256: sum[:], Size: 77}
	view := func(resp *emrv1.QueryBlobRefsResponse) ChainView {
		return NewQueryChainView(func(_ context.Context, method string, _, out proto.Message) error {
			if method != "BlobRefs" {
				return fmt.Errorf("asked %s", method)
			}
			proto.Merge(out, resp)
			return nil
		}, nil, nil)
	}
	page, err := view(&emrv1.QueryBlobRefsResponse{Height: 9, Next: "record/x/1", Refs: []*emrv1.BlobRef{good}}).StateBlobs(context.Background(), "")
	if err != nil || page.Height != 9 || page.Next != "record/x/1" || !slices.Equal(page.Blobs, []CommittedBlob{{BlobKey(pid, "imaging", sum), 77}}) {
		t.Fatalf("page %+v, %v", page, err)
	}
	with := func(f func(*emrv1.BlobRef)) *emrv1.BlobRef {
		r := proto.Clone(good).(*emrv1.BlobRef)
		f(r)
		return r
	}
	for name, resp := range map[string]*emrv1.QueryBlobRefsResponse{
		"no height":          {Refs: []*emrv1.BlobRef{good}},
		"empty, more come":   {Height: 9, Next: "record/x/2"},
		"short patient id":   {Height: 9, Refs: []*emrv1.BlobRef{with(func(r *emrv1.BlobRef) { r.PatientId = pid[:31] })}},
		"short sha256":       {Height: 9, Refs: []*emrv1.BlobRef{with(func(r *emrv1.BlobRef) { r.Sha256 = sum[:31] })}},
		"no category":        {Height: 9, Refs: []*emrv1.BlobRef{with(func(r *emrv1.BlobRef) { r.Category = "" })}},
		"a path as category": {Height: 9, Refs: []*emrv1.BlobRef{with(func(r *emrv1.BlobRef) { r.Category = "../lab" })}},
	} {
		if page, err := view(resp).StateBlobs(context.Background(), ""); err == nil {
			t.Errorf("%s: accepted as %+v", name, page)
		}
	}
}

// codeNode answers every ABCI query with one result code.
type codeNode struct {
	rpcclient.ABCIClient // other methods: unused
	codespace            string
	code                 uint32
}

func (n codeNode) ABCIQueryWithOptions(context.Context, string, cmtbytes.HexBytes, rpcclient.ABCIQueryOptions) (*ctypes.ResultABCIQuery, error) {
	return &ctypes.ResultABCIQuery{Response: abci.QueryResponse{Code: n.code, Codespace: n.codespace, Log: "the node says no"}}, nil
}

// TestABCIQueryCodes: the chain view tells "not found" from "the node
// cannot answer now" (a height it has not committed, or no longer keeps:
// a node starting or restoring a snapshot), which the sidecar answers with
// 503 so that clients retry, from any other refusal.
func TestABCIQueryCodes(t *testing.T) {
	for _, c := range []struct {
		codespace string
		code      uint32
		want      error
	}{
		{app.Codespace, app.ErrNotFound.Code(), ErrNotFound},
		{app.Codespace, app.ErrHeightNotCommitted.Code(), ErrChainUnavailable},
		{app.Codespace, app.ErrHeightNotKept.Code(), ErrChainUnavailable},
		{app.Codespace, app.ErrInvalidQuery.Code(), nil},
		{"other", app.ErrHeightNotCommitted.Code(), nil},
	} {
		err := abciQuery(context.Background(), codeNode{codespace: c.codespace, code: c.code}, "Params", &emrv1.QueryParamsRequest{}, &emrv1.QueryParamsResponse{})
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) ||
			(c.want == nil && (errors.Is(err, ErrNotFound) || errors.Is(err, ErrChainUnavailable))) {
			t.Errorf("code %d in %q: %v, want %v", c.code, c.codespace, err, c.want)
		}
	}
}
