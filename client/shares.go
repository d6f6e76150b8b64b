package client

import (
	"context"
	"encoding/hex"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// AllShares pages through a patient's shares, oldest first: each proven
// and, verified, the list complete (see the package documentation).
func (c *Client) AllShares(ctx context.Context, patientID []byte) ([]*emrv1.Share, error) {
	return allPages("shares", func(after uint64) ([]*emrv1.Share, uint64, error) {
		var resp emrv1.QuerySharesResponse
		req := &emrv1.QuerySharesRequest{PatientId: hex.EncodeToString(patientID), Page: &emrv1.PageRequest{After: after}}
		err := c.Query(ctx, "Shares", req, &resp)
		return resp.Shares, resp.Page.GetNext(), err
	})
}

// StudyShares pages through the shares made for a study, in the order
// they were made: each proven and, verified, the list complete (the
// study's own index in the state, see the package documentation).
func (c *Client) StudyShares(ctx context.Context, study string) ([]*emrv1.Share, error) {
	if err := app.CheckID("study id", study); err != nil {
		return nil, err
	}
	return allPages("study shares", func(after uint64) ([]*emrv1.Share, uint64, error) {
		var resp emrv1.QueryStudySharesResponse
		req := &emrv1.QueryStudySharesRequest{StudyId: study, Page: &emrv1.PageRequest{After: after}}
		err := c.Query(ctx, "StudyShares", req, &resp)
		return resp.Shares, resp.Page.GetNext(), err
	})
}

// AllProposals pages through the consortium's proposals, oldest first,
// each page a verified query of one state: the first page's, whose
// provenance it returns. The list is that state's, and QueryInfoAt its
// height reads more of the same state.
func (c *Client) AllProposals(ctx context.Context) ([]*emrv1.Proposal, *QueryInfo, error) {
	var info *QueryInfo
	props, err := allPages("proposals", func(after uint64) ([]*emrv1.Proposal, uint64, error) {
		var resp emrv1.QueryProposalsResponse
		req := &emrv1.QueryProposalsRequest{After: after}
		var err error
		if info == nil {
			info, err = c.QueryInfo(ctx, "Proposals", req, &resp)
		} else {
			_, err = c.QueryInfoAt(ctx, info.Height, "Proposals", req, &resp)
		}
		return resp.Proposals, resp.Next, err
	})
	if err != nil {
		return nil, nil, err
	}
	return props, info, nil
}
