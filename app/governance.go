package app

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"time"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Bounds of the validator set. CometBFT caps the total voting power at
// 2^60 (types.MaxTotalVotingPower); these keep every sum far below it and
// every Validators answer one small page.
const (
	MaxValidatorPower = 1_000_000
	MaxValidators     = 100
)

// ProposalAttribute (indexed) names the proposal a MsgPropose made or a
// MsgApprove approved, in decimal.
const ProposalAttribute = "proposal"

// ExecutedAttribute (unindexed) is "true" on the event of the transaction
// that executed a proposal.
const ExecutedAttribute = "executed"

// propose: an active registrar proposes a change to the consortium. The
// change must be possible now; its organization's approval counts at once,
// which executes it in a consortium of one organization.
func (ctx *txContext) propose(m *emrv1.MsgPropose) error {
	if err := ctx.requireRegistrar(); err != nil {
		return err
	}
	if err := ctx.checkChange(m.Change); err != nil {
		return err
	}
	id, err := ctx.st.nextProposalID()
	if err != nil {
		return err
	}
	if err := ctx.st.setNextProposalID(id + 1); err != nil {
		return err
	}
	p := &emrv1.Proposal{
		Id:        id,
		Change:    m.Change,
		Reason:    m.Reason,
		Proposer:  ctx.tx.Signer,
		Approvals: []string{ctx.signer.OrganizationId},
		Height:    ctx.block.Height,
		Time:      timestamp(ctx.block.Time),
		VotingEnd: timestamp(ctx.block.Time.Add(time.Duration(ctx.params.ProposalSeconds) * time.Second)),
		Status:    emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN,
	}
	ctx.attr(ProposalAttribute, strconv.FormatUint(id, 10))
	return ctx.tally(p)
}

// approve: an active registrar approves an open proposal for its
// organization, once.
func (ctx *txContext) approve(m *emrv1.MsgApprove) error {
	if err := ctx.requireRegistrar(); err != nil {
		return err
	}
	p, err := ctx.st.proposal(m.ProposalId)
	if err != nil {
		return err
	}
	if p == nil {
		return fmt.Errorf("%w: no proposal %d", ErrNotFound, m.ProposalId)
	}
	ctx.attr(ProposalAttribute, strconv.FormatUint(p.Id, 10))
	if p.Status == emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED {
		return fmt.Errorf("%w: proposal %d was executed at height %d", ErrProposalClosed, p.Id, p.ExecutedHeight)
	}
	if end := p.VotingEnd.AsTime(); !ctx.block.Time.Before(end) {
		return fmt.Errorf("%w: voting on proposal %d ended at %s", ErrProposalClosed, p.Id, formatTime(end))
	}
	if slices.Contains(p.Approvals, ctx.signer.OrganizationId) {
		return fmt.Errorf("%w: %q has approved proposal %d already", ErrAlreadyExists, ctx.signer.OrganizationId, p.Id)
	}
	p.Approvals = append(p.Approvals, ctx.signer.OrganizationId)
	return ctx.tally(p)
}

// requireRegistrar insists the signer is a registrar (of any organization:
// proposals are the consortium's business, approved organization by
// organization).
func (ctx *txContext) requireRegistrar() error {
	if ctx.signer.Role != emrv1.Role_ROLE_REGISTRAR {
		return fmt.Errorf("%w: only a registrar may do this, the signer is a %s", ErrUnauthorized, roleName(ctx.signer.Role))
	}
	return nil
}

// tally stores p, executing its change first when more than two thirds of
// the organizations have approved it. A change no longer possible (the
// organization was added meanwhile, say) fails the transaction that would
// execute it: the approval is not recorded, and the proposal stays open
// until its voting ends.
func (ctx *txContext) tally(p *emrv1.Proposal) error {
	orgs, err := ctx.st.organizationCount()
	if err != nil {
		return err
	}
	if Approved(len(p.Approvals), orgs) {
		if err := ctx.checkChange(p.Change); err != nil {
			return fmt.Errorf("proposal %d cannot execute: %w", p.Id, err)
		}
		if err := ctx.applyChange(p.Change); err != nil {
			return err
		}
		p.Status = emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED
		p.ExecutedHeight = ctx.block.Height
		ctx.detail(ExecutedAttribute, "true")
	}
	return ctx.st.put(proposalKey(p.Id), p)
}

// Approved reports whether approvals by that many organizations, of orgs,
// carry a proposal: more than two thirds, as CometBFT's own quorum.
func Approved(approvals, orgs int) bool { return 3*approvals > 2*orgs }

// checkChange checks that change can be made to the current state.
func (ctx *txContext) checkChange(change *emrv1.ConsortiumChange) error {
	switch c := change.GetChange().(type) {
	case *emrv1.ConsortiumChange_AddOrganization:
		add := c.AddOrganization
		org, err := ctx.st.organization(add.Organization.Id)
		if err != nil {
			return err
		}
		if org != nil {
			return fmt.Errorf("%w: organization %q exists", ErrAlreadyExists, org.Id)
		}
		addr := AddressOf(add.RegistrarSignPubKey)
		existing, err := ctx.st.member(addr)
		if err != nil {
			return err
		}
		if existing != nil {
			return fmt.Errorf("%w: the registrar's key is %X's, already a %s", ErrAlreadyExists, addr, roleName(existing.Role))
		}
		return nil
	case *emrv1.ConsortiumChange_SetValidatorPower:
		return ctx.checkValidatorChange(c.SetValidatorPower)
	}
	// ValidateMsg refused every other change.
	return fmt.Errorf("%w: unhandled change %T", ErrInvalidMsg, change.GetChange())
}

func (ctx *txContext) checkValidatorChange(set *emrv1.SetValidatorPower) error {
	validators, err := ctx.st.validators()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(validators, func(v *emrv1.Validator) bool { return bytes.Equal(v.PubKey, set.PubKey) })
	switch {
	case i < 0 && set.Power == 0:
		return fmt.Errorf("%w: %X is not a validator", ErrNotFound, set.PubKey)
	case i < 0 && len(validators) >= MaxValidators:
		return fmt.Errorf("%w: the chain has %d validators, the most it may have", ErrTooLarge, len(validators))
	case i >= 0 && validators[i].Power == set.Power:
		return fmt.Errorf("%w: validator %X has power %d already", ErrAlreadyExists, set.PubKey, set.Power)
	case i >= 0 && set.Power == 0 && len(validators) == 1:
		return fmt.Errorf("%w: %X is the only validator", ErrLastValidator, set.PubKey)
	}
	return nil
}

// applyChange makes a checked change.
func (ctx *txContext) applyChange(change *emrv1.ConsortiumChange) error {
	switch c := change.GetChange().(type) {
	case *emrv1.ConsortiumChange_AddOrganization:
		add := c.AddOrganization
		if err := ctx.st.put(organizationKey(add.Organization.Id), add.Organization); err != nil {
			return err
		}
		addr := AddressOf(add.RegistrarSignPubKey)
		ctx.attrHex("member", addr)
		return ctx.st.putMember(&emrv1.Member{
			Address:          addr,
			SignPubKey:       add.RegistrarSignPubKey,
			EncPubKey:        add.RegistrarEncPubKey,
			Role:             emrv1.Role_ROLE_REGISTRAR,
			OrganizationId:   add.Organization.Id,
			CredentialRef:    add.RegistrarCredentialRef,
			Status:           emrv1.MemberStatus_MEMBER_STATUS_ACTIVE,
			RegisteredHeight: ctx.block.Height,
		})
	case *emrv1.ConsortiumChange_SetValidatorPower:
		v := &emrv1.Validator{PubKey: c.SetValidatorPower.PubKey, Power: c.SetValidatorPower.Power}
		ctx.validatorUpdates = append(ctx.validatorUpdates, v)
		return ctx.st.setValidator(v)
	}
	return fmt.Errorf("%w: unhandled change %T", ErrInvalidMsg, change.GetChange())
}

// BlockValidatorUpdates are the validator changes of a block's successful
// transactions, for CometBFT (FinalizeBlock's validator_updates): one per
// key, the last made, ordered by key. CometBFT refuses a key listed twice.
func BlockValidatorUpdates(results []Result) []*emrv1.Validator {
	var out []*emrv1.Validator
	for _, r := range results {
		if !r.OK() {
			continue
		}
		for _, v := range r.ValidatorUpdates {
			i := slices.IndexFunc(out, func(o *emrv1.Validator) bool { return bytes.Equal(o.PubKey, v.PubKey) })
			if i >= 0 {
				out[i] = v
			} else {
				out = append(out, v)
			}
		}
	}
	slices.SortFunc(out, func(a, b *emrv1.Validator) int { return bytes.Compare(a.PubKey, b.PubKey) })
	return out
}

// validateGenesisValidators checks the validator set CometBFT's genesis
// hands InitChain.
func validateGenesisValidators(validators []*emrv1.Validator) error {
	if len(validators) == 0 {
		return fmt.Errorf("%w: the genesis names no validators", ErrInvalidGenesis)
	}
	if len(validators) > MaxValidators {
		return fmt.Errorf("%w: %d validators, at most %d", ErrInvalidGenesis, len(validators), MaxValidators)
	}
	seen := map[string]bool{}
	for i, v := range validators {
		if err := checkValidatorPower(v.PubKey, v.Power); err != nil {
			return fmt.Errorf("%w: validator %d: %v", ErrInvalidGenesis, i, err)
		}
		if v.Power == 0 {
			return fmt.Errorf("%w: validator %d has power 0", ErrInvalidGenesis, i)
		}
		if seen[string(v.PubKey)] {
			return fmt.Errorf("%w: validator %X listed twice", ErrInvalidGenesis, v.PubKey)
		}
		seen[string(v.PubKey)] = true
	}
	return nil
}
