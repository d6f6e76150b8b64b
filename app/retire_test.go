package app_test

import (
	"testing"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// ruleOrganization reads organization id.
func ruleOrganization(c *apptest.Chain, id string) *emrv1.QueryOrganizationResponse {
	c.TB.Helper()
	var resp emrv1.QueryOrganizationResponse
	c.Query("Organization", &emrv1.QueryOrganizationRequest{Id: id}, &resp)
	return &resp
}

// TestRetireOrganization: an organization that leaves is retired by
// proposal. The executing transaction suspends every member of it, by the
// consortium (one its registrar had suspended too, which then sticks);
// none acts again, none is reactivated and no registrar is seated in it;
// it no longer counts in approvals. A retired organization is not retired
// again, an unknown one not at all, and the last organization that can
// approve is never retired.
func TestRetireOrganization(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	nurse := w.member("retire-nurse-b", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalB)
	c.Must(w.regB, apptest.SetStatus(nurse, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
	nurseChanges := ruleMember(c, nurse.Address).StatusChanges

	ruleCheck(t, "an unknown organization", c.Exec(w.regA, apptest.RetireOrganization("st-nowhere")), app.ErrNotFound, `no organization "st-nowhere"`)
	c.Must(w.regA, apptest.RetireOrganization(apptest.HospitalB))
	id := ruleProposalsMade(c)
	c.Must(w.regR, apptest.Approve(id))
	if org := ruleOrganization(c, apptest.HospitalB).Organization; org.RetiredHeight != 0 {
		t.Fatalf("retired by two of three organizations: %v", org)
	}
	c.Must(w.regB, apptest.Approve(id)) // leaving, it approves too
	executed := ruleProposal(c, id).Proposal.ExecutedHeight
	if org := ruleOrganization(c, apptest.HospitalB).Organization; executed == 0 || org.RetiredHeight != executed {
		t.Fatalf("organization after the proposal executed at %d: %v", executed, org)
	}
	for _, m := range []*apptest.Actor{w.regB, w.doc2, nurse} {
		got := ruleMember(c, m.Address)
		if got.Status != emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED || !got.SuspendedByConsortium {
			t.Errorf("%s after the retirement: %v, want suspended by the consortium", m.Name, got)
		}
	}
	if got := ruleMember(c, nurse.Address).StatusChanges; got != nurseChanges+1 {
		t.Errorf("the nurse its registrar had suspended: %d status changes, want %d", got, nurseChanges+1)
	}
	ruleCheck(t, "its registrar registers", c.Exec(w.regB, apptest.RegisterMember(apptest.NewActor("retire-late"), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalB)),
		app.ErrSignerSuspended)
	ruleCheck(t, "its clinician adds a record", c.Exec(w.doc2, apptest.AddRecord(w.pid, ruleLab, "retire-rec")), app.ErrSignerSuspended)
	ruleCheck(t, "retired again", c.Exec(w.regA, apptest.RetireOrganization(apptest.HospitalB)), app.ErrProposalClosed,
		`organization "hospital-b" was retired at height`)
	ruleCheck(t, "a member of it reactivated", c.Exec(w.regA, apptest.ConsortiumSetStatus(w.doc2, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE)),
		app.ErrProposalClosed, `organization "hospital-b" was retired at height`)
	ruleCheck(t, "a registrar seated in it", c.Exec(w.regA, apptest.AddRegistrar(apptest.HospitalB, apptest.NewActor("retire-new-reg"))),
		app.ErrProposalClosed, `organization "hospital-b" was retired at height`)

	// Two organizations count now: the research institute's approval
	// alone carries the hospital's proposal.
	c.Must(w.regA, apptest.RetireOrganization(apptest.Research))
	id = ruleProposalsMade(c)
	c.Must(w.regR, apptest.Approve(id))
	if p := ruleProposal(c, id).Proposal; p.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED {
		t.Fatalf("two of the two organizations that count: %v", p)
	}
	ruleCheck(t, "the last organization that can approve", c.Exec(w.regA, apptest.RetireOrganization(apptest.HospitalA)), app.ErrInvalidMsg,
		"no other organization has an active registrar")
}
