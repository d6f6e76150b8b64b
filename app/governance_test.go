package app_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	cmted25519 "github.com/cometbft/cometbft/crypto/ed25519"
	cmttypes "github.com/cometbft/cometbft/types"
	"google.golang.org/protobuf/proto"

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
	c.Must(w.regA, apptest.AddValidator(apptest.NewActor("validator-new"), 5))
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
	genesis := []*emrv1.Validator{{PubKey: only, Power: 10}}
	c := apptest.New(t, apptest.Options{Genesis: g, Validators: genesis})
	mirror := newCometSet(genesis)
	reg := apptest.Registrar(apptest.HospitalA)
	ruleCheck(t, "remove the only validator", c.Exec(reg, apptest.SetValidatorPower(only, 0)), app.ErrLastValidator, "only validator")
	second := apptest.NewActor("validator-second")
	ruleCheck(t, "a second validator as strong as the first", c.Exec(reg, apptest.AddValidator(second, 10)), app.ErrTooLarge, "10 of the 20")
	res := c.Must(reg, apptest.AddValidator(second, 4))
	if len(res.ValidatorUpdates) != 1 || res.ValidatorUpdates[0].Power != 4 || len(c.ValidatorUpdates) != 1 {
		t.Fatalf("validator updates %v, to CometBFT %v", res.ValidatorUpdates, c.ValidatorUpdates)
	}
	mirror.apply(t, c)
	ruleCheck(t, "raise it before it signed", c.Exec(reg, apptest.SetValidatorPower(second.SignPub(), 10)), app.ErrTooLarge, "10 of the 20")
	ruleSignBlocks(c, second.Address)                            // its signature in a block under its power
	c.Must(reg, apptest.SetValidatorPower(second.SignPub(), 10)) // 6 unseen of 20
	mirror.apply(t, c)
	ruleCheck(t, "remove the first before the raise is seen", c.Simulate(reg, c.Now, apptest.SetValidatorPower(only, 0)), app.ErrTooLarge, "6 of the 10")
	ruleSignBlocks(c, second.Address)
	c.Must(reg, apptest.SetValidatorPower(only, 0))
	mirror.apply(t, c)
	vs := ruleValidators(c)
	if len(vs) != 1 || !bytes.Equal(vs[0].PubKey, second.SignPub()) || vs[0].Power != 10 {
		t.Fatalf("validators = %v", vs)
	}
}

// cometSet mirrors CometBFT's next validator set: the genesis set, then
// every block's updates applied as CometBFT applies them
// (UpdateWithChangeSet, whose error halts the chain).
type cometSet struct{ vs *cmttypes.ValidatorSet }

func newCometSet(genesis []*emrv1.Validator) *cometSet {
	var vals []*cmttypes.Validator
	for _, v := range genesis {
		vals = append(vals, cmttypes.NewValidator(cmted25519.PubKey(v.PubKey), v.Power))
	}
	return &cometSet{cmttypes.NewValidatorSet(vals)}
}

// apply applies a block's updates and checks the set is then the app's.
func (m *cometSet) apply(t testing.TB, c *apptest.Chain) {
	t.Helper()
	var changes []*cmttypes.Validator
	for _, u := range c.ValidatorUpdates {
		changes = append(changes, cmttypes.NewValidator(cmted25519.PubKey(u.PubKey), u.Power))
	}
	if err := m.vs.UpdateWithChangeSet(changes); err != nil {
		t.Fatalf("block %d: CometBFT refuses the validator updates %v (the chain would halt): %v", c.Height(), c.ValidatorUpdates, err)
	}
	app := ruleValidators(c)
	if len(app) != m.vs.Size() {
		t.Fatalf("block %d: the app holds %d validators, CometBFT %d", c.Height(), len(app), m.vs.Size())
	}
	for _, v := range app {
		_, cv := m.vs.GetByAddress(cmted25519.PubKey(v.PubKey).Address())
		if cv == nil || cv.VotingPower != v.Power {
			t.Fatalf("block %d: validator %X has power %d in the app, %v in CometBFT", c.Height(), v.PubKey, v.Power, cv)
		}
	}
}

// TestAddAndRemoveInOneBlock: a block executes a proposal adding key Y and
// then one removing it. CometBFT hears nothing of Y (it refuses to remove a
// validator it does not have: a chain halt), and a block that changes V3's
// power and back tells it nothing either.
func TestAddAndRemoveInOneBlock(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	mirror := newCometSet(apptest.GenesisValidators())
	y := apptest.NewActor("validator-y")
	c.Must(w.regA, apptest.AddValidator(y, 10))
	c.Must(w.regB, apptest.Approve(1))
	sR := c.Seq(w.regR.Address)
	sB := c.Seq(w.regB.Address)
	_, results := c.Propose(
		w.regR.Tx(apptest.ChainID, sR, apptest.Approve(1)), // executes: Y added
		c.Tx(w.regA, apptest.SetValidatorPower(y.SignPub(), 0)),
		w.regB.Tx(apptest.ChainID, sB, apptest.Approve(2)),
		w.regR.Tx(apptest.ChainID, sR+1, apptest.Approve(2)), // executes: Y removed
	)
	ruleAllOK(t, results)
	if len(results[0].ValidatorUpdates) != 1 || len(results[3].ValidatorUpdates) != 1 {
		t.Fatalf("the two executions: %v, %v", results[0].ValidatorUpdates, results[3].ValidatorUpdates)
	}
	if len(c.ValidatorUpdates) != 0 {
		t.Fatalf("CometBFT is told %v, want nothing", c.ValidatorUpdates)
	}
	mirror.apply(t, c)
}

// TestValidatorDiff: a key whose power changed, one added, one removed;
// unchanged keys are not mentioned; the result is ordered by key.
func TestValidatorDiff(t *testing.T) {
	v := func(k byte, p int64) *emrv1.Validator { return &emrv1.Validator{PubKey: []byte{k}, Power: p} }
	got := app.ValidatorDiffForTest(
		[]*emrv1.Validator{v(1, 10), v(2, 10), v(4, 10)},
		[]*emrv1.Validator{v(1, 10), v(2, 12), v(3, 5)},
	)
	want := []*emrv1.Validator{v(2, 12), v(3, 5), v(4, 0)}
	if len(got) != len(want) {
		t.Fatalf("diff = %v, want %v", got, want)
	}
	for i := range want {
		if !bytes.Equal(got[i].PubKey, want[i].PubKey) || got[i].Power != want[i].Power {
			t.Fatalf("diff = %v, want %v", got, want)
		}
	}
}

// TestOvertakenProposal: a proposal re-weighting V3 waits for its last
// approval while another removes V3. The first no longer executes: V3's
// power is not the one it was proposed from.
func TestOvertakenProposal(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	v3 := apptest.Validator(3).SignPub()
	c.Must(w.regA, apptest.SetValidatorPower(v3, 15))
	if p := ruleProposal(c, 1).Proposal; p.Change.GetSetValidatorPower().FromPower != 10 {
		t.Fatalf("stored change = %v, want from_power 10", p.Change)
	}
	c.Must(w.regB, apptest.Approve(1))
	c.Must(w.regA, apptest.SetValidatorPower(v3, 0)) // its key leaked
	c.Must(w.regB, apptest.Approve(2))
	c.Must(w.regR, apptest.Approve(2))
	ruleCheck(t, "execute the overtaken proposal", c.Exec(w.regR, apptest.Approve(1)), app.ErrProposalClosed,
		"has power 0, 10 when this was proposed")
	if vs := ruleValidators(c); len(vs) != 3 {
		t.Fatalf("validators = %v", vs)
	}
	// A proposal may not set from_power itself.
	m := apptest.SetValidatorPower(v3, 10)
	m.GetPropose().Change.GetSetValidatorPower().FromPower = 10
	ruleCheck(t, "from_power in the message", c.Exec(w.regA, m), app.ErrInvalidMsg, "from_power")
}

// TestUnseenPower: power added stays "unseen" until its validator signs
// a block (its signature in a block's last commit), and changes are
// refused that would put a third or more of the total in unseen power, a
// share whose silence halts the chain: a large addition, two additions
// before the first signs, or removing a validator that signs meanwhile.
func TestUnseenPower(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	y, z := apptest.NewActor("validator-y"), apptest.NewActor("validator-z")
	v0 := apptest.Validator(0).SignPub()
	ruleRun(t, c, c.Now, []ruleCase{
		{"add 20 to 40", w.regA, apptest.AddValidator(y, 20), app.ErrTooLarge, []string{"20 of the 60 voting power would be in validators not yet seen signing"}},
		{"raise V0 by 20", w.regA, apptest.SetValidatorPower(v0, 30), app.ErrTooLarge, []string{"20 of the 60"}},
		{"lower V0", w.regA, apptest.SetValidatorPower(v0, 1), nil, nil},
	})
	w.decide(apptest.AddValidator(y, 19)) // 19 of 59
	ruleRun(t, c, c.Now, []ruleCase{
		{"add Z before Y signs", w.regA, apptest.AddValidator(z, 1), app.ErrTooLarge, []string{"20 of the 60"}},
		{"remove V0 before Y signs", w.regA, apptest.SetValidatorPower(v0, 0), app.ErrTooLarge, []string{"19 of the 49"}},
		{"remove Y itself", w.regA, apptest.SetValidatorPower(y.SignPub(), 0), nil, nil},
	})
	var vs emrv1.QueryValidatorsResponse
	c.Query("Validators", &emrv1.QueryValidatorsRequest{}, &vs)
	for i, v := range vs.Validators {
		if want := map[bool]int64{true: 19}[bytes.Equal(v.PubKey, y.SignPub())]; vs.UnseenPower[i] != want {
			t.Fatalf("Validators: %X unseen %d, want %d", v.PubKey, vs.UnseenPower[i], want)
		}
	}
	// Blocks whose last commit holds others' signatures change nothing;
	// Y's signature counts from the commit of the block two after its
	// addition (CometBFT's set has it from there).
	ruleSignBlocks(c, apptest.Validator(0).Address)
	ruleCheck(t, "add Z after others signed", c.Simulate(w.regA, c.Now, apptest.AddValidator(z, 1)), app.ErrTooLarge)
	ruleSignBlocks(c, apptest.Validator(0).Address, y.Address)
	ruleCheck(t, "add Z after Y signed", c.Simulate(w.regA, c.Now, apptest.AddValidator(z, 20)), nil)
	ruleCheck(t, "remove V0 after Y signed", c.Simulate(w.regA, c.Now, apptest.SetValidatorPower(v0, 0)), nil)
}

// decide has msg proposed by hospital-a's registrar and approved by the
// two other organizations' (three of three).
func (w *ruleWorld) decide(msg *emrv1.Msg) {
	w.c.TB.Helper()
	w.c.Must(w.regA, msg)
	id := ruleProposalsMade(w.c)
	w.c.Must(w.regB, apptest.Approve(id))
	w.c.Must(w.regR, apptest.Approve(id))
}

// ruleSignBlocks makes three blocks whose last commits hold signers'
// signatures: enough for a change made before them to be signed under
// (CometBFT applies a change made at H from H+2).
func ruleSignBlocks(c *apptest.Chain, signers ...[]byte) {
	c.TB.Helper()
	c.Signers = signers
	for range 3 {
		c.Block()
	}
	c.Signers = nil
}

// ruleProposalsMade is the id of the newest proposal.
func ruleProposalsMade(c *apptest.Chain) uint64 {
	c.TB.Helper()
	var resp emrv1.QueryProposalsResponse
	var last uint64
	for after := uint64(0); ; after = resp.Next {
		c.Query("Proposals", &emrv1.QueryProposalsRequest{After: after}, &resp)
		if n := len(resp.Proposals); n > 0 {
			last = resp.Proposals[n-1].Id
		}
		if resp.Next == 0 {
			return last
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

// TestConsortiumSuspendsAMember: once a fourth organization is admitted,
// the other three suspend its registrar without it (three of four), which
// its own organization alone could have done before. Patients are no
// organization's members; a status a member has is not given again.
func TestConsortiumSuspendsAMember(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	regD := apptest.NewActor("registrar-hospital-d")
	c.Must(w.regA, apptest.AddOrganization("hospital-d", regD))
	c.Must(w.regB, apptest.Approve(1))
	c.Must(w.regR, apptest.Approve(1))
	suspended, active := emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE
	ruleRun(t, c, c.Now, []ruleCase{
		{"suspend a patient", w.regA, apptest.ConsortiumSetStatus(w.pat, suspended), app.ErrUnauthorized, []string{"patients are not members"}},
		{"reactivate an active member", w.regA, apptest.ConsortiumSetStatus(regD, active), app.ErrInvalidMsg, []string{"already active"}},
		{"suspend nobody", w.regA, apptest.ConsortiumSetStatus(apptest.NewActor("nobody"), suspended), app.ErrNotFound, []string{"no member"}},
	})
	c.Must(w.regA, apptest.ConsortiumSetStatus(regD, suspended))
	c.Must(w.regB, apptest.Approve(2))
	if m := ruleMember(c, regD.Address); m.Status != active {
		t.Fatalf("suspended after 2 of 4 approvals: %v", m)
	}
	c.Must(w.regR, apptest.Approve(2))
	if m := ruleMember(c, regD.Address); m.Status != suspended {
		t.Fatalf("after 3 of 4 approvals: %v", m)
	}
	ruleCheck(t, "the suspended registrar registers", c.Exec(regD, apptest.RegisterMember(apptest.NewActor("doc-d"), emrv1.Role_ROLE_CLINICIAN, "hospital-d")),
		app.ErrSignerSuspended)
}

// TestConsortiumSuspensionSticks: a member the consortium suspended is
// not reactivated by a registrar of its organization, only by another
// proposal; a registrar cannot propose its own suspension.
func TestConsortiumSuspensionSticks(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	regB2 := w.member("registrar-b-2", emrv1.Role_ROLE_REGISTRAR, apptest.HospitalB)
	suspended, active := emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE
	ruleCheck(t, "propose one's own suspension", c.Exec(w.regA, apptest.ConsortiumSetStatus(w.regA, suspended)), app.ErrInvalidMsg, "its own status")
	c.Must(w.regA, apptest.ConsortiumSetStatus(w.doc2, suspended))
	c.Must(w.regB, apptest.Approve(1))
	c.Must(w.regR, apptest.Approve(1))
	if m := ruleMember(c, w.doc2.Address); m.Status != suspended || !m.SuspendedByConsortium {
		t.Fatalf("after the proposal: %v", m)
	}
	ruleCheck(t, "its organization reactivates it", c.Exec(regB2, apptest.SetStatus(w.doc2, active)), app.ErrUnauthorized, "only a proposal reactivates it")
	c.Must(w.regA, apptest.ConsortiumSetStatus(w.doc2, active))
	c.Must(w.regB, apptest.Approve(2))
	c.Must(w.regR, apptest.Approve(2))
	if m := ruleMember(c, w.doc2.Address); m.Status != active || m.SuspendedByConsortium {
		t.Fatalf("after the second proposal: %v", m)
	}
	// Suspended by its registrar, it is its registrars' to reactivate.
	c.Must(regB2, apptest.SetStatus(w.doc2, suspended))
	c.Must(w.regB, apptest.SetStatus(w.doc2, active))
}

// TestAddRegistrarRecovers: the consortium suspends the only registrar
// of a fourth organization without it (three of four). That organization
// can approve nothing now and no longer counts, so three organizations
// decide, and they seat a new registrar for it, who registers its staff.
// The organization must exist and the key be nobody's.
func TestAddRegistrarRecovers(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	regD := apptest.NewActor("registrar-hospital-d")
	c.Must(w.regA, apptest.AddOrganization("hospital-d", regD))
	c.Must(w.regB, apptest.Approve(1))
	c.Must(w.regR, apptest.Approve(1))
	c.Must(w.regA, apptest.ConsortiumSetStatus(regD, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
	c.Must(w.regB, apptest.Approve(2))
	c.Must(w.regR, apptest.Approve(2))
	newD := apptest.NewActor("registrar-d-new")
	ruleRun(t, c, c.Now, []ruleCase{
		{"no such organization", w.regA, apptest.AddRegistrar("hospital-z", newD), app.ErrNotFound, []string{"no organization"}},
		{"a member's key", w.regA, apptest.AddRegistrar("hospital-d", w.doc), app.ErrAlreadyExists, []string{"already a clinician"}},
	})
	c.Must(w.regA, apptest.AddRegistrar("hospital-d", newD))
	if p := ruleProposal(c, 3); p.Organizations != 3 || p.Proposal.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN {
		t.Fatalf("proposal 3 = %v, of %d organizations that can approve; want open, of 3", p.Proposal, p.Organizations)
	}
	c.Must(w.regB, apptest.Approve(3))
	if p := ruleProposal(c, 3).Proposal; p.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN {
		t.Fatalf("2 of 3 executed it: %v", p)
	}
	c.Must(w.regR, apptest.Approve(3))
	c.Must(newD, apptest.RegisterMember(apptest.NewActor("doc-d"), emrv1.Role_ROLE_CLINICIAN, "hospital-d"))
	if p := ruleProposal(c, 3); p.Organizations != 4 {
		t.Fatalf("hospital-d has a registrar again: %d organizations can approve, want 4", p.Organizations)
	}
}

// TestOvertakenThereAndBack: "V3 from 10 to 15" waits while V3 is removed
// and added again at 10: the power is the one it was proposed from, but
// the key changed after the proposal, so it no longer executes.
func TestOvertakenThereAndBack(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	c.Signers = nil
	v3 := apptest.Validator(3).SignPub()
	c.Must(w.regA, apptest.SetValidatorPower(v3, 13)) // proposal 1
	c.Must(w.regB, apptest.Approve(1))
	w.decide(apptest.SetValidatorPower(v3, 0)) // proposal 2: removed
	// Proposal 3: back at 10, with V3's possession for its one change.
	w.decide(apptest.AddValidatorAt(apptest.Validator(3), 10, c.ValidatorChanges(v3)))
	ruleCheck(t, "execute the overtaken proposal", c.Exec(w.regR, apptest.Approve(1)), app.ErrProposalClosed,
		"was changed 2 times since this was proposed")
}

// TestSuspendedApproverNoLongerCounts: an approval counts only while the
// registrar who gave it is active; its organization may then approve
// again through another registrar.
func TestSuspendedApproverNoLongerCounts(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	regB2 := w.member("registrar-b-2", emrv1.Role_ROLE_REGISTRAR, apptest.HospitalB)
	c.Must(w.regA, apptest.AddValidator(apptest.NewActor("validator-y"), 5))
	c.Must(w.regB, apptest.Approve(1))
	c.Must(regB2, apptest.SetStatus(w.regB, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
	res := c.Must(w.regR, apptest.Approve(1))
	if len(res.ValidatorUpdates) != 0 {
		t.Fatalf("executed with the suspended registrar's approval: %v", res.ValidatorUpdates)
	}
	res = c.Must(regB2, apptest.Approve(1))
	if len(res.ValidatorUpdates) != 1 {
		t.Fatalf("hospital-b approving anew did not execute it: %v", ruleProposal(c, 1).Proposal)
	}
	if p := ruleProposal(c, 1).Proposal; len(p.Approvals) != 3 || !bytes.Equal(p.Approvers[2], regB2.Address) {
		t.Fatalf("approvals %v by %X", p.Approvals, p.Approvers)
	}
}

// The tests below are a third review's (each failed before its fix).

// TestOldProposalDoesNotReaddARemovedKey: "add Y" waits while Y is added
// and then removed (its key leaked): the removal leaves no validator
// record, but the key's count of changes stays, so the old proposal does
// not put Y back.
func TestOldProposalDoesNotReaddARemovedKey(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	y := apptest.NewActor("validator-y")
	c.Must(w.regA, apptest.AddValidator(y, 5)) // proposal 1, from 0
	c.Must(w.regB, apptest.Approve(1))
	w.decide(apptest.AddValidator(y, 5))                // proposal 2: added
	w.decide(apptest.SetValidatorPower(y.SignPub(), 0)) // proposal 3: removed (key leaked)
	ruleCheck(t, "proposal 1, made before Y was added and removed", c.Exec(w.regR, apptest.Approve(1)), app.ErrProposalClosed,
		"another change overtook it")
}

// TestThereAndBackInOneBlock: a proposal made in a block where V3 then
// goes 10→0→10 does not execute (a height would not tell; the count does).
func TestThereAndBackInOneBlock(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	v3 := apptest.Validator(3).SignPub()
	c.Must(w.regA, apptest.SetValidatorPower(v3, 0)) // proposal 1: remove
	c.Must(w.regB, apptest.Approve(1))
	sa, sb, sr := c.Seq(w.regA.Address), c.Seq(w.regB.Address), c.Seq(w.regR.Address)
	ruleAllOK(t, c.Block(
		w.regA.Tx(apptest.ChainID, sa, apptest.SetValidatorPower(v3, 13)),                     // proposal 2, from 10
		w.regR.Tx(apptest.ChainID, sr, apptest.Approve(1)),                                    // removed
		w.regA.Tx(apptest.ChainID, sa+1, apptest.AddValidatorAt(apptest.Validator(3), 10, 1)), // proposal 3 (V3 removed once: change count 1)
		w.regB.Tx(apptest.ChainID, sb, apptest.Approve(3)),
		w.regR.Tx(apptest.ChainID, sr+1, apptest.Approve(3)), // back at 10
	))
	c.Must(w.regB, apptest.Approve(2))
	ruleCheck(t, "proposal 2, made before V3 went 10→0→10 in the same block", c.Exec(w.regR, apptest.Approve(2)), app.ErrProposalClosed,
		"changed 2 times since this was proposed")
}

// TestConsortiumSuspensionOfASuspendedMember: the member's organization
// suspends it before the consortium's proposal executes; the proposal
// still executes and marks it, so the organization cannot reactivate it.
func TestConsortiumSuspensionOfASuspendedMember(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	regB2 := w.member("registrar-b-2", emrv1.Role_ROLE_REGISTRAR, apptest.HospitalB)
	suspended, active := emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE
	c.Must(w.regA, apptest.ConsortiumSetStatus(w.doc2, suspended))
	c.Must(w.regR, apptest.Approve(1))
	c.Must(regB2, apptest.SetStatus(w.doc2, suspended)) // its organization first
	c.Must(w.regB, apptest.Approve(1))                  // the consortium's suspension still executes
	if m := ruleMember(c, w.doc2.Address); m.Status != suspended || !m.SuspendedByConsortium {
		t.Fatalf("after the proposal: %v", m)
	}
	ruleCheck(t, "its organization reactivates it", c.Exec(regB2, apptest.SetStatus(w.doc2, active)), app.ErrUnauthorized, "only a proposal")
	// Suspended by the consortium now, a suspension by proposal changes
	// nothing, and is refused as one.
	ruleCheck(t, "the consortium suspends it again", c.Simulate(w.regA, c.Now, apptest.ConsortiumSetStatus(w.doc2, suspended)), app.ErrInvalidMsg,
		"is already suspended")
}

// TestAddRegistrarOnlyWithoutOne: a registrar is seated by proposal only
// in an organization without an active registrar (one that has one
// registers its own).
func TestAddRegistrarOnlyWithoutOne(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	ruleCheck(t, "seat a registrar in an organization that has one", c.Exec(w.regA, apptest.AddRegistrar(apptest.HospitalB, apptest.NewActor("planted"))),
		app.ErrAlreadyExists, `"hospital-b" has an active registrar`)
}

// TestFewerOrganizationsCarryAProposal: when the organizations that can
// approve become fewer, a proposal every remaining one approved carries;
// approving it again executes it.
func TestFewerOrganizationsCarryAProposal(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	regD, regE := apptest.NewActor("registrar-hospital-d"), apptest.NewActor("registrar-hospital-e")
	c.Must(w.regA, apptest.AddOrganization("hospital-d", regD)) // 1
	c.Must(w.regB, apptest.Approve(1))
	c.Must(w.regR, apptest.Approve(1))
	c.Must(w.regA, apptest.AddOrganization("hospital-e", regE)) // 2
	c.Must(w.regB, apptest.Approve(2))
	c.Must(w.regR, apptest.Approve(2))
	c.Must(w.regA, apptest.AddValidator(apptest.NewActor("validator-y"), 1)) // 3: A, B, R = 3 of 5
	c.Must(w.regB, apptest.Approve(3))
	c.Must(w.regR, apptest.Approve(3))
	suspended := emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED
	c.Must(w.regA, apptest.ConsortiumSetStatus(regE, suspended)) // 4
	c.Must(w.regB, apptest.Approve(4))
	c.Must(w.regR, apptest.Approve(4))
	c.Must(regD, apptest.Approve(4))
	c.Must(w.regA, apptest.ConsortiumSetStatus(regD, suspended)) // 5: 3 of 4
	c.Must(w.regB, apptest.Approve(5))
	c.Must(w.regR, apptest.Approve(5))
	p := ruleProposal(c, 3)
	t.Logf("proposal 3: %v approvals %v of %d organizations that can approve", p.Proposal.Status, p.Proposal.Approvals, p.Organizations)
	for _, r := range []*apptest.Actor{w.regA, w.regB, w.regR} {
		res := c.Exec(r, apptest.Approve(3))
		t.Logf("%s approves: ok=%v %s", r.Name, res.OK(), res.Log)
	}
	if ruleProposal(c, 3).Proposal.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED {
		t.Errorf("approved by all 3 organizations that can approve, yet nobody can execute it")
	}
}

// TestStaleSignatureDoesNotClearUnseen: a validator removed and added
// again within two blocks keeps its new power unseen although the next
// blocks carry its signature: those were signed before the change.
func TestStaleSignatureDoesNotClearUnseen(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	v3 := apptest.Validator(3)
	w.decide(apptest.SetValidatorPower(v3.SignPub(), 0))
	// The next blocks still carry V3's signature (it leaves CometBFT's set two blocks later).
	c.Signers = [][]byte{apptest.Validator(0).Address, v3.Address}
	w.decide(apptest.AddValidatorAt(v3, 14, c.ValidatorChanges(v3.SignPub())))
	var vs emrv1.QueryValidatorsResponse
	c.Query("Validators", &emrv1.QueryValidatorsRequest{}, &vs)
	t.Logf("unseen %v", vs.UnseenPower)
	for i, v := range vs.Validators {
		if string(v.PubKey) == string(v3.SignPub()) && vs.UnseenPower[i] == 0 {
			t.Errorf("re-added V3's 14 counted as seen from a signature older than the re-addition")
		}
	}
}

// TestNoSuspensionLeavesNobodyToApprove: a registrar cannot approve a
// change of its own status, so the last registrar of a two-organization
// consortium's second organization cannot be suspended without it, and
// governance cannot be left to nobody.
func TestNoSuspensionLeavesNobodyToApprove(t *testing.T) {
	g := apptest.Consortium()
	g.Organizations, g.Members = g.Organizations[:2], g.Members[:2]
	c := apptest.New(t, apptest.Options{Genesis: g})
	x, y := apptest.Registrar(apptest.HospitalA), apptest.Registrar(apptest.HospitalB)
	c.Must(x, apptest.ConsortiumSetStatus(y, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED))
	ruleCheck(t, "approve one's own suspension", c.Exec(y, apptest.Approve(1)), app.ErrInvalidMsg, "its own status")
	if p := ruleProposal(c, 1); p.Proposal.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN || p.Organizations != 2 {
		t.Fatalf("proposal 1 = %v of %d organizations", p.Proposal, p.Organizations)
	}
}

// registerFifty has hospital A's registrar register fifty new members of
// role in one block, and returns them.
func (w *ruleWorld) registerFifty(t *testing.T, role emrv1.Role) []*apptest.Actor {
	t.Helper()
	var txs [][]byte
	var fifty []*apptest.Actor
	seq := w.c.Seq(w.regA.Address)
	for i := range 50 {
		who := apptest.NewActor(fmt.Sprintf("%s-%d", role, i))
		fifty = append(fifty, who)
		txs = append(txs, w.regA.Tx(apptest.ChainID, seq+uint64(i), apptest.RegisterMember(who, role, apptest.HospitalA)))
	}
	ruleAllOK(t, w.c.Block(txs...))
	return fifty
}

// proposalProofs is how many proofs a verified read of proposal 1 has.
func proposalProofs(c *apptest.Chain) int {
	var resp emrv1.QueryProposalResponse
	c.QueryProven("Proposal", &emrv1.QueryProposalRequest{Id: 1}, &resp)
	return len(resp.Proofs)
}

// TestProposalProofsDoNotGrowWithStaff: a verified Proposal read proves
// the organizations that can approve from the registrar index, so fifty
// more clinicians add no proof.
func TestProposalProofsDoNotGrowWithStaff(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	c.Must(w.regA, apptest.AddValidator(apptest.NewActor("y"), 1))
	before := proposalProofs(c)
	w.registerFifty(t, emrv1.Role_ROLE_CLINICIAN)
	if after := proposalProofs(c); after != before {
		t.Fatalf("Proposal's proofs went from %d to %d with fifty clinicians", before, after)
	}
}

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
	before := proposalProofs(c)
	fifty := w.registerFifty(t, emrv1.Role_ROLE_REGISTRAR)
	var txs [][]byte
	seq := c.Seq(w.regA.Address)
	for i, r := range fifty {
		txs = append(txs, w.regA.Tx(apptest.ChainID, seq+uint64(i), apptest.SetStatus(r, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)))
	}
	ruleAllOK(t, c.Block(txs...))
	if after := proposalProofs(c); after != before {
		t.Fatalf("Proposal's proofs went from %d to %d with fifty suspended registrars", before, after)
	}
}

// TestProposalProofsDoNotGrowWithRegistrars: the organizations that can
// approve are read one active registrar each, so a registrar who registers
// fifty more in its own organization makes a verified Proposal read (and
// every proposal's check) no longer.
func TestProposalProofsDoNotGrowWithRegistrars(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	c.Must(w.regA, apptest.AddValidator(apptest.NewActor("y"), 1))
	proofs := func() (int, uint32) {
		var resp emrv1.QueryProposalResponse
		c.QueryProven("Proposal", &emrv1.QueryProposalRequest{Id: 1}, &resp)
		return len(resp.Proofs), resp.Organizations
	}
	before, orgs := proofs()
	w.registerFifty(t, emrv1.Role_ROLE_REGISTRAR)
	if after, o := proofs(); after != before || o != orgs {
		t.Fatalf("Proposal's proofs went from %d to %d with fifty more registrars (organizations %d, then %d)", before, after, orgs, o)
	}
}

// TestStaleReactivation: a reactivation proposed while the consortium's
// suspension stood does not execute after the member was reactivated and
// suspended anew (a new reason the vote did not weigh).
func TestStaleReactivation(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	suspended, active := emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE
	w.decide(apptest.ConsortiumSetStatus(w.doc2, suspended))    // proposal 1
	c.Must(w.regA, apptest.ConsortiumSetStatus(w.doc2, active)) // proposal 2, waiting
	c.Must(w.regB, apptest.Approve(2))
	w.decide(apptest.ConsortiumSetStatus(w.doc2, active))    // proposal 3: reactivated
	w.decide(apptest.ConsortiumSetStatus(w.doc2, suspended)) // proposal 4: suspended anew
	ruleCheck(t, "the stale reactivation", c.Exec(w.regR, apptest.Approve(2)), app.ErrProposalClosed, "changed 2 times since this reactivation was proposed")
	if m := ruleMember(c, w.doc2.Address); m.Status != suspended || m.StatusChanges != 3 {
		t.Fatalf("member = %v", m)
	}
}

// TestGovernanceMessagesWithNilParts: a Go caller's message with a nil
// part inside a oneof is refused as invalid, not a panic.
func TestGovernanceMessagesWithNilParts(t *testing.T) {
	propose := func(c *emrv1.ConsortiumChange) *emrv1.Msg {
		return &emrv1.Msg{Sum: &emrv1.Msg_Propose{Propose: &emrv1.MsgPropose{Reason: "r", Change: c}}}
	}
	for name, msg := range map[string]*emrv1.Msg{
		"approve":             {Sum: &emrv1.Msg_Approve{}},
		"withdraw":            {Sum: &emrv1.Msg_Withdraw{}},
		"set params":          propose(&emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetParams{}}),
		"propose":             {Sum: &emrv1.Msg_Propose{}},
		"add organization":    propose(&emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_AddOrganization{}}),
		"organization":        propose(&emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_AddOrganization{AddOrganization: &emrv1.AddOrganization{}}}),
		"set validator power": propose(&emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetValidatorPower{}}),
		"set member status":   propose(&emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetMemberStatus{}}),
		"add registrar":       propose(&emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_AddRegistrar{}}),
	} {
		if err := app.ValidateMsg(msg); app.CodeOf(err) != app.ErrInvalidMsg.Code() {
			t.Errorf("%s: %v, want an invalid message", name, err)
		}
	}
}

// TestUnseenClearsFromTwoBlocksAfter: a signature counts for a change made
// at height H only in the last commit of block H+3 (the commit of H+2, the
// first block CometBFT signs with the new set); those of H+1 and H+2 do
// not clear it.
func TestUnseenClearsFromTwoBlocksAfter(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	y := apptest.NewActor("validator-y")
	c.Must(w.regA, apptest.AddValidator(y, 4))
	c.Must(w.regB, apptest.Approve(1))
	c.Must(w.regR, apptest.Approve(1)) // executed at H
	unseen := func() int64 {
		var vs emrv1.QueryValidatorsResponse
		c.Query("Validators", &emrv1.QueryValidatorsRequest{}, &vs)
		for i, v := range vs.Validators {
			if bytes.Equal(v.PubKey, y.SignPub()) {
				return vs.UnseenPower[i]
			}
		}
		t.Fatal("Y is not a validator")
		return 0
	}
	c.Signers = [][]byte{y.Address}
	for i, want := range []int64{4, 4, 0} { // blocks H+1, H+2, H+3
		c.Block()
		if got := unseen(); got != want {
			t.Fatalf("block H+%d with Y's signature: unseen %d, want %d", i+1, got, want)
		}
	}
}

// ruleValidatorSet is n validators of power 10, the keys of actors
// "validator-0" to "validator-<n-1>" (GenesisValidators' first four).
func ruleValidatorSet(n int) []*emrv1.Validator {
	out := make([]*emrv1.Validator, n)
	for i := range out {
		out[i] = &emrv1.Validator{PubKey: apptest.Validator(i).SignPub(), Power: 10}
	}
	return out
}

// ruleInitChain runs InitChain of the test consortium with validators on
// a new app over an in-memory store, and returns its error (apptest.New
// fails the test on one).
func ruleInitChain(t *testing.T, validators []*emrv1.Validator) error {
	t.Helper()
	return initChainWith(t, apptest.Consortium(), validators, nil)
}

// TestGenesisValidatorsAtMostMaxValidators: a genesis of MaxValidators
// validators starts a chain; one more is refused at InitChain.
func TestGenesisValidatorsAtMostMaxValidators(t *testing.T) {
	c := apptest.New(t, apptest.Options{Validators: ruleValidatorSet(app.MaxValidators)})
	if vs := ruleValidators(c); len(vs) != app.MaxValidators {
		t.Fatalf("a genesis of %d validators started a chain of %d", app.MaxValidators, len(vs))
	}
	err := ruleInitChain(t, ruleValidatorSet(app.MaxValidators+1))
	if app.CodeOf(err) != app.ErrInvalidGenesis.Code() || !strings.Contains(err.Error(), fmt.Sprintf("%d validators, at most %d", app.MaxValidators+1, app.MaxValidators)) {
		t.Fatalf("InitChain with %d validators: %v, want an invalid genesis", app.MaxValidators+1, err)
	}
}

// TestGenesisValidatorListedTwice: InitChain refuses a validator set that
// names a key twice, whatever the powers, rather than keep one of the
// entries: CometBFT refuses such a set too, and the state's set must be
// CometBFT's.
func TestGenesisValidatorListedTwice(t *testing.T) {
	v0, v1 := apptest.Validator(0).SignPub(), apptest.Validator(1).SignPub()
	for name, validators := range map[string][]*emrv1.Validator{
		"same power":      {{PubKey: v0, Power: 10}, {PubKey: v1, Power: 10}, {PubKey: v0, Power: 10}},
		"different power": {{PubKey: v0, Power: 10}, {PubKey: v1, Power: 10}, {PubKey: v0, Power: 7}},
	} {
		t.Run(name, func(t *testing.T) {
			var cmt []*cmttypes.Validator
			for _, v := range validators {
				cmt = append(cmt, cmttypes.NewValidator(cmted25519.PubKey(v.PubKey), v.Power))
			}
			if err := (&cmttypes.ValidatorSet{}).UpdateWithChangeSet(cmt); err == nil {
				t.Fatal("CometBFT accepts this set: the case tests nothing")
			}
			err := ruleInitChain(t, validators)
			if app.CodeOf(err) != app.ErrInvalidGenesis.Code() || !strings.Contains(err.Error(), app.ValidatorKeyText(v0)+" listed twice") {
				t.Fatalf("InitChain with validator 0 twice: %v, want an invalid genesis naming it", err)
			}
		})
	}
}

// TestProposalsKeepAtMostMaxValidators: with MaxValidators validators, a
// proposal adding one more is refused, and so is the execution of one
// proposed while there was room; a change of an existing validator's
// power still passes, and once a validator leaves, the waiting addition
// executes.
func TestProposalsKeepAtMostMaxValidators(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{Validators: ruleValidatorSet(app.MaxValidators - 1)})
	c := w.c
	y, z := apptest.NewActor("validator-y"), apptest.NewActor("validator-z")
	c.Must(w.regA, apptest.AddValidator(y, 1)) // proposal 1, made with room for one
	c.Must(w.regB, apptest.Approve(1))
	w.decide(apptest.AddValidator(z, 1)) // proposal 2 takes the room
	if n := len(ruleValidators(c)); n != app.MaxValidators {
		t.Fatalf("%d validators, want %d", n, app.MaxValidators)
	}
	full := fmt.Sprintf("the chain has %d validators, the most it may have", app.MaxValidators)
	ruleRun(t, c, c.Now, []ruleCase{
		{"add a validator to a full set", w.regA, apptest.AddValidator(apptest.NewActor("validator-x"), 1), app.ErrTooLarge, []string{full}},
		{"re-weight a validator of a full set", w.regA, apptest.SetValidatorPower(apptest.Validator(0).SignPub(), 11), nil, nil},
	})
	ruleCheck(t, "execute the addition proposed with room", c.Exec(w.regR, apptest.Approve(1)), app.ErrTooLarge, "proposal 1 cannot execute", full)
	if n := len(ruleValidators(c)); n != app.MaxValidators {
		t.Fatalf("%d validators after the refused addition, want %d", n, app.MaxValidators)
	}
	w.decide(apptest.SetValidatorPower(apptest.Validator(5).SignPub(), 0)) // proposal 3: one leaves
	res := c.Must(w.regR, apptest.Approve(1))
	if len(res.ValidatorUpdates) != 1 || !bytes.Equal(res.ValidatorUpdates[0].PubKey, y.SignPub()) || len(ruleValidators(c)) != app.MaxValidators {
		t.Fatalf("the addition after a validator left: updates %v, %d validators", res.ValidatorUpdates, len(ruleValidators(c)))
	}
}

// TestProposeFromFieldsAreTheChainsToSet: from_power, from_changes and
// from_status_changes are what the chain records when a proposal is made;
// a MsgPropose that sets them is refused, even with the values the chain
// would record, and one that leaves them 0 is stored with the chain's.
func TestProposeFromFieldsAreTheChainsToSet(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	v3 := apptest.Validator(3).SignPub()
	w.decide(apptest.SetValidatorPower(v3, 12))                                               // V3: power 12, changed once
	w.decide(apptest.ConsortiumSetStatus(w.doc2, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)) // doc2: status changed once
	reweigh := func(fromPower int64, fromChanges uint64) *emrv1.Msg {
		m := apptest.SetValidatorPower(v3, 15)
		set := m.GetPropose().Change.GetSetValidatorPower()
		set.FromPower, set.FromChanges = fromPower, fromChanges
		return m
	}
	reactivate := func(fromStatusChanges uint64) *emrv1.Msg {
		m := apptest.ConsortiumSetStatus(w.doc2, emrv1.MemberStatus_MEMBER_STATUS_ACTIVE)
		m.GetPropose().Change.GetSetMemberStatus().FromStatusChanges = fromStatusChanges
		return m
	}
	ruleRun(t, c, c.Now, []ruleCase{
		{"from_power as the chain would set it", w.regA, reweigh(12, 0), app.ErrInvalidMsg, []string{"from_power and from_changes are the chain's to set"}},
		{"from_changes as the chain would set it", w.regA, reweigh(0, 1), app.ErrInvalidMsg, []string{"from_power and from_changes are the chain's to set"}},
		{"from_changes of another count", w.regA, reweigh(0, 7), app.ErrInvalidMsg, []string{"from_power and from_changes are the chain's to set"}},
		{"from_status_changes as the chain would set it", w.regA, reactivate(1), app.ErrInvalidMsg, []string{"from_status_changes is the chain's to set"}},
		{"from_status_changes of another count", w.regA, reactivate(7), app.ErrInvalidMsg, []string{"from_status_changes is the chain's to set"}},
	})
	c.Must(w.regA, reweigh(0, 0))
	if set := ruleProposal(c, ruleProposalsMade(c)).Proposal.Change.GetSetValidatorPower(); set.FromPower != 12 || set.FromChanges != 1 {
		t.Fatalf("stored validator change %v, want from_power 12 and from_changes 1", set)
	}
	c.Must(w.regA, reactivate(0))
	if set := ruleProposal(c, ruleProposalsMade(c)).Proposal.Change.GetSetMemberStatus(); set.FromStatusChanges != 1 {
		t.Fatalf("stored status change %v, want from_status_changes 1", set)
	}
}

// TestSecondRegistrarOfAnOrganizationApprovesOnce: approvals are counted
// by organization, so a second active registrar of an organization that
// approved (the proposer's or another) adds nothing: it is refused, the
// proposal keeps one approval of that organization and stays open, and
// it takes the third organization to carry it. Within one block too.
func TestSecondRegistrarOfAnOrganizationApprovesOnce(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	regA2 := w.member("registrar-a-2", emrv1.Role_ROLE_REGISTRAR, apptest.HospitalA)
	regB2 := w.member("registrar-b-2", emrv1.Role_ROLE_REGISTRAR, apptest.HospitalB)
	c.Must(w.regA, apptest.AddValidator(apptest.NewActor("validator-y"), 1)) // proposal 1: hospital-a approves
	c.Must(w.regB, apptest.Approve(1))
	ruleRun(t, c, c.Now, []ruleCase{
		{"the proposer's organization's second registrar", regA2, apptest.Approve(1), app.ErrAlreadyExists, []string{`"hospital-a" has approved proposal 1 already`}},
		{"an approving organization's second registrar", regB2, apptest.Approve(1), app.ErrAlreadyExists, []string{`"hospital-b" has approved proposal 1 already`}},
	})
	ruleCheck(t, "hospital-b's second registrar approves", c.Exec(regB2, apptest.Approve(1)), app.ErrAlreadyExists)
	p := ruleProposal(c, 1).Proposal
	if p.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN || !slices.Equal(p.Approvals, []string{apptest.HospitalA, apptest.HospitalB}) ||
		len(p.Approvers) != 2 || !bytes.Equal(p.Approvers[1], w.regB.Address) || len(ruleValidators(c)) != 4 {
		t.Fatalf("after two registrars of hospital-b approved: %v, %d validators; want open with the approvals of hospital-a and hospital-b", p, len(ruleValidators(c)))
	}
	if res := c.Must(w.regR, apptest.Approve(1)); len(res.ValidatorUpdates) != 1 {
		t.Fatalf("the third organization's approval did not execute proposal 1: %v", ruleProposal(c, 1).Proposal)
	}

	// Both registrars of hospital-b in one block: the second is refused.
	c.Must(w.regA, apptest.AddValidator(apptest.NewActor("validator-z"), 1)) // proposal 2
	results := c.Block(ruleSigned(c, w.regB, apptest.Approve(2))[0], ruleSigned(c, regB2, apptest.Approve(2))[0])
	ruleCheck(t, "hospital-b's first registrar, in the block", results[0], nil)
	ruleCheck(t, "hospital-b's second registrar, in the same block", results[1], app.ErrAlreadyExists, `"hospital-b" has approved proposal 2 already`)
	if p := ruleProposal(c, 2).Proposal; p.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN || len(p.Approvals) != 2 {
		t.Fatalf("proposal 2 after both registrars of hospital-b approved in one block: %v", p)
	}
}

// TestParamsChangeByProposal: the consortium changes its params by
// proposal, checked as at genesis and without removing a record category.
// The new params apply from the block after the one that executes the
// proposal (every transaction of a block runs under the same params), in
// CheckTx from that block's commit, and after a restart. A params proposal
// made before another params change executed never executes: it would
// undo that change unseen.
func TestParamsChangeByProposal(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{Dir: t.TempDir()})
	c := w.c
	params := func() *emrv1.Params {
		t.Helper()
		var resp emrv1.QueryParamsResponse
		c.Query("Params", &emrv1.QueryParamsRequest{}, &resp)
		return resp.Params
	}
	before := params()
	changed := func(change func(p *emrv1.Params)) *emrv1.Params {
		p := proto.Clone(before).(*emrv1.Params)
		change(p)
		return p
	}
	withGenomics := changed(func(p *emrv1.Params) { p.Categories = append(p.Categories, "genomics") })
	ruleRun(t, c, c.Now, []ruleCase{
		{"clinician proposes", w.doc, apptest.SetParams(withGenomics, 0), app.ErrUnauthorized, []string{"only a registrar"}},
		{"no params", w.regA, apptest.SetParams(nil, 0), app.ErrInvalidMsg, []string{"params missing"}},
		{"below a floor", w.regA, apptest.SetParams(changed(func(p *emrv1.Params) { p.MaxTxBytes = 1023 }), 0), app.ErrInvalidMsg, []string{"max_tx_bytes is 1023"}},
		{"above a ceiling", w.regA, apptest.SetParams(changed(func(p *emrv1.Params) { p.MaxPageSize = 1001 }), 0), app.ErrInvalidMsg, []string{"max_page_size is 1001"}},
		{"a category listed twice", w.regA, apptest.SetParams(changed(func(p *emrv1.Params) { p.Categories = append(p.Categories, p.Categories[0]) }), 0), app.ErrInvalidMsg, []string{"listed twice"}},
		{"a category removed", w.regA, apptest.SetParams(changed(func(p *emrv1.Params) { p.Categories = p.Categories[1:] }), 0), app.ErrInvalidMsg, []string{`category "history-and-physical" cannot be removed`}},
		{"the params there are", w.regA, apptest.SetParams(before, 0), app.ErrAlreadyExists, []string{"are these already"}},
		{"from_changes ahead of the chain's", w.regA, apptest.SetParams(withGenomics, 1), app.ErrProposalClosed, []string{"the params were changed 0 times, not 1"}},
		{"from_params set", w.regA, func() *emrv1.Msg {
			m := apptest.SetParams(withGenomics, 0)
			m.GetPropose().Change.GetSetParams().FromParams = before
			return m
		}(), app.ErrInvalidMsg, []string{"from_params is the chain's to set"}},
	})

	c.Must(w.regA, apptest.SetParams(withGenomics, 0)) // proposal 1
	c.Must(w.regB, apptest.Approve(1))
	if p := ruleProposal(c, 1); !proto.Equal(p.Proposal.GetChange().GetSetParams().GetFromParams(), before) {
		t.Fatalf("proposal 1 records the params it replaces as %v, want %v", p.Proposal.GetChange().GetSetParams().GetFromParams(), before)
	}
	c.Must(w.regA, apptest.SetParams(changed(func(p *emrv1.Params) { p.MaxPageSize = 50 }), 0)) // proposal 2, made before 1 executes
	c.Must(w.regB, apptest.Approve(2))
	if p := params(); !proto.Equal(p, before) {
		t.Fatalf("params changed by 2 of 3 approvals: %v", p)
	}
	// The approval that executes proposal 1, and a record of the new
	// category after it in the same block: that block's params still
	// know no such category.
	results := c.Block(c.Tx(w.regR, apptest.Approve(1)), c.Tx(w.pat, apptest.AddRecord(w.pid, "genomics", "g1")))
	ruleCheck(t, "the executing approval", results[0], nil)
	ruleCheck(t, "a record of the new category in the block that executes it", results[1], app.ErrUnknownCategory, `"genomics"`)
	if p := params(); !proto.Equal(p, withGenomics) {
		t.Fatalf("params after proposal 1 executed: %v", p)
	}
	if res := c.App.CheckTx(c.Tx(w.pat, apptest.AddRecord(w.pid, "genomics", "g1")), false); !res.OK() {
		t.Fatalf("CheckTx of a record of the new category after the commit: code %d: %s", res.Code, res.Log)
	}
	c.Must(w.pat, apptest.AddRecord(w.pid, "genomics", "g1"))
	ruleCheck(t, "approving a params proposal overtaken by another", c.Exec(w.regR, apptest.Approve(2)), app.ErrProposalClosed,
		"the params were changed 1 times since this was proposed")
	if p := ruleProposal(c, 2); p.Proposal.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN || len(p.Proposal.Approvals) != 2 {
		t.Fatalf("the overtaken proposal after a refused approval: %v", p.Proposal)
	}
	// A proposal built from the params read before proposal 1 executed
	// would undo it: refused. A new one is made against the params there
	// are now.
	ruleCheck(t, "a proposal from params read before the change", c.Exec(w.regA, apptest.SetParams(changed(func(p *emrv1.Params) { p.MaxPageSize = 50 }), 0)),
		app.ErrProposalClosed, "the params were changed 1 times since")
	c.Must(w.regA, apptest.SetParams(changed(func(p *emrv1.Params) {
		p.Categories = withGenomics.Categories
		p.MaxPageSize = 50
	}), 1))
	c.Must(w.regB, apptest.Approve(3))
	c.Must(w.regR, apptest.Approve(3))
	if p := ruleProposal(c, 3); p.Proposal.GetChange().GetSetParams().GetFromChanges() != 1 || p.Proposal.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED {
		t.Fatalf("proposal 3: %v", p.Proposal)
	}
	want := params()
	if want.MaxPageSize != 50 || !proto.Equal(c.App.Params(), want) {
		t.Fatalf("params after proposal 3: state %v, app %v", want, c.App.Params())
	}
	c = c.Reopen()
	if !proto.Equal(c.App.Params(), want) {
		t.Fatalf("params after a restart: %v, want %v", c.App.Params(), want)
	}
}

// TestOrganizationProofsDoNotGrowWithStaff: emrcli judges an open
// AddRegistrar proposal by a verified Organization read (its registrars,
// active or not), for every listing and every propose/approve read-back;
// like a Proposal read, its proofs must not grow with the clinicians.
func TestOrganizationProofsDoNotGrowWithStaff(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	proofs := func() (int, int) {
		var resp emrv1.QueryOrganizationResponse
		c.QueryProven("Organization", &emrv1.QueryOrganizationRequest{Id: apptest.HospitalA}, &resp)
		return len(resp.Proofs), len(resp.Registrars)
	}
	before, registrars := proofs()
	w.registerFifty(t, emrv1.Role_ROLE_CLINICIAN)
	if after, r := proofs(); after != before || r != registrars {
		t.Fatalf("Organization's proofs went from %d to %d with fifty clinicians (registrars %d, then %d)", before, after, registrars, r)
	}
}

// TestWithdrawProposal: the registrar who made an open proposal withdraws
// it, and nobody else can: not a registrar of another organization, not
// one of its own (who may be the one the proposal is about). A withdrawn
// proposal takes no approval and never executes; an executed one, or one
// whose voting ended, cannot be withdrawn.
func TestWithdrawProposal(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	regA2 := w.member("rules-registrar-a2", emrv1.Role_ROLE_REGISTRAR, apptest.HospitalA)
	c.Must(w.regA, apptest.ConsortiumSetStatus(regA2, emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED)) // proposal 1, about regA2
	c.Must(w.regB, apptest.Approve(1))
	ruleRun(t, c, c.Now, []ruleCase{
		{"a clinician", w.doc, apptest.Withdraw(1), app.ErrUnauthorized, []string{"only a registrar"}},
		{"another organization's registrar", w.regB, apptest.Withdraw(1), app.ErrUnauthorized, []string{"only its proposer"}},
		{"the proposer's organization's other registrar, the one it is about", regA2, apptest.Withdraw(1), app.ErrUnauthorized, []string{"only its proposer"}},
		{"proposal 0", w.regA, apptest.Withdraw(0), app.ErrInvalidMsg, []string{"proposal 0"}},
		{"an unknown proposal", w.regA, apptest.Withdraw(9), app.ErrNotFound, []string{"no proposal 9"}},
		{"the proposer", w.regA, apptest.Withdraw(1), nil, nil},
	})
	res := c.Must(w.regA, apptest.Withdraw(1))
	if !hasAttr(res, app.ProposalAttribute, "1") {
		t.Errorf("withdraw event lacks proposal=1: %+v", res.Events)
	}
	p := ruleProposal(c, 1).Proposal
	if p.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_WITHDRAWN || p.WithdrawnHeight != c.Height() {
		t.Fatalf("withdrawn proposal: %v", p)
	}
	ruleCheck(t, "approving a withdrawn proposal", c.Exec(w.regR, apptest.Approve(1)), app.ErrProposalClosed, "proposal 1 was withdrawn at height")
	ruleCheck(t, "withdrawing it again", c.Exec(w.regA, apptest.Withdraw(1)), app.ErrProposalClosed, "withdrawn at height")
	if m := ruleMember(c, regA2.Address); m.Status != emrv1.MemberStatus_MEMBER_STATUS_ACTIVE {
		t.Fatalf("the member of the withdrawn suspension: %v", m)
	}

	// Executed, or past its voting: too late.
	c.Must(w.regA, apptest.AddOrganization("hospital-d", apptest.NewActor("registrar-d"))) // proposal 2
	c.Must(w.regB, apptest.Approve(2))
	c.Must(w.regR, apptest.Approve(2))
	ruleCheck(t, "withdrawing an executed proposal", c.Exec(w.regA, apptest.Withdraw(2)), app.ErrProposalClosed, "executed at height")
	c.Must(w.regA, apptest.SetValidatorPower(apptest.Validator(0).SignPub(), 11)) // proposal 3
	ruleCheck(t, "withdrawing a proposal whose voting ended", c.Simulate(w.regA, c.Now.Add(15*24*time.Hour), apptest.Withdraw(3)),
		app.ErrProposalClosed, "voting on proposal 3 ended")
}

// TestValidatorKeyQuery: the ValidatorKey query answers one consensus
// key's validator entry, unseen power and change count. The count moves on
// with every executed change of the key and stays after its removal (the
// count the executed proposals give, Chain.ValidatorChanges); a key never
// a validator is an answer (no validator, count 0: what its first
// possession is for), not NOT_FOUND; a key that is not 32 bytes is an
// invalid query.
func TestValidatorKeyQuery(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	y := apptest.NewActor("validator-key-y")
	want := func(what string, pub []byte, power, unseen int64, changes uint64) {
		t.Helper()
		var resp emrv1.QueryValidatorKeyResponse
		c.Query("ValidatorKey", &emrv1.QueryValidatorKeyRequest{PubKey: pub}, &resp)
		if resp.Height != c.Height() {
			t.Fatalf("%s: answered at height %d, the last is %d", what, resp.Height, c.Height())
		}
		if power == 0 && resp.Validator != nil {
			t.Fatalf("%s: validator %v, want none", what, resp.Validator)
		}
		if power > 0 && (!bytes.Equal(resp.Validator.GetPubKey(), pub) || resp.Validator.GetPower() != power) {
			t.Fatalf("%s: validator %v, want power %d", what, resp.Validator, power)
		}
		if resp.UnseenPower != unseen || resp.Changes != changes {
			t.Fatalf("%s: unseen power %d, changes %d; want %d and %d", what, resp.UnseenPower, resp.Changes, unseen, changes)
		}
		if n := c.ValidatorChanges(pub); n != changes {
			t.Fatalf("%s: the executed proposals changed the key %d times, the answer says %d", what, n, changes)
		}
	}
	want("a genesis validator", apptest.Validator(0).SignPub(), 10, 0, 0)
	want("a key never a validator", y.SignPub(), 0, 0, 0)
	w.decide(apptest.AddValidator(y, 5))
	want("added", y.SignPub(), 5, 5, 1)
	ruleSignBlocks(c, y.Address)
	want("added, and seen signing", y.SignPub(), 5, 0, 1)
	w.decide(apptest.SetValidatorPower(y.SignPub(), 0))
	want("removed", y.SignPub(), 0, 0, 2)
	w.decide(apptest.AddValidatorAt(y, 3, 2))
	want("added again", y.SignPub(), 3, 3, 3)

	for _, bad := range [][]byte{nil, y.SignPub()[:31], append(y.SignPub(), 0)} {
		err := c.TryQuery("ValidatorKey", &emrv1.QueryValidatorKeyRequest{PubKey: bad}, &emrv1.QueryValidatorKeyResponse{})
		if app.CodeOf(err) != app.ErrInvalidQuery.Code() || !strings.Contains(err.Error(), fmt.Sprintf("must be 32 bytes, got %d", len(bad))) {
			t.Errorf("a key of %d bytes: %v, want an invalid query", len(bad), err)
		}
	}
}
