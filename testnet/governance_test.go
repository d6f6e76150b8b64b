package testnet_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cometbft/cometbft/privval"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
	"github.com/emrchain/emrchain/testnet"
)

// TestValidatorJoinsByProposal: a fifth node joins four validators as a
// full node; a registrar proposes it as a validator, and the other two
// organizations approve (three of three). CometBFT's set grows to five,
// and the new validator signs: with one of the first four stopped, the
// chain still commits, which 30 of 50 voting power could not, and the new
// validator's signature is in the commits. New params by proposal then
// take effect on every node, CometBFT's block size among them. All running
// nodes agree.
func TestValidatorJoinsByProposal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a testnet of real processes")
	}
	joinHome := filepath.Join(t.TempDir(), "joiner")
	id, base, err := testnet.InitHomeWith(t, joinHome, "emrchain-testnet")
	if err != nil {
		t.Fatal(err)
	}
	ctx, net := setupWith(t, testnet.Options{Validators: 4, AllowPeers: []string{id}})
	if err := testnet.CopyGenesis(net.Home(0), joinHome); err != nil {
		t.Fatal(err)
	}
	j := net.AddNode("joiner", joinHome, base)
	net.Start(j)
	catchUp(ctx, t, net, j)

	pv := privval.LoadFilePVEmptyState(filepath.Join(joinHome, "config", "priv_validator_key.json"), "")
	pub, err := pv.GetPubKey()
	if err != nil {
		t.Fatal(err)
	}
	// Its operator's proof of possession of the key, for the testnet's
	// chain (its genesis is the testnet's now) and a key never a
	// validator (change count 0): an addition needs it.
	possession, err := testnet.ShowPossession(t, joinHome, 0)
	if err != nil {
		t.Fatal(err)
	}
	tr := testnet.Transport{Net: net}
	if out, err := tr.Submit(net.Registrar(apptest.HospitalA), apptest.SetValidatorPower(pub.Bytes(), 10)); err != nil || out.Code != app.ErrInvalidMsg.Code() ||
		!strings.Contains(out.Log, "emrchaind show validator --possession") {
		t.Fatalf("an addition without the possession: %v, code %d %s", err, out.Code, out.Log)
	}
	mustSubmit(t, tr, "propose", net.Registrar(apptest.HospitalA), apptest.SetValidatorPowerWith(pub.Bytes(), 10, possession))
	mustSubmit(t, tr, "approve (b)", net.Registrar(apptest.HospitalB), apptest.Approve(1))
	var p emrv1.QueryProposalResponse
	if err := tr.Query("Proposal", &emrv1.QueryProposalRequest{Id: 1}, &p); err != nil {
		t.Fatal(err)
	}
	if p.Proposal.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN {
		t.Fatalf("after 2 of 3 organizations: %v", p.Proposal)
	}
	mustSubmit(t, tr, "approve (research)", net.Registrar(apptest.Research), apptest.Approve(1))
	if err := tr.Query("Proposal", &emrv1.QueryProposalRequest{Id: 1}, &p); err != nil {
		t.Fatal(err)
	}
	executed := p.Proposal.ExecutedHeight
	if p.Proposal.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED || executed == 0 {
		t.Fatalf("after 3 of 3 organizations: %v", p.Proposal)
	}

	// CometBFT's set at executed+2 has five validators, the joiner's among them.
	if err := net.WaitHeight(ctx, 0, executed+2); err != nil {
		t.Fatal(err)
	}
	at := executed + 2
	vals, err := net.RPC(0).Validators(ctx, &at, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if vals.Total != 5 {
		t.Fatalf("validators at %d: %d, want 5", at, vals.Total)
	}
	before := executed + 1
	if vb, err := net.RPC(0).Validators(ctx, &before, nil, nil); err != nil || vb.Total != 4 {
		t.Fatalf("validators at %d: %v (%v), want 4: the change applies from executed+2", before, vb, err)
	}

	// Without node 3, only the joiner's signature makes two thirds.
	net.Stop(3)
	from := net.MaxHeight()
	if err := net.WaitHeight(ctx, 0, from+3); err != nil {
		t.Fatal(err)
	}
	h := from + 2
	commit, err := net.RPC(0).Commit(ctx, &h)
	if err != nil {
		t.Fatal(err)
	}
	signed := false
	for _, sig := range commit.Commit.Signatures {
		if bytes.Equal(sig.ValidatorAddress, pub.Address()) && sig.Signature != nil {
			signed = true
		}
	}
	if !signed {
		t.Fatalf("the joiner's signature is not in the commit of block %d", h)
	}
	t.Logf("proposal executed at %d; five validators from %d; with node3 stopped the chain went on to %d, signed by the joiner",
		executed, executed+2, net.MaxHeight())

	// New params by proposal: every node runs the next block, and checks
	// transactions, under them (a record of a category added).
	patient := apptest.NewActor("params-patient")
	pid := apptest.PatientID(patient.Name)
	mustSubmit(t, tr, "enroll", patient, apptest.Enroll(patient))
	var params emrv1.QueryParamsResponse
	if err := tr.Query("Params", &emrv1.QueryParamsRequest{}, &params); err != nil {
		t.Fatal(err)
	}
	if out, err := tr.Submit(patient, apptest.AddRecord(pid, "genomics", "g1")); err != nil || out.Code != app.ErrUnknownCategory.Code() {
		t.Fatalf("a record of a category the params lack: %v, code %d %s", err, out.Code, out.Log)
	}
	params.Params.Categories = append(params.Params.Categories, "genomics")
	params.Params.Consensus.BlockMaxBytes = 3 << 20 // and CometBFT's, which every node applies
	mustSubmit(t, tr, "propose params", net.Registrar(apptest.HospitalA), apptest.SetParams(params.Params, params.Changes))
	mustSubmit(t, tr, "approve params (b)", net.Registrar(apptest.HospitalB), apptest.Approve(2))
	mustSubmit(t, tr, "approve params (research)", net.Registrar(apptest.Research), apptest.Approve(2))
	mustSubmit(t, tr, "a record of the category added", patient, apptest.AddRecord(pid, "genomics", "g1"))
	if err := tr.Query("Proposal", &emrv1.QueryProposalRequest{Id: 2}, &p); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1, 2, j} {
		if err := net.WaitHeight(ctx, i, p.Proposal.ExecutedHeight+1); err != nil {
			t.Fatal(err)
		}
		for h, want := range map[int64]int64{p.Proposal.ExecutedHeight: 4 << 20, p.Proposal.ExecutedHeight + 1: 3 << 20} {
			cp, err := net.RPC(i).ConsensusParams(ctx, &h)
			if err != nil || cp.ConsensusParams.Block.MaxBytes != want {
				t.Fatalf("node %d: CometBFT's consensus params at %d: %v (%v), want block.max_bytes %d", i, h, cp, err, want)
			}
		}
	}
	agree(context.Background(), t, net)
}
