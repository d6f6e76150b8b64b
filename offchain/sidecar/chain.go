package sidecar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	abci "github.com/cometbft/cometbft/abci/types"
	rpcclient "github.com/cometbft/cometbft/rpc/client"
	ctypes "github.com/cometbft/cometbft/rpc/core/types"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/blobstore"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Errors of a ChainView.
var (
	// ErrNotFound: the chain has no such object (ABCI code 11 in codespace
	// "emrchain", app.ErrNotFound).
	ErrNotFound = errors.New("not found on chain")
	// ErrChainUnavailable: the chain could not be asked (node down, RPC
	// error); the sidecar answers 503 and never guesses.
	ErrChainUnavailable = errors.New("chain unavailable")
)

// shareAction is the action attribute (app.ActionAttribute) of a
// ShareRecord's event, which tells its shared blob from a record's.
var shareAction = app.MsgName(&emrv1.Msg{Sum: &emrv1.Msg_ShareRecord{}})

// QueryPathPrefix is the ABCI query path prefix of the Query service.
const QueryPathPrefix = app.QueryPathPrefix

// Head is the chain's latest block as the sidecar sees it.
type Head struct {
	Height int64
	// Time is the block time: the clock every permission window and access
	// window is measured by.
	Time time.Time
	// Earliest is the lowest height whose block the node holds; 0 when not
	// known. Above 1 on a node restored from a state-sync snapshot: the
	// sweep's reference index then starts from the state (StateBlobs), not
	// from block 1.
	Earliest int64
}

// BlockBlobs is one committed block as the sweep's reference index sees it.
type BlockBlobs struct {
	Height int64
	Time   time.Time
	// Blobs are the blobs the block's successful transactions reference:
	// each blob's SHA-256 under the patient and category of its record
	// (ResultBlobs).
	Blobs []CommittedBlob
}

// CommittedBlob is a blob a committed record or share references: its
// store key, and its size in bytes as the record or share gives it, which
// the chain held to params.max_blob_bytes when it committed (0: not
// known, an index entry written before sizes were kept).
type CommittedBlob struct {
	Key  blobstore.Key
	Size uint64
}

// blobKeys are the store keys of blobs.
func blobKeys(blobs []CommittedBlob) []blobstore.Key {
	keys := make([]blobstore.Key, len(blobs))
	for i, b := range blobs {
		keys[i] = b.Key
	}
	return keys
}

// StateBlobs is one page of the blobs that the records and shares in the
// chain's state reference (ChainView.StateBlobs).
type StateBlobs struct {
	// Height is the height of the state the page was read from.
	Height int64
	// Blobs are each blob's SHA-256 under the patient and category it is
	// filed under, and its size.
	Blobs []CommittedBlob
	// Next is where the next page starts; empty after the last page.
	Next string
}

// ChainView is everything the sidecar asks the chain. Every call reads the
// latest committed state; the sidecar caches none of it, so a revoked grant
// or a suspended member takes effect with the next committed block.
type ChainView interface {
	Head(ctx context.Context) (Head, error)
	Params(ctx context.Context) (*emrv1.Params, error)
	Member(ctx context.Context, address []byte) (*emrv1.Member, error)
	Patient(ctx context.Context, patientID []byte) (*emrv1.Patient, error)
	// Permission is the consent patientID has given grantee, active or
	// revoked; an error wrapping ErrNotFound when there is none (or no
	// such patient).
	Permission(ctx context.Context, patientID, grantee []byte) (*emrv1.Permission, error)
	Record(ctx context.Context, patientID []byte, sequence uint64) (*emrv1.Record, error)
	Share(ctx context.Context, patientID []byte, sequence uint64) (*emrv1.Share, error)
	// BlockBlobs lists committed blocks from height from on, oldest first
	// and at most max of them (fewer when the chain is shorter): each
	// block's time and the key and size of every blob its successful
	// transactions reference (AddRecord, ShareRecord; ResultBlobs reads
	// them from the transactions' results). The sweep builds its reference
	// index from it.
	BlockBlobs(ctx context.Context, from int64, max int) ([]BlockBlobs, error)
	// StateBlobs lists one page of the blobs that the records and shares in
	// the latest committed state reference (the Query service's BlobRefs),
	// starting after after: "" for the first page, then the previous page's
	// Next. The sweep fills its reference index with it on a node that
	// holds no blocks from height 1.
	StateBlobs(ctx context.Context, after string) (StateBlobs, error)
	// LastAccess is accessor's latest committed read of a record,
	// LastShareRead of a share.
	LastAccess(ctx context.Context, patientID []byte, sequence uint64, accessor []byte) (*emrv1.AccessEvent, error)
	LastShareRead(ctx context.Context, patientID []byte, share uint64, accessor []byte) (*emrv1.AccessEvent, error)
	Study(ctx context.Context, id string) (*emrv1.Study, error)
	// Organization is organization id (retired_height set once it has left
	// the consortium, which closes its studies).
	Organization(ctx context.Context, id string) (*emrv1.Organization, error)
}

// QueryFunc answers one Query service method: method is the bare name
// ("Member"), req and resp the protobuf messages. It has the shape of the
// client library's Client.Query, so a light-client-verified client can
// back the sidecar by passing its Query here (see NewQueryChainView).
// It must return an error wrapping ErrNotFound for a missing object.
type QueryFunc func(ctx context.Context, method string, req, resp proto.Message) error

// StateHeighter is a ChainView that can say the height of the state its
// lookups read: the block its node's app last committed, which may be a
// block below Head for a moment (a node stores a block before its app
// executes it). A view that is not one reads the state of its Head.
type StateHeighter interface {
	StateHeight(ctx context.Context) (int64, error)
}

// stateHeight is the height of the state chain's lookups read, its head
// being head.
func stateHeight(ctx context.Context, chain ChainView, head Head) (int64, error) {
	if sh, ok := chain.(StateHeighter); ok {
		return sh.StateHeight(ctx)
	}
	return head.Height, nil
}

// HeadFunc returns the latest block.
type HeadFunc func(ctx context.Context) (Head, error)

// BlocksFunc lists committed blocks and the blobs they reference, as
// ChainView.BlockBlobs.
type BlocksFunc func(ctx context.Context, from int64, max int) ([]BlockBlobs, error)

// NewQueryChainView builds a ChainView from a query function, a head
// function and a block function. This is the switch between trusting the
// co-located node (NewNodeChainView) and verifying every answer with the
// light client. blocks may be nil: then BlockBlobs fails and the sweep
// never deletes anything.
func NewQueryChainView(query QueryFunc, head HeadFunc, blocks BlocksFunc) ChainView {
	return &queryView{query: query, head: head, blocks: blocks}
}

// NodeClient is the part of a CometBFT RPC client the sidecar uses. Both
// rpc/client/http (a remote node) and rpc/client/local (the node in the
// same process) implement it.
type NodeClient interface {
	rpcclient.ABCIClient
	rpcclient.StatusClient
	// HistoryClient's BlockchainInfo and SignClient's BlockResults feed
	// BlockBlobs.
	rpcclient.HistoryClient
	rpcclient.SignClient
}

// NewNodeChainView asks the node behind c, without verifying its answers.
//
// Why trusting the node is acceptable here: a sidecar runs beside its own
// node, operated by the same hospital, in the same trust domain — the node
// already decides what that hospital's validator signs, and the sidecar
// holds only ciphertext. What it could get wrong by believing a lying node
// is whom it hands ciphertext to; it can never hand out plaintext or keys
// (it has neither), and clients do not trust the sidecar either: they check
// the SHA-256 of what they download against a record they verified with the
// light client. Where the sidecar and the node run in different trust
// domains, back the sidecar with NewQueryChainView over a verifying client.
func NewNodeChainView(c NodeClient) ChainView {
	return &nodeView{c: c, queryView: NewQueryChainView(
		func(ctx context.Context, method string, req, resp proto.Message) error {
			return abciQuery(ctx, c, method, req, resp)
		},
		func(ctx context.Context) (Head, error) {
			st, err := c.Status(ctx)
			if err != nil {
				return Head{}, fmt.Errorf("%w: status: %v", ErrChainUnavailable, err)
			}
			if st.SyncInfo.LatestBlockHeight == 0 {
				return Head{}, fmt.Errorf("%w: no block yet", ErrChainUnavailable)
			}
			if st.SyncInfo.CatchingUp {
				// Its state and block time lag the chain's: a revocation or
				// an expiry it has not reached yet would not count.
				return Head{}, fmt.Errorf("%w: the node is catching up (at height %d, %s): it may not have seen the latest grants and revocations",
					ErrChainUnavailable, st.SyncInfo.LatestBlockHeight, st.SyncInfo.LatestBlockTime.UTC().Format(time.RFC3339))
			}
			return Head{Height: st.SyncInfo.LatestBlockHeight, Time: st.SyncInfo.LatestBlockTime, Earliest: st.SyncInfo.EarliestBlockHeight}, nil
		},
		func(ctx context.Context, from int64, max int) ([]BlockBlobs, error) {
			return nodeBlockBlobs(ctx, c, from, max)
		},
	).(*queryView)}
}

// nodeView is the ChainView of NewNodeChainView: a queryView over the
// node, which also says the height of its app's state (StateHeighter).
type nodeView struct {
	*queryView
	c NodeClient
}

// StateHeight is the block the node's app last committed (ABCI Info),
// the state its queries at the latest height read.
func (v *nodeView) StateHeight(ctx context.Context) (int64, error) {
	info, err := v.c.ABCIInfo(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: abci_info: %v", ErrChainUnavailable, err)
	}
	return info.Response.LastBlockHeight, nil
}

// nodeBlocksPerCall is the most block metas CometBFT's BlockchainInfo
// returns at once.
const nodeBlocksPerCall = 20

// A node stores a block before it executes it, so the results of its latest
// block can lag for a moment: those are asked again every nodeResultsPoll
// for up to nodeResultsWait.
const (
	nodeResultsWait = 5 * time.Second
	nodeResultsPoll = 100 * time.Millisecond
)

// nodeBlockBlobs reads blocks from..from+max-1 (at most nodeBlocksPerCall)
// from the node: their metas with BlockchainInfo, and with BlockResults the
// results of those that hold transactions. A block the node no longer has
// (pruned blocks, discarded ABCI responses) is an error, never a gap.
func nodeBlockBlobs(ctx context.Context, c NodeClient, from int64, max int) ([]BlockBlobs, error) {
	if from < 1 || max < 1 {
		return nil, fmt.Errorf("block blobs: bad range: from %d, max %d", from, max)
	}
	to := from + int64(min(max, nodeBlocksPerCall)) - 1
	info, err := c.BlockchainInfo(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("%w: blockchain %d-%d: %v", ErrChainUnavailable, from, to, err)
	}
	// Highest first. A node that pruned the lower blocks silently starts at
	// its base, so every height is checked.
	metas := info.BlockMetas
	out := make([]BlockBlobs, 0, len(metas))
	for i := len(metas) - 1; i >= 0; i-- {
		m, want := metas[i], from+int64(len(out))
		if m == nil || m.Header.Height != want {
			return nil, fmt.Errorf("block blobs: the node did not return block %d (pruned below the earliest height it reports? the sweep needs every block after its reference index's cursor)", want)
		}
		b := BlockBlobs{Height: want, Time: m.Header.Time}
		if m.NumTxs > 0 {
			res, err := blockResults(ctx, c, want, info.LastHeight)
			if err != nil {
				return nil, fmt.Errorf("%w: block_results %d (a node that discards ABCI responses cannot serve the sweep): %v", ErrChainUnavailable, want, err)
			}
			if len(res.TxResults) != m.NumTxs {
				return nil, fmt.Errorf("block blobs: block %d has %d transactions but %d results", want, m.NumTxs, len(res.TxResults))
			}
			if b.Blobs, err = ResultBlobs(res.TxResults); err != nil {
				return nil, fmt.Errorf("block blobs: block %d: %w", want, err)
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// blockResults asks for the results of block h; last is the node's latest
// block, whose results may not be stored yet.
func blockResults(ctx context.Context, c rpcclient.SignClient, h, last int64) (*ctypes.ResultBlockResults, error) {
	deadline := time.Now().Add(nodeResultsWait)
	for {
		res, err := c.BlockResults(ctx, &h)
		if err == nil || h < last || time.Now().After(deadline) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(nodeResultsPoll):
		}
	}
}

// ResultBlobs are the blobs named by the successful transactions of a
// block's results: each event of type app.EventType that names a blob
// (app.BlobAttribute) also names the patient (app.PatientAttribute) and the
// data category (app.CategoryAttribute) the blob is filed under, and its
// size (app.BlobSizeAttribute, one per blob). An event that names a blob
// without exactly one patient and one category, or with sizes that are
// not one decimal number per blob, is an error: the index must not guess.
func ResultBlobs(results []*abci.ExecTxResult) ([]CommittedBlob, error) {
	var blobs []CommittedBlob
	for i, r := range results {
		if r == nil || r.Code != 0 {
			continue
		}
		for _, ev := range r.Events {
			if ev.Type != app.EventType {
				continue
			}
			var sums, sizes, patients, categories []string
			shared := false
			for _, a := range ev.Attributes {
				switch a.Key {
				case app.ActionAttribute:
					shared = shared || a.Value == shareAction
				case app.BlobAttribute:
					sums = append(sums, a.Value)
				case app.BlobSizeAttribute:
					sizes = append(sizes, a.Value)
				case app.PatientAttribute:
					patients = append(patients, a.Value)
				case app.CategoryAttribute:
					categories = append(categories, a.Value)
				}
			}
			if len(sums) == 0 {
				continue
			}
			slices.Sort(patients)
			slices.Sort(categories)
			patients, categories = slices.Compact(patients), slices.Compact(categories)
			if len(patients) != 1 || len(categories) != 1 {
				return nil, fmt.Errorf("transaction %d: an %s event names blob %v with patients %q and categories %q: want one of each",
					i, app.EventType, sums, patients, categories)
			}
			patientID, err := hex.DecodeString(patients[0])
			if err != nil || len(patientID) != patientIDSize {
				return nil, fmt.Errorf("transaction %d: event attribute %s.%s %q is not a patient id", i, app.EventType, app.PatientAttribute, patients[0])
			}
			if len(sizes) != len(sums) {
				return nil, fmt.Errorf("transaction %d: an %s event names %d blobs and %d sizes (%s): want one size per blob",
					i, app.EventType, len(sums), len(sizes), app.BlobSizeAttribute)
			}
			for j, v := range sums {
				sum, err := blobstore.ParseSum(v)
				if err != nil {
					return nil, fmt.Errorf("transaction %d: event attribute %s.%s: %w", i, app.EventType, app.BlobAttribute, err)
				}
				size, ok := parseDecimal(sizes[j])
				if !ok {
					return nil, fmt.Errorf("transaction %d: event attribute %s.%s %q is not a size in bytes", i, app.EventType, app.BlobSizeAttribute, sizes[j])
				}
				blobs = append(blobs, CommittedBlob{blobKeyOf(shared, patientID, categories[0], sum), uint64(size)})
			}
		}
	}
	return blobs, nil
}

// abciQuery runs one Query method over ABCI at the latest committed height.
func abciQuery(ctx context.Context, c rpcclient.ABCIClient, method string, req, resp proto.Message) error {
	data, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	res, err := c.ABCIQueryWithOptions(ctx, QueryPathPrefix+method, data, rpcclient.ABCIQueryOptions{})
	if err != nil {
		return fmt.Errorf("%w: abci_query %s: %v", ErrChainUnavailable, method, err)
	}
	r := res.Response
	if r.Code != 0 {
		if r.Codespace == app.Codespace {
			switch r.Code {
			case app.ErrNotFound.Code():
				return fmt.Errorf("%w: %s", ErrNotFound, r.Log)
			case app.ErrHeightNotCommitted.Code(), app.ErrHeightNotKept.Code():
				// A node that has committed nothing yet, or is restoring a
				// snapshot: it cannot answer now.
				return fmt.Errorf("%w: query %s: %s", ErrChainUnavailable, method, r.Log)
			}
		}
		return fmt.Errorf("query %s: code %d (%s): %s", method, r.Code, r.Codespace, r.Log)
	}
	if err := proto.Unmarshal(r.Value, resp); err != nil {
		return fmt.Errorf("query %s: decode response: %w", method, err)
	}
	return nil
}

type queryView struct {
	query  QueryFunc
	head   HeadFunc
	blocks BlocksFunc
}

func (v *queryView) Head(ctx context.Context) (Head, error) { return v.head(ctx) }

func (v *queryView) Params(ctx context.Context) (*emrv1.Params, error) {
	var resp emrv1.QueryParamsResponse
	if err := v.query(ctx, "Params", &emrv1.QueryParamsRequest{}, &resp); err != nil {
		return nil, err
	}
	if resp.Params == nil {
		return nil, errors.New("query Params: empty response")
	}
	return resp.Params, nil
}

func (v *queryView) Member(ctx context.Context, address []byte) (*emrv1.Member, error) {
	var resp emrv1.QueryMemberResponse
	if err := v.query(ctx, "Member", &emrv1.QueryMemberRequest{Address: hex.EncodeToString(address)}, &resp); err != nil {
		return nil, err
	}
	if resp.Member == nil {
		return nil, fmt.Errorf("%w: member %x", ErrNotFound, address)
	}
	return resp.Member, nil
}

func (v *queryView) Patient(ctx context.Context, id []byte) (*emrv1.Patient, error) {
	var resp emrv1.QueryPatientResponse
	if err := v.query(ctx, "Patient", &emrv1.QueryPatientRequest{PatientId: hex.EncodeToString(id)}, &resp); err != nil {
		return nil, err
	}
	if resp.Patient == nil {
		return nil, fmt.Errorf("%w: patient %x", ErrNotFound, id)
	}
	return resp.Patient, nil
}

func (v *queryView) Permission(ctx context.Context, id, grantee []byte) (*emrv1.Permission, error) {
	var resp emrv1.QueryPermissionResponse
	req := &emrv1.QueryPermissionRequest{PatientId: hex.EncodeToString(id), Grantee: hex.EncodeToString(grantee)}
	if err := v.query(ctx, "Permission", req, &resp); err != nil {
		return nil, err
	}
	if resp.Permission == nil {
		return nil, fmt.Errorf("%w: permission of %x for %x", ErrNotFound, id, grantee)
	}
	return resp.Permission, nil
}

func (v *queryView) Record(ctx context.Context, id []byte, seq uint64) (*emrv1.Record, error) {
	var resp emrv1.QueryRecordResponse
	if err := v.query(ctx, "Record", &emrv1.QueryRecordRequest{PatientId: hex.EncodeToString(id), Sequence: seq}, &resp); err != nil {
		return nil, err
	}
	if resp.Record == nil {
		return nil, fmt.Errorf("%w: record %x/%d", ErrNotFound, id, seq)
	}
	return resp.Record, nil
}

func (v *queryView) Share(ctx context.Context, id []byte, seq uint64) (*emrv1.Share, error) {
	var resp emrv1.QueryShareResponse
	if err := v.query(ctx, "Share", &emrv1.QueryShareRequest{PatientId: hex.EncodeToString(id), Sequence: seq}, &resp); err != nil {
		return nil, err
	}
	if resp.Share == nil {
		return nil, fmt.Errorf("%w: share %x/%d", ErrNotFound, id, seq)
	}
	return resp.Share, nil
}

func (v *queryView) BlockBlobs(ctx context.Context, from int64, max int) ([]BlockBlobs, error) {
	if v.blocks == nil {
		return nil, errors.New("this chain view lists no blocks (NewQueryChainView without a BlocksFunc): the sweep cannot tell which blobs are referenced")
	}
	return v.blocks(ctx, from, max)
}

func (v *queryView) StateBlobs(ctx context.Context, after string) (StateBlobs, error) {
	var resp emrv1.QueryBlobRefsResponse
	if err := v.query(ctx, "BlobRefs", &emrv1.QueryBlobRefsRequest{After: after}, &resp); err != nil {
		return StateBlobs{}, err
	}
	page := StateBlobs{Height: resp.Height, Next: resp.Next}
	if page.Height < 1 {
		return StateBlobs{}, fmt.Errorf("query BlobRefs: answered at height %d", resp.Height)
	}
	if page.Next != "" && len(resp.Refs) == 0 {
		return StateBlobs{}, fmt.Errorf("query BlobRefs: an empty page after %q says more come after %q", after, page.Next)
	}
	for _, r := range resp.Refs {
		if len(r.PatientId) != patientIDSize || len(r.Sha256) != sha256.Size || checkCategory(r.Category) != nil {
			return StateBlobs{}, fmt.Errorf("query BlobRefs: %q: a patient id of %d bytes, a SHA-256 of %d, category %q",
				r.Ref, len(r.PatientId), len(r.Sha256), r.Category)
		}
		shared := strings.HasPrefix(r.Ref, app.BlobRefShare+"/")
		page.Blobs = append(page.Blobs, CommittedBlob{blobKeyOf(shared, r.PatientId, r.Category, [sha256.Size]byte(r.Sha256)), r.Size})
	}
	return page, nil
}

func (v *queryView) LastAccess(ctx context.Context, id []byte, seq uint64, accessor []byte) (*emrv1.AccessEvent, error) {
	return v.lastAccess(ctx, &emrv1.QueryLastAccessRequest{PatientId: hex.EncodeToString(id), Sequence: seq, Accessor: hex.EncodeToString(accessor)})
}

func (v *queryView) LastShareRead(ctx context.Context, id []byte, share uint64, accessor []byte) (*emrv1.AccessEvent, error) {
	return v.lastAccess(ctx, &emrv1.QueryLastAccessRequest{PatientId: hex.EncodeToString(id), Sequence: share, Accessor: hex.EncodeToString(accessor), Share: true})
}

func (v *queryView) lastAccess(ctx context.Context, req *emrv1.QueryLastAccessRequest) (*emrv1.AccessEvent, error) {
	var resp emrv1.QueryLastAccessResponse
	if err := v.query(ctx, "LastAccess", req, &resp); err != nil {
		return nil, err
	}
	if resp.Event == nil {
		return nil, fmt.Errorf("%w: no access event", ErrNotFound)
	}
	return resp.Event, nil
}

func (v *queryView) Organization(ctx context.Context, id string) (*emrv1.Organization, error) {
	var resp emrv1.QueryOrganizationResponse
	if err := v.query(ctx, "Organization", &emrv1.QueryOrganizationRequest{Id: id}, &resp); err != nil {
		return nil, err
	}
	if resp.Organization == nil {
		return nil, fmt.Errorf("%w: organization %q", ErrNotFound, id)
	}
	return resp.Organization, nil
}

func (v *queryView) Study(ctx context.Context, id string) (*emrv1.Study, error) {
	var resp emrv1.QueryStudyResponse
	if err := v.query(ctx, "Study", &emrv1.QueryStudyRequest{Id: id}, &resp); err != nil {
		return nil, err
	}
	if resp.Study == nil {
		return nil, fmt.Errorf("%w: study %q", ErrNotFound, id)
	}
	return resp.Study, nil
}
