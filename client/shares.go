package client

import (
	"context"
	"encoding/hex"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// AllShares pages through a patient's shares (oldest first), all of one
// state (see AllGrants).
func (c *Client) AllShares(ctx context.Context, patientID []byte) ([]*emrv1.Share, *QueryInfo, error) {
	return allPagesAt(ctx, c, "shares", "Shares", func(after uint64) (*emrv1.QuerySharesRequest, *emrv1.QuerySharesResponse) {
		return &emrv1.QuerySharesRequest{PatientId: hex.EncodeToString(patientID), Page: &emrv1.PageRequest{After: after}}, &emrv1.QuerySharesResponse{}
	}, func(resp *emrv1.QuerySharesResponse) ([]*emrv1.Share, uint64) {
		return resp.Shares, resp.Page.GetNext()
	})
}

// StudyShares pages through the shares made for a study, in the order
// they were made: each proven and, verified, the list complete (the
// study's own index in the state, see the package documentation), all of
// one state (see AllGrants).
func (c *Client) StudyShares(ctx context.Context, study string) ([]*emrv1.Share, *QueryInfo, error) {
	if err := app.CheckID("study id", study); err != nil {
		return nil, nil, err
	}
	return allPagesAt(ctx, c, "study shares", "StudyShares", func(after uint64) (*emrv1.QueryStudySharesRequest, *emrv1.QueryStudySharesResponse) {
		return &emrv1.QueryStudySharesRequest{StudyId: study, Page: &emrv1.PageRequest{After: after}}, &emrv1.QueryStudySharesResponse{}
	}, func(resp *emrv1.QueryStudySharesResponse) ([]*emrv1.Share, uint64) {
		return resp.Shares, resp.Page.GetNext()
	})
}

// BreakGlassLog pages through the break-glass log of emergency service
// service from the entry after after (0: from the first): every emergency
// read through it, in the order the chain logged them, each proven and,
// verified, the log complete (numbered without gaps up to the proven
// count), all of one state: at height, one an earlier answer was read
// from (reading several services' logs of one state), or at the newest
// the client can read when height is 0. A watcher of the log passes the
// last entry it has shown as after. A member that is no emergency service
// is ErrNotFound.
func (c *Client) BreakGlassLog(ctx context.Context, service []byte, after uint64, height int64) ([]*emrv1.BreakGlassEntry, *QueryInfo, error) {
	return allPagesFrom(ctx, c, height, "break-glass log", "BreakGlassLog", func(next uint64) (*emrv1.QueryBreakGlassLogRequest, *emrv1.QueryBreakGlassLogResponse) {
		return &emrv1.QueryBreakGlassLogRequest{Service: hex.EncodeToString(service), Page: &emrv1.PageRequest{After: max(next, after)}}, &emrv1.QueryBreakGlassLogResponse{}
	}, func(resp *emrv1.QueryBreakGlassLogResponse) ([]*emrv1.BreakGlassEntry, uint64) {
		return resp.Entries, resp.Page.GetNext()
	})
}

// AllProposals pages through the consortium's proposals, oldest first,
// all of one state (see AllGrants): QueryInfoAt its height reads more of
// the same state.
func (c *Client) AllProposals(ctx context.Context) ([]*emrv1.Proposal, *QueryInfo, error) {
	return allPagesAt(ctx, c, "proposals", "Proposals", func(after uint64) (*emrv1.QueryProposalsRequest, *emrv1.QueryProposalsResponse) {
		return &emrv1.QueryProposalsRequest{After: after}, &emrv1.QueryProposalsResponse{}
	}, func(resp *emrv1.QueryProposalsResponse) ([]*emrv1.Proposal, uint64) { return resp.Proposals, resp.Next })
}
