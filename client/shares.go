package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	abcitypes "github.com/cometbft/cometbft/abci/types"

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

// Bounds of StudyShares' search of the node's transaction index.
const (
	studySearchPerPage  = 100
	maxStudySearchPages = 100 // 10,000 share transactions
)

// StudyShares finds the shares made for a study, ordered by patient id,
// then share number.
//
// The state keeps shares under their patient only, so which patients have
// one comes from the node's transaction index (tx_search
// "emrchain.study='<study>' AND emrchain.action='share_record'"): that
// part is the node's word, and a node
// can leave a patient out. Every patient it names is then read in full
// through AllShares: each share returned is proven, and for each patient
// found, verified, none of its shares for the study is missing. A verified
// read is of the state one block behind the newest header, so a share
// committed in the newest block may show only from the next one. A node
// that runs without a transaction index finds nothing (an error says so).
func (c *Client) StudyShares(ctx context.Context, study string) ([]*emrv1.Share, error) {
	if err := app.CheckID("study id", study); err != nil {
		return nil, err
	}
	query := fmt.Sprintf("%s.study='%s' AND %s.action='%s'", app.EventType, study, app.EventType, app.MsgName(&emrv1.Msg{Sum: &emrv1.Msg_ShareRecord{}}))
	var patients [][]byte
	for page := 1; ; page++ {
		if page > maxStudySearchPages {
			return nil, fmt.Errorf("study %q: more than %d share transactions; list them per patient (--patient)", study, maxStudySearchPages*studySearchPerPage)
		}
		perPage := studySearchPerPage
		res, err := c.rpc.TxSearch(ctx, query, false, &page, &perPage, "asc")
		if err != nil {
			if strings.Contains(err.Error(), "indexing is disabled") {
				return nil, fmt.Errorf("study %q: the node keeps no transaction index (config.toml [tx_index] indexer = \"null\"): ask another node, or list shares per patient (--patient)", study)
			}
			return nil, fmt.Errorf("study %q: search the node's transaction index: %w", study, err)
		}
		for _, tx := range res.Txs {
			if id := sharedPatient(tx.TxResult.Events); id != nil {
				patients = append(patients, id)
			}
		}
		if page*studySearchPerPage >= res.TotalCount || len(res.Txs) == 0 {
			break
		}
	}
	slices.SortFunc(patients, bytes.Compare)
	patients = slices.CompactFunc(patients, bytes.Equal)
	var out []*emrv1.Share
	for _, p := range patients {
		shares, err := c.AllShares(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("patient %x: %w", p, err)
		}
		for _, sh := range shares {
			if sh.StudyId == study {
				out = append(out, sh)
			}
		}
	}
	return out, nil
}

// sharedPatient is the patient of a ShareRecord's event (its
// app.RecordAttribute), or nil.
func sharedPatient(events []abcitypes.Event) []byte {
	for _, ev := range events {
		if ev.Type != app.EventType {
			continue
		}
		for _, a := range ev.Attributes {
			if a.Key != app.RecordAttribute {
				continue
			}
			if _, id, _, err := app.ParseBlobRef(app.BlobRefRecord + "/" + a.Value); err == nil {
				return id
			}
		}
	}
	return nil
}
