package app_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Consortium proposals: who may propose and approve, the two-thirds rule
// over organizations, voting's end, a change no longer possible, and what
// each change does (an organization with its first registrar; a validator
// set change handed to CometBFT).

func ruleProposal(c *apptest.Chain, id uint64) *emrv1.QueryProposalResponse {
	c.TB.Helper()
	var resp emrv1.QueryProposalResponse
	c.Query("Proposal", &emrv1.QueryProposalRequest{Id: id}, &resp)
	return &resp
}

func ruleValidators(c *apptest.Chain) []*emrv1.Validator {
	c.TB.Helper()
	var resp emrv1.QueryValidatorsResponse
	c.Query("Validators", &emrv1.QueryValidatorsRequest{}, &resp)
	return resp.Validators
}

func TestProposalRules(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	newReg := apptest.NewActor("registrar-hospital-d")
	at := c.Now
	badKey := make([]byte, 32) // the identity point: a key of small order
	ruleRun(t, c, at, []ruleCase{
		{"clinician proposes", w.doc, apptest.AddOrganization("hospital-d", newReg), app.ErrUnauthorized, []string{"only a registrar"}},
		{"auditor proposes", w.aud, apptest.SetValidatorPower(apptest.Validator(3).SignPub(), 0), app.ErrUnauthorized, []string{"only a registrar"}},
		{"organization exists", w.regA, apptest.AddOrganization(apptest.HospitalB, newReg), app.ErrAlreadyExists, []string{`organization "hospital-b" exists`}},
		{"registrar key is a member's", w.regA, apptest.AddOrganization("hospital-d", w.doc), app.ErrAlreadyExists, []string{"already a clinician"}},
		{"registrar key is a patient's", w.regA, apptest.AddOrganization("hospital-d", w.pat), app.ErrAlreadyExists, []string{"already a patient"}},
		{"remove a key that is no validator", w.regA, apptest.SetValidatorPower(newReg.SignPub(), 0), app.ErrNotFound, []string{"is not a validator"}},
		{"power unchanged", w.regA, apptest.SetValidatorPower(apptest.Validator(0).SignPub(), 10), app.ErrAlreadyExists, []string{"has power 10 already"}},
		{"power above the maximum", w.regA, apptest.SetValidatorPower(newReg.SignPub(), app.MaxValidatorPower+1), app.ErrInvalidMsg, []string{"outside 0..1000000"}},
		{"negative power", w.regA, apptest.SetValidatorPower(apptest.Validator(0).SignPub(), -1), app.ErrInvalidMsg, []string{"outside"}},
		{"validator key of small order", w.regA, apptest.SetValidatorPower(badKey, 10), app.ErrInvalidMsg, []string{"validator key"}},
		{"no change", w.regA, &emrv1.Msg{Sum: &emrv1.Msg_Propose{Propose: &emrv1.MsgPropose{Reason: "nothing"}}}, app.ErrInvalidMsg, []string{"changes nothing"}},
		{"no reason", w.regA, &emrv1.Msg{Sum: &emrv1.Msg_Propose{Propose: &emrv1.MsgPropose{
			Change: apptest.AddOrganization("hospital-d", newReg).GetPropose().Change}}}, app.ErrInvalidMsg, []string{"reason"}},
		{"organization without kind", w.regA, func() *emrv1.Msg {
			m := apptest.AddOrganization("hospital-d", newReg)
			m.GetPropose().Change.GetAddOrganization().Organization.Kind = emrv1.OrganizationKind_ORGANIZATION_KIND_UNSPECIFIED
			return m
		}(), app.ErrInvalidMsg, []string{"kind must be"}},
		{"approve proposal 0", w.regA, apptest.Approve(0), app.ErrInvalidMsg, []string{"proposal 0"}},
		{"approve an unknown proposal", w.regA, apptest.Approve(7), app.ErrNotFound, []string{"no proposal 7"}},
		{"registrar proposes", w.regA, apptest.AddOrganization("hospital-d", newReg), nil, nil},
	})

	// Three organizations: a proposal needs all three (2 of 3 is not more
	// than two thirds).
	res := c.Must(w.regA, apptest.AddOrganization("hospital-d", newReg))
	if !hasAttr(res, app.ProposalAttribute, "1") {
		t.Errorf("propose event lacks proposal=1: %+v", res.Events)
	}
	p := ruleProposal(c, 1)
	if p.Proposal.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN || p.Organizations != 3 ||
		!p.Proposal.VotingEnd.AsTime().Equal(p.Proposal.Time.AsTime().Add(14*24*time.Hour)) {
		t.Fatalf("new proposal = %v (of %d organizations)", p.Proposal, p.Organizations)
	}
	at = c.Now
	ruleRun(t, c, at, []ruleCase{
		{"the proposer's organization again", w.regA, apptest.Approve(1), app.ErrAlreadyExists, []string{`"hospital-a" has approved proposal 1 already`}},
		{"clinician approves", w.doc2, apptest.Approve(1), app.ErrUnauthorized, []string{"only a registrar"}},
	})
	c.Must(w.regB, apptest.Approve(1))
	if p := ruleProposal(c, 1); p.Proposal.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN || len(p.Proposal.Approvals) != 2 {
		t.Fatalf("after 2 of 3 approvals: %v", p.Proposal)
	}
	if code := ruleQueryCode(c, "Member", &emrv1.QueryMemberRequest{Address: hexOf(newReg.Address)}, &emrv1.QueryMemberResponse{}); code != app.ErrNotFound.Code() {
		t.Fatalf("the new registrar before the proposal executed: code %d, want not found", code)
	}
	res = c.Must(w.regR, apptest.Approve(1))
	if !hasAttr(res, app.ExecutedAttribute, "true") {
		t.Errorf("executing approval's event lacks executed=true: %+v", res.Events)
	}
	p = ruleProposal(c, 1)
	if p.Proposal.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED || p.Proposal.ExecutedHeight != c.Height() ||
		p.Organizations != 4 {
		t.Fatalf("after 3 of 3 approvals: %v (of %d organizations)", p.Proposal, p.Organizations)
	}
	reg := ruleMember(c, newReg.Address)
	if reg == nil || reg.Role != emrv1.Role_ROLE_REGISTRAR || reg.OrganizationId != "hospital-d" ||
		reg.Status != emrv1.MemberStatus_MEMBER_STATUS_ACTIVE || reg.RegisteredHeight != c.Height() {
		t.Fatalf("new registrar = %v", reg)
	}
	// The new organization's registrar registers its staff, and its
	// organization now counts: a proposal needs three of four.
	c.Must(newReg, apptest.RegisterMember(apptest.NewActor("doc-d"), emrv1.Role_ROLE_CLINICIAN, "hospital-d"))
	ruleCheck(t, "approve an executed proposal", c.Exec(w.regB, apptest.Approve(1)), app.ErrProposalClosed, "executed at height")

	removal := apptest.SetValidatorPower(apptest.Validator(3).SignPub(), 0)
	c.Must(newReg, removal)
	res = c.Must(w.regA, apptest.Approve(2))
	if len(res.ValidatorUpdates) != 0 || len(ruleValidators(c)) != 4 {
		t.Fatalf("2 of 4 approvals changed the validators: %v", res.ValidatorUpdates)
	}
	res = c.Must(w.regB, apptest.Approve(2))
	if len(res.ValidatorUpdates) != 1 || !bytes.Equal(res.ValidatorUpdates[0].PubKey, apptest.Validator(3).SignPub()) ||
		res.ValidatorUpdates[0].Power != 0 {
		t.Fatalf("3 of 4 approvals: validator updates %v", res.ValidatorUpdates)
	}
	if vs := ruleValidators(c); len(vs) != 3 {
		t.Fatalf("validators after the removal: %v", vs)
	}
	ruleCheck(t, "approve after execution", c.Exec(w.regR, apptest.Approve(2)), app.ErrProposalClosed)
}

// TestProposalVotingEnds: an approval at or after voting_end is refused,
// and a suspended registrar approves nothing.
func TestProposalVotingEnds(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	c.Must(w.regA, apptest.SetValidatorPower(apptest.NewActor("validator-new").SignPub(), 5))
	end := ruleProposal(c, 1).Proposal.VotingEnd.AsTime()
	ruleCheck(t, "approve a second before the end", c.Simulate(w.regB, end.Add(-time.Second), apptest.Approve(1)), nil)
	ruleCheck(t, "approve at the end", c.Simulate(w.regB, end, apptest.Approve(1)), app.ErrProposalClosed, "voting on proposal 1 ended at")

	regB2 := w.member("registrar-b-2", emrv1.Role_ROLE_REGISTRAR, apptest.HospitalB)
	c.Must(w.regB, apptest.SetStatus(regB2, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
	ruleCheck(t, "suspended registrar approves", c.Exec(regB2, apptest.Approve(1)), app.ErrSignerSuspended)
}

// TestProposalNoLongerPossible: two proposals admit the same organization;
// once the first executes, the approval that would execute the second
// fails, is not recorded, and the second stays open.
func TestProposalNoLongerPossible(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	c.Must(w.regA, apptest.AddOrganization("hospital-d", apptest.NewActor("reg-d-1")))
	c.Must(w.regB, apptest.AddOrganization("hospital-d", apptest.NewActor("reg-d-2")))
	c.Must(w.regB, apptest.Approve(1))
	c.Must(w.regA, apptest.Approve(2))
	c.Must(w.regR, apptest.Approve(1))
	ruleCheck(t, "execute the second", c.Exec(w.regR, apptest.Approve(2)), app.ErrAlreadyExists,
		"proposal 2 cannot execute", `organization "hospital-d" exists`)
	if p := ruleProposal(c, 2).Proposal; p.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN || len(p.Approvals) != 2 {
		t.Fatalf("proposal 2 = %v", p)
	}
}

// TestOneOrganizationDecidesAlone: in a consortium of one organization a
// proposal executes when made, and the last validator cannot be removed.
func TestOneOrganizationDecidesAlone(t *testing.T) {
	g := apptest.Consortium()
	g.Organizations, g.Members = g.Organizations[:1], g.Members[:1]
	only := apptest.Validator(0).SignPub()
	c := apptest.New(t, apptest.Options{Genesis: g, Validators: []*emrv1.Validator{{PubKey: only, Power: 10}}})
	reg := apptest.Registrar(apptest.HospitalA)
	ruleCheck(t, "remove the only validator", c.Exec(reg, apptest.SetValidatorPower(only, 0)), app.ErrLastValidator, "only validator")
	second := apptest.NewActor("validator-second").SignPub()
	res := c.Must(reg, apptest.SetValidatorPower(second, 7))
	if len(res.ValidatorUpdates) != 1 || res.ValidatorUpdates[0].Power != 7 {
		t.Fatalf("validator updates %v", res.ValidatorUpdates)
	}
	c.Must(reg, apptest.SetValidatorPower(only, 0))
	vs := ruleValidators(c)
	if len(vs) != 1 || !bytes.Equal(vs[0].PubKey, second) || vs[0].Power != 7 {
		t.Fatalf("validators = %v", vs)
	}
}

// TestBlockValidatorUpdates: a block's updates are one per key, the last
// made, ordered by key; a failed transaction's count for nothing.
func TestBlockValidatorUpdates(t *testing.T) {
	k1, k2 := []byte{1}, []byte{2}
	got := app.BlockValidatorUpdates([]app.Result{
		{ValidatorUpdates: []*emrv1.Validator{{PubKey: k2, Power: 5}}},
		{Code: app.ErrInternal.Code(), ValidatorUpdates: []*emrv1.Validator{{PubKey: k1, Power: 9}}},
		{},
		{ValidatorUpdates: []*emrv1.Validator{{PubKey: k1, Power: 3}, {PubKey: k2, Power: 0}}},
	})
	want := []*emrv1.Validator{{PubKey: k1, Power: 3}, {PubKey: k2, Power: 0}}
	if len(got) != len(want) {
		t.Fatalf("updates = %v, want %v", got, want)
	}
	for i := range want {
		if !bytes.Equal(got[i].PubKey, want[i].PubKey) || got[i].Power != want[i].Power {
			t.Fatalf("updates = %v, want %v", got, want)
		}
	}
}

// TestProposalsPage: proposals list oldest first, paged by id.
func TestProposalsPage(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	for i := range 3 {
		c.Must(w.regA, apptest.AddOrganization("org-"+string(rune('a'+i)), apptest.NewActor("reg-page-"+string(rune('a'+i)))))
	}
	var page emrv1.QueryProposalsResponse
	c.Query("Proposals", &emrv1.QueryProposalsRequest{Limit: 2}, &page)
	if len(page.Proposals) != 2 || page.Proposals[0].Id != 1 || page.Proposals[1].Id != 2 || page.Next != 2 {
		t.Fatalf("first page = %v next %d", page.Proposals, page.Next)
	}
	c.Query("Proposals", &emrv1.QueryProposalsRequest{After: page.Next, Limit: 2}, &page)
	if len(page.Proposals) != 1 || page.Proposals[0].Id != 3 || page.Next != 0 {
		t.Fatalf("second page = %v next %d", page.Proposals, page.Next)
	}
	if code := ruleQueryCode(c, "Proposal", &emrv1.QueryProposalRequest{Id: 9}, &emrv1.QueryProposalResponse{}); code != app.ErrNotFound.Code() {
		t.Fatalf("unknown proposal: code %d", code)
	}
}

func hasAttr(res app.Result, key, value string) bool {
	for _, e := range res.Events {
		for _, a := range e.Attributes {
			if a.Key == key && a.Value == value {
				return true
			}
		}
	}
	return false
}
