package app_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
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
// proposal. The executing transaction retires every member of it (one its
// registrar had suspended too) and names the organization in its event;
// none acts again; a status change of one, proposed before or after, and
// a registrar seated in it are overtaken; it no longer counts in
// approvals; a patient's key rotation seals nothing to its members (and
// may not); its studies take no share consent or share. A retired
// organization is not retired again, an unknown one not at all, one
// admitted as retired not at all, and the last organization that can
// approve is never retired.
func TestRetireOrganization(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	nurse := w.member("retire-nurse-b", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalB)
	c.Must(w.regB, apptest.SetStatus(nurse, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
	nurseChanges := ruleMember(c, nurse.Address).StatusChanges
	w.records(ruleLab)
	// A technician the consortium suspended (three of three).
	tech := w.member("retire-tech-b", emrv1.Role_ROLE_CLINICIAN, apptest.HospitalB)
	c.Must(w.regA, apptest.ConsortiumSetStatus(tech, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
	c.Must(w.regR, apptest.Approve(ruleProposalsMade(c)))
	c.Must(w.regB, apptest.Approve(ruleProposalsMade(c)))
	if got := ruleMember(c, tech.Address); !got.SuspendedByConsortium {
		t.Fatalf("the technician before the retirement: %v, want suspended by the consortium", got)
	}
	c.Must(w.pat, apptest.Grant(w.pid, w.doc2, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, Categories: []string{ruleLab}, NotAfter: w.year}))
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, Categories: []string{ruleLab}, NotAfter: w.year}))
	// Open when the retirement executes: a suspension of its clinician and
	// a reactivation of its nurse (one approval of three each).
	c.Must(w.regA, apptest.ConsortiumSetStatus(w.doc2, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
	openSuspension := ruleProposalsMade(c)
	c.Must(w.regA, apptest.ConsortiumSetStatus(nurse, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE))
	openReactivation := ruleProposalsMade(c)

	ruleCheck(t, "an unknown organization", c.Exec(w.regA, apptest.RetireOrganization("st-nowhere")), app.ErrNotFound, `no organization "st-nowhere"`)
	admitRetired := apptest.AddOrganization("st-ghost", apptest.NewActor("retire-ghost-reg"))
	admitRetired.GetPropose().Change.GetAddOrganization().Organization.RetiredHeight = -7
	ruleCheck(t, "an organization admitted as retired", c.Exec(w.regA, admitRetired), app.ErrInvalidMsg, "retired_height is the chain's to set")

	c.Must(w.regA, apptest.RetireOrganization(apptest.HospitalB))
	id := ruleProposalsMade(c)
	c.Must(w.regR, apptest.Approve(id))
	if org := ruleOrganization(c, apptest.HospitalB).Organization; org.RetiredHeight != 0 {
		t.Fatalf("retired by two of three organizations: %v", org)
	}
	res := c.Must(w.regB, apptest.Approve(id)) // leaving, it approves too
	executed := ruleProposal(c, id).Proposal.ExecutedHeight
	if org := ruleOrganization(c, apptest.HospitalB).Organization; executed == 0 || org.RetiredHeight != executed {
		t.Fatalf("organization after the proposal executed at %d: %v", executed, org)
	}
	if !hasAttr(res, app.OrganizationAttribute, apptest.HospitalB) || hasAttr(res, "member", hex.EncodeToString(w.doc2.Address)) {
		t.Errorf("the executing transaction's event: %v, want organization=%s and no attribute per member", res.Events, apptest.HospitalB)
	}
	for _, m := range []*apptest.Actor{w.regB, w.doc2, nurse, tech} {
		if got := ruleMember(c, m.Address); got.Status != emrv1.MemberStatus_MEMBER_STATUS_RETIRED || got.SuspendedByConsortium {
			t.Errorf("%s after the retirement: %v, want retired", m.Name, got)
		}
	}
	if got := ruleMember(c, nurse.Address).StatusChanges; got != nurseChanges+1 {
		t.Errorf("the nurse its registrar had suspended: %d status changes, want %d", got, nurseChanges+1)
	}
	// Its registrars are still listed, retired.
	if regs := ruleOrganization(c, apptest.HospitalB).Registrars; len(regs) != 1 || regs[0].Status != emrv1.MemberStatus_MEMBER_STATUS_RETIRED {
		t.Errorf("the retired organization's registrars: %v, want its one, retired", regs)
	}
	ruleCheck(t, "a grant to its clinician", c.Exec(w.pat, apptest.Grant(w.pid, nurse, apptest.GrantSpec{Rights: []emrv1.Right{rRead}, Categories: []string{ruleLab}, NotAfter: w.year})),
		app.ErrGranteeSuspended, "is retired (its organization left the consortium)")
	ruleCheck(t, "its registrar registers", c.Exec(w.regB, apptest.RegisterMember(apptest.NewActor("retire-late"), emrv1.Role_ROLE_CLINICIAN, apptest.HospitalB)),
		app.ErrSignerSuspended, "retired (its organization left the consortium)")
	ruleCheck(t, "its clinician adds a record", c.Exec(w.doc2, apptest.AddRecord(w.pid, ruleLab, "retire-rec")), app.ErrSignerSuspended)
	ruleCheck(t, "retired again", c.Exec(w.regA, apptest.RetireOrganization(apptest.HospitalB)), app.ErrProposalClosed,
		`organization "hospital-b" was retired at height`)
	ruleCheck(t, "a member of it reactivated", c.Exec(w.regA, apptest.ConsortiumSetStatus(w.doc2, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE)),
		app.ErrProposalClosed, `is retired: its organization "hospital-b" left the consortium`)
	ruleCheck(t, "a registrar seated in it", c.Exec(w.regA, apptest.AddRegistrar(apptest.HospitalB, apptest.NewActor("retire-new-reg"))),
		app.ErrProposalClosed, `organization "hospital-b" was retired at height`)
	// Two organizations count now, so one more approval would execute
	// the open proposals: both are overtaken instead.
	ruleCheck(t, "the open suspension", c.Exec(w.regR, apptest.Approve(openSuspension)), app.ErrProposalClosed, "is retired")
	ruleCheck(t, "the open reactivation", c.Exec(w.regR, apptest.Approve(openReactivation)), app.ErrProposalClosed, "is retired")

	// The patient's key moves on without its clinician: no envelope is
	// needed, and one is refused; the active grantee still needs one.
	envelope := func(a *apptest.Actor) *emrv1.KeyEnvelope {
		return &emrv1.KeyEnvelope{Grantee: a.Address, WrappedKek: bytes.Repeat([]byte{1}, 93)}
	}
	ruleCheck(t, "a rotation sealing the key to a retired grantee", c.Exec(w.pat, apptest.RotateKey(w.pid, 2, []*emrv1.KeyEnvelope{envelope(w.doc), envelope(w.doc2)}, nil)),
		app.ErrInvalidMsg, "1 envelope(s) for members without a standing grant (or retired)")
	ruleCheck(t, "a rotation without the active grantee", c.Exec(w.pat, apptest.RotateKey(w.pid, 2, nil, nil)),
		app.ErrInvalidMsg, "no new key envelope for standing grantee(s) "+fmt.Sprintf("%X", w.doc.Address))
	c.Must(w.pat, apptest.RotateKey(w.pid, 2, []*emrv1.KeyEnvelope{envelope(w.doc)}, nil))

	// The research institute's study, once it is retired, takes no share
	// consent and no share. Two organizations count: the hospital's
	// proposal and the institute's approval carry it.
	w.study(ruleStudy)
	c.Must(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rRead, rShare}, Categories: []string{ruleLab}, NotAfter: w.year, Study: ruleStudy, KeyVersion: 2}))
	c.Must(w.doc, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_RESEARCH, 1))
	c.Must(w.regA, apptest.RetireOrganization(apptest.Research))
	id = ruleProposalsMade(c)
	c.Must(w.regR, apptest.Approve(id))
	if p := ruleProposal(c, id).Proposal; p.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED {
		t.Fatalf("two of the two organizations that count: %v", p)
	}
	ruleCheck(t, "a share with a retired organization's study", c.Exec(w.doc, apptest.Share(w.pid, 1, ruleStudy, false)),
		app.ErrUnauthorized, `study "rules-study": organization "research-institute" was retired at height`)
	ruleCheck(t, "a share consent for it", c.Exec(w.pat, apptest.Grant(w.pid, w.doc, apptest.GrantSpec{Rights: []emrv1.Right{rShare}, Categories: []string{ruleLab}, NotAfter: w.year, Study: ruleStudy, KeyVersion: 2})),
		app.ErrUnauthorized, `organization "research-institute" was retired at height`)
	// The consent reads nothing more for the closed study; its treatment
	// right stands.
	ruleCheck(t, "a research read for it", c.Exec(w.doc, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_RESEARCH, 1)),
		app.ErrUnauthorized, `record 1: unauthorized: study "rules-study": organization "research-institute" was retired at height`)
	c.Must(w.doc, apptest.Access(w.pid, emrv1.Purpose_PURPOSE_TREATMENT, 1))
	ruleCheck(t, "the last organization that can approve", c.Exec(w.regA, apptest.RetireOrganization(apptest.HospitalA)), app.ErrInvalidMsg,
		"no other organization has an active registrar")
}
