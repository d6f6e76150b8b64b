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

// AllProposals pages through the consortium's proposals, oldest first,
// all of one state (see AllGrants): QueryInfoAt its height reads more of
// the same state.
func (c *Client) AllProposals(ctx context.Context) ([]*emrv1.Proposal, *QueryInfo, error) {
	return allPagesAt(ctx, c, "proposals", "Proposals", func(after uint64) (*emrv1.QueryProposalsRequest, *emrv1.QueryProposalsResponse) {
		return &emrv1.QueryProposalsRequest{After: after}, &emrv1.QueryProposalsResponse{}
	}, func(resp *emrv1.QueryProposalsResponse) ([]*emrv1.Proposal, uint64) { return resp.Proposals, resp.Next })
}
