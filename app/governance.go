package app

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

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
	// The message belongs to the decoded transaction, which the signature
	// cache shares between CheckTx and FinalizeBlock: the stored change
	// is a copy, with the power the key has now.
	change := proto.Clone(m.Change).(*emrv1.ConsortiumChange)
	if set := change.GetSetValidatorPower(); set != nil {
		current, err := ctx.st.validator(set.PubKey)
		if err != nil {
			return err
		}
		set.FromPower = current.GetPower()
	}
	if err := ctx.checkChange(change); err != nil {
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
		Change:    change,
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
		if _, err := ctx.newMemberAddress(add.RegistrarSignPubKey); err != nil {
			return fmt.Errorf("the first registrar's key: %w", err)
		}
		return nil
	case *emrv1.ConsortiumChange_SetValidatorPower:
		return ctx.checkValidatorChange(c.SetValidatorPower)
	case *emrv1.ConsortiumChange_SetMemberStatus:
		target, err := ctx.organizationMember(c.SetMemberStatus.Address)
		if err != nil {
			return err
		}
		return checkStatusChange(target, c.SetMemberStatus.Status)
	}
	// ValidateMsg refused every other change.
	return fmt.Errorf("%w: unhandled change %T", ErrInvalidMsg, change.GetChange())
}

func (ctx *txContext) checkValidatorChange(set *emrv1.SetValidatorPower) error {
	validators, err := ctx.st.validators()
	if err != nil {
		return err
	}
	key := ValidatorKeyText(set.PubKey)
	var current, total int64
	for _, v := range validators {
		total += v.Power
		if bytes.Equal(v.PubKey, set.PubKey) {
			current = v.Power
		}
	}
	switch {
	case current != set.FromPower:
		// Only a stored proposal has from_power; a new one is checked
		// with the power the chain is about to record.
		return fmt.Errorf("%w: validator %s has power %d, %d when this was proposed: another change overtook it", ErrProposalClosed, key, current, set.FromPower)
	case current == 0 && set.Power == 0:
		return fmt.Errorf("%w: %s is not a validator", ErrNotFound, key)
	case current == 0 && len(validators) >= MaxValidators:
		return fmt.Errorf("%w: the chain has %d validators, the most it may have", ErrTooLarge, len(validators))
	case current == set.Power:
		return fmt.Errorf("%w: validator %s has power %d already", ErrAlreadyExists, key, set.Power)
	case set.Power == 0 && current == total:
		return fmt.Errorf("%w: %s is the only validator", ErrLastValidator, key)
	}
	// Power added is power not yet seen signing (a key nobody runs, a
	// node not caught up). Below a third of the new total, the validators
	// that signed so far keep more than two thirds and the chain goes on
	// without it; more would halt the chain until the new power signs,
	// and no proposal could then undo it. Raise it in steps instead.
	if raise := set.Power - current; raise > 0 && 3*raise >= total+raise {
		return fmt.Errorf("%w: raising %s by %d would put %d of the %d voting power in a key not yet seen signing (a third or more halts the chain until it signs): raise it by at most %d at a time",
			ErrTooLarge, key, raise, raise, total+raise, (total-1)/2)
	}
	return nil
}

// ValidatorKeyText is how a consensus key appears in messages: base64, as
// CometBFT's genesis and `emrchaind show validator` print it.
func ValidatorKeyText(pubKey []byte) string { return base64.StdEncoding.EncodeToString(pubKey) }

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
	case *emrv1.ConsortiumChange_SetMemberStatus:
		target, err := ctx.organizationMember(c.SetMemberStatus.Address)
		if err != nil {
			return err
		}
		return ctx.putMemberStatus(target, c.SetMemberStatus.Status)
	}
	return fmt.Errorf("%w: unhandled change %T", ErrInvalidMsg, change.GetChange())
}

// validatorDiff is what CometBFT must be told for the set to go from
// before to after (both ordered by key, as state.validators reads them):
// each key whose power differs, with its new power (0: removed), ordered
// by key. A key added and removed within one block is not mentioned:
// CometBFT refuses to remove a validator it does not have.
func validatorDiff(before, after []*emrv1.Validator) []*emrv1.Validator {
	power := func(set []*emrv1.Validator, key []byte) int64 {
		i, found := slices.BinarySearchFunc(set, key, func(v *emrv1.Validator, k []byte) int { return bytes.Compare(v.PubKey, k) })
		if !found {
			return 0
		}
		return set[i].Power
	}
	var out []*emrv1.Validator
	for _, v := range after {
		if power(before, v.PubKey) != v.Power {
			out = append(out, v)
		}
	}
	for _, v := range before {
		if power(after, v.PubKey) == 0 {
			out = append(out, &emrv1.Validator{PubKey: v.PubKey})
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
			return fmt.Errorf("%w: validator %s listed twice", ErrInvalidGenesis, ValidatorKeyText(v.PubKey))
		}
		seen[string(v.PubKey)] = true
	}
	return nil
}
