package app_test

import (
	"fmt"
	"testing"

	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestProposalProofsDoNotGrowWithSuspendedRegistrars: a registrar who
// registers fifty more in its own organization and suspends them makes a
// verified Proposal read (and every proposal's check) no longer: the
// registrar index sorts an organization's active registrars first. (The
// review found votingOrganizations reading the registrars in address
// order up to the first active one: 7 proofs became 37.)
func TestProposalProofsDoNotGrowWithSuspendedRegistrars(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	c.Must(w.regA, apptest.AddValidator(apptest.NewActor("y"), 1))
	proofs := func() int {
		var resp emrv1.QueryProposalResponse
		c.QueryProven("Proposal", &emrv1.QueryProposalRequest{Id: 1}, &resp)
		return len(resp.Proofs)
	}
	before := proofs()
	var regs []*apptest.Actor
	for i := range 50 {
		regs = append(regs, apptest.NewActor(fmt.Sprintf("review-reg-%d", i)))
	}
	var txs [][]byte
	seq := c.Seq(w.regA.Address)
	for i, r := range regs {
		txs = append(txs, w.regA.Tx(apptest.ChainID, seq+uint64(i), apptest.RegisterMember(r, emrv1.Role_ROLE_REGISTRAR, apptest.HospitalA)))
	}
	ruleAllOK(t, c.Block(txs...))
	txs = nil
	seq = c.Seq(w.regA.Address)
	for i, r := range regs {
		txs = append(txs, w.regA.Tx(apptest.ChainID, seq+uint64(i), apptest.SetStatus(r, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)))
	}
	ruleAllOK(t, c.Block(txs...))
	if after := proofs(); after != before {
		t.Fatalf("Proposal's proofs went from %d to %d with fifty suspended registrars", before, after)
	}
}
