package sidecar

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	rpcclient "github.com/cometbft/cometbft/rpc/client"
	"google.golang.org/protobuf/proto"

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

// Result code and codespace of app.ErrNotFound. The sidecar does not link
// the state machine; a test pins these to the app's values.
const (
	appCodespace    = "emrchain"
	appCodeNotFound = 11
)

// QueryPathPrefix is the ABCI query path prefix of the Query service.
const QueryPathPrefix = "/emrchain.v1.Query/"

// Head is the chain's latest block as the sidecar sees it.
type Head struct {
	Height int64
	// Time is the block time: the clock every permission window and access
	// window is measured by.
	Time time.Time
}

// ChainView is everything the sidecar asks the chain. Every call reads the
// latest committed state; the sidecar caches none of it, so a revoked grant
// or a suspended member takes effect with the next committed block.
type ChainView interface {
	Head(ctx context.Context) (Head, error)
	Params(ctx context.Context) (*emrv1.Params, error)
	Member(ctx context.Context, address []byte) (*emrv1.Member, error)
	Patient(ctx context.Context, patientID []byte) (*emrv1.Patient, error)
	Permissions(ctx context.Context, patientID []byte) ([]*emrv1.Permission, error)
	RecordsByHash(ctx context.Context, sum [32]byte) ([]*emrv1.Record, error)
	SharesByHash(ctx context.Context, sum [32]byte) ([]*emrv1.Share, error)
	LastAccess(ctx context.Context, patientID []byte, sequence uint64, accessor []byte) (*emrv1.AccessEvent, error)
	Study(ctx context.Context, id string) (*emrv1.Study, error)
}

// QueryFunc answers one Query service method: method is the bare name
// ("Member"), req and resp the protobuf messages. It has the shape of the
// client library's Client.Query, so a light-client-verified client can
// back the sidecar by passing its Query here (see NewQueryChainView).
// It must return an error wrapping ErrNotFound for a missing object.
type QueryFunc func(ctx context.Context, method string, req, resp proto.Message) error

// HeadFunc returns the latest block.
type HeadFunc func(ctx context.Context) (Head, error)

// NewQueryChainView builds a ChainView from a query function and a head
// function. This is the switch between trusting the co-located node
// (NewNodeChainView) and verifying every answer with the light client.
func NewQueryChainView(query QueryFunc, head HeadFunc) ChainView {
	return &queryView{query: query, head: head}
}

// NodeClient is the part of a CometBFT RPC client the sidecar uses. Both
// rpc/client/http (a remote node) and rpc/client/local (the node in the
// same process) implement it.
type NodeClient interface {
	rpcclient.ABCIClient
	rpcclient.StatusClient
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
	return NewQueryChainView(
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
			return Head{Height: st.SyncInfo.LatestBlockHeight, Time: st.SyncInfo.LatestBlockTime}, nil
		},
	)
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
		if r.Codespace == appCodespace && r.Code == appCodeNotFound {
			return fmt.Errorf("%w: %s", ErrNotFound, r.Log)
		}
		return fmt.Errorf("query %s: code %d (%s): %s", method, r.Code, r.Codespace, r.Log)
	}
	if err := proto.Unmarshal(r.Value, resp); err != nil {
		return fmt.Errorf("query %s: decode response: %w", method, err)
	}
	return nil
}

type queryView struct {
	query QueryFunc
	head  HeadFunc
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

func (v *queryView) Permissions(ctx context.Context, id []byte) ([]*emrv1.Permission, error) {
	var resp emrv1.QueryPermissionsResponse
	if err := v.query(ctx, "Permissions", &emrv1.QueryPermissionsRequest{PatientId: hex.EncodeToString(id)}, &resp); err != nil {
		return nil, err
	}
	return resp.Permissions, nil
}

func (v *queryView) RecordsByHash(ctx context.Context, sum [32]byte) ([]*emrv1.Record, error) {
	var resp emrv1.QueryRecordsByHashResponse
	if err := v.query(ctx, "RecordsByHash", &emrv1.QueryRecordsByHashRequest{Sha256: hex.EncodeToString(sum[:])}, &resp); err != nil {
		return nil, err
	}
	return resp.Records, nil
}

func (v *queryView) SharesByHash(ctx context.Context, sum [32]byte) ([]*emrv1.Share, error) {
	var resp emrv1.QuerySharesByHashResponse
	if err := v.query(ctx, "SharesByHash", &emrv1.QuerySharesByHashRequest{Sha256: hex.EncodeToString(sum[:])}, &resp); err != nil {
		return nil, err
	}
	return resp.Shares, nil
}

func (v *queryView) LastAccess(ctx context.Context, id []byte, seq uint64, accessor []byte) (*emrv1.AccessEvent, error) {
	var resp emrv1.QueryLastAccessResponse
	req := &emrv1.QueryLastAccessRequest{PatientId: hex.EncodeToString(id), Sequence: seq, Accessor: hex.EncodeToString(accessor)}
	if err := v.query(ctx, "LastAccess", req, &resp); err != nil {
		return nil, err
	}
	if resp.Event == nil {
		return nil, fmt.Errorf("%w: no access event", ErrNotFound)
	}
	return resp.Event, nil
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
