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

// ProposalAttribute (indexed) names the proposal a MsgPropose made, a
// MsgApprove approved or a MsgWithdraw withdrew, in decimal.
const ProposalAttribute = "proposal"

// OrganizationAttribute (indexed) names the organization a proposal's
// execution retired.
const OrganizationAttribute = "organization"

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
		if set.FromChanges, err = ctx.st.keyChanges(set.PubKey); err != nil {
			return err
		}
		set.FromPower = current.GetPower()
	}
	if set := change.GetSetMemberStatus(); set != nil {
		target, err := ctx.st.member(set.Address)
		if err != nil {
			return err
		}
		set.FromStatusChanges = target.GetStatusChanges()
	}
	// A SetParams carries the from_changes of the params it was built
	// from (the Params answer's changes); checkChange refuses it unless
	// that is the chain's count now: built from params another change
	// replaced since, it would undo that change unseen. The chain records
	// the params it replaces, to show it as a change.
	// CometBFT's limits left out are the chain's.
	if set := change.GetSetParams(); set != nil {
		var err error
		if set.FromParams, err = ctx.st.params(); err != nil {
			return err
		}
		if set.Params.Consensus == nil {
			set.Params.Consensus = set.FromParams.GetConsensus()
		}
	}
	if err := ctx.checkChange(change, ctx.tx.Signer); err != nil {
		return err
	}
	if set := change.GetSetValidatorPower(); set != nil {
		// The transaction's chain id is this chain's (execTx checked it).
		if err := checkPossession(ctx.tx.Body.ChainId, set); err != nil {
			return err
		}
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
		Approvers: [][]byte{ctx.tx.Signer},
		Height:    ctx.block.Height,
		Time:      timestamp(ctx.block.Time),
		VotingEnd: timestamp(ctx.block.Time.Add(time.Duration(ctx.params.ProposalSeconds) * time.Second)),
		Status:    emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN,
	}
	ctx.attr(ProposalAttribute, strconv.FormatUint(id, 10))
	return ctx.tally(p)
}

// approve: an active registrar approves an open proposal for its
// organization, not a change of its own status. An organization whose
// approval counts already only re-counts (the organizations that can
// approve may have become fewer); one whose approver is no longer active
// approves anew.
func (ctx *txContext) approve(m *emrv1.MsgApprove) error {
	if err := ctx.requireRegistrar(); err != nil {
		return err
	}
	p, err := ctx.openProposal(m.ProposalId)
	if err != nil {
		return err
	}
	if c := p.Change.GetSetMemberStatus(); c != nil && bytes.Equal(c.Address, ctx.tx.Signer) {
		return fmt.Errorf("%w: a registrar cannot approve a change of its own status", ErrInvalidMsg)
	}
	org := ctx.signer.OrganizationId
	if i := slices.Index(p.Approvals, org); i >= 0 {
		counts, err := ctx.approvalCounts(p, i)
		if err != nil {
			return err
		}
		if counts {
			// The organizations that can approve may have become fewer
			// since: the approvals there are may carry it now.
			if err := ctx.tally(p); err != nil {
				return err
			}
			if p.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED {
				return fmt.Errorf("%w: %q has approved proposal %d already", ErrAlreadyExists, org, p.Id)
			}
			return nil
		}
		// Its registrar was suspended since: the organization approves
		// anew through this one.
		p.Approvals = slices.Delete(p.Approvals, i, i+1)
		p.Approvers = slices.Delete(p.Approvers, i, i+1)
	}
	p.Approvals = append(p.Approvals, org)
	p.Approvers = append(p.Approvers, ctx.tx.Signer)
	return ctx.tally(p)
}

// withdraw: the registrar who made an open proposal withdraws it. Only the
// proposer: another registrar of its organization may be the one the
// proposal is about (a compromised registrar to suspend).
func (ctx *txContext) withdraw(m *emrv1.MsgWithdraw) error {
	if err := ctx.requireRegistrar(); err != nil {
		return err
	}
	p, err := ctx.openProposal(m.ProposalId)
	if err != nil {
		return err
	}
	if !bytes.Equal(p.Proposer, ctx.tx.Signer) {
		return fmt.Errorf("%w: only its proposer, %X, withdraws proposal %d", ErrUnauthorized, p.Proposer, p.Id)
	}
	p.Status = emrv1.ProposalStatus_PROPOSAL_STATUS_WITHDRAWN
	p.WithdrawnHeight = ctx.block.Height
	return ctx.st.put(proposalKey(p.Id), p)
}

// openProposal reads proposal id for an approval or a withdrawal, and
// names it in the event: it must exist, be neither executed nor
// withdrawn, and its voting must not have ended.
func (ctx *txContext) openProposal(id uint64) (*emrv1.Proposal, error) {
	p, err := ctx.st.proposal(id)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, fmt.Errorf("%w: no proposal %d", ErrNotFound, id)
	}
	ctx.attr(ProposalAttribute, strconv.FormatUint(p.Id, 10))
	switch p.Status {
	case emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED:
		return nil, fmt.Errorf("%w: proposal %d was executed at height %d", ErrProposalClosed, p.Id, p.ExecutedHeight)
	case emrv1.ProposalStatus_PROPOSAL_STATUS_WITHDRAWN:
		return nil, fmt.Errorf("%w: proposal %d was withdrawn at height %d", ErrProposalClosed, p.Id, p.WithdrawnHeight)
	}
	if end := p.VotingEnd.AsTime(); !ctx.block.Time.Before(end) {
		return nil, fmt.Errorf("%w: voting on proposal %d ended at %s", ErrProposalClosed, p.Id, formatTime(end))
	}
	return p, nil
}

// requireRegistrar insists the signer is a registrar (of any organization:
// proposals are the consortium's business, approved organization by
// organization).
func (ctx *txContext) requireRegistrar() error {
	if ctx.signer.Role != emrv1.Role_ROLE_REGISTRAR {
		return fmt.Errorf("%w: only a registrar may do this, the signer is a %s", ErrUnauthorized, RoleName(ctx.signer.Role))
	}
	return nil
}

// tally stores p, executing its change first when more than two thirds of
// the organizations that can approve (those with an active registrar) have
// approved it. An organization whose registrars are all suspended neither
// counts nor blocks: otherwise suspending a compromised hospital's
// registrar could freeze the consortium for good. A change no longer
// possible (the organization was added meanwhile, say) fails the
// transaction that would execute it: the approval is not recorded, and the
// proposal stays open until its voting ends.
func (ctx *txContext) tally(p *emrv1.Proposal) error {
	voting, err := ctx.st.votingOrganizations()
	if err != nil {
		return err
	}
	// An approval whose registrar is active is by an organization that can
	// approve.
	n := 0
	for i := range p.Approvals {
		counts, err := ctx.approvalCounts(p, i)
		if err != nil {
			return err
		}
		if counts {
			n++
		}
	}
	if Approved(n, len(voting)) {
		if err := ctx.checkChange(p.Change, p.Proposer); err != nil {
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

// approvalCounts reports whether p's i-th approval counts: its registrar
// is still active (a suspended registrar's approvals, a compromised one's
// say, no longer count).
func (ctx *txContext) approvalCounts(p *emrv1.Proposal, i int) (bool, error) {
	if len(p.Approvers) != len(p.Approvals) {
		return false, fmt.Errorf("%w: proposal %d has %d approvals and %d approvers", ErrInternal, p.Id, len(p.Approvals), len(p.Approvers))
	}
	m, err := ctx.st.member(p.Approvers[i])
	if err != nil {
		return false, err
	}
	return m != nil && IsActive(m), nil
}

// Approved reports whether approvals by that many organizations, of orgs,
// carry a proposal: more than two thirds, as CometBFT's own quorum.
func Approved(approvals, orgs int) bool { return 3*approvals > 2*orgs }

// checkChange checks that change, proposed by proposer, can be made to the
// current state.
func (ctx *txContext) checkChange(change *emrv1.ConsortiumChange, proposer []byte) error {
	switch c := change.GetChange().(type) {
	case *emrv1.ConsortiumChange_AddOrganization:
		add := c.AddOrganization
		org, err := ctx.st.organization(add.Organization.Id)
		if err != nil {
			return err
		}
		if why := AddOrganizationOvertaken(add, org != nil); why != "" {
			return fmt.Errorf("%w: %s", ErrAlreadyExists, why)
		}
		if _, err := ctx.newMemberAddress(add.RegistrarSignPubKey); err != nil {
			return fmt.Errorf("the first registrar's key: %w", err)
		}
		return nil
	case *emrv1.ConsortiumChange_AddRegistrar:
		add := c.AddRegistrar
		if err := ctx.checkMemberOrganization(add.OrganizationId); err != nil {
			return err
		}
		voting, err := ctx.st.votingOrganizations()
		if err != nil {
			return err
		}
		if why := AddRegistrarOvertaken(add, voting[add.OrganizationId]); why != "" {
			return fmt.Errorf("%w: %s", ErrAlreadyExists, why)
		}
		if _, err := ctx.newMemberAddress(add.SignPubKey); err != nil {
			return fmt.Errorf("the registrar's key: %w", err)
		}
		return nil
	case *emrv1.ConsortiumChange_SetValidatorPower:
		return ctx.checkValidatorChange(c.SetValidatorPower)
	case *emrv1.ConsortiumChange_SetParams:
		return ctx.checkParamsChange(c.SetParams)
	case *emrv1.ConsortiumChange_RetireOrganization:
		return ctx.checkRetirement(c.RetireOrganization)
	case *emrv1.ConsortiumChange_SetMemberStatus:
		target, err := ctx.organizationMember(c.SetMemberStatus.Address)
		if err != nil {
			return err
		}
		if bytes.Equal(target.Address, proposer) {
			return fmt.Errorf("%w: a registrar cannot propose to change its own status", ErrInvalidMsg)
		}
		// Its organization left: no status change of it executes (a
		// registrar of a retired organization signs nothing, so this is
		// the only way to one).
		if why := MemberRetired(target); why != "" {
			return fmt.Errorf("%w: %s", ErrProposalClosed, why)
		}
		if why := MemberStatusChangeOvertaken(c.SetMemberStatus, target.StatusChanges); why != "" {
			return fmt.Errorf("%w: %s: another change overtook it", ErrProposalClosed, why)
		}
		// Every change leaves the registrar who made it active (nobody
		// approves a change of its own status), so some organization can
		// always approve.
		return checkStatusChange(target, c.SetMemberStatus.Status, true)
	}
	// ValidateMsg refused every other change.
	return fmt.Errorf("%w: unhandled change %T", ErrInvalidMsg, change.GetChange())
}

func (ctx *txContext) checkValidatorChange(set *emrv1.SetValidatorPower) error {
	validators, err := ctx.st.validators()
	if err != nil {
		return err
	}
	changes, err := ctx.st.keyChanges(set.PubKey)
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
	// A new proposal is checked with what the chain is about to record as
	// from_power and from_changes.
	if why := ValidatorChangeOvertaken(set, current, changes); why != "" {
		return fmt.Errorf("%w: %s: another change overtook it", ErrProposalClosed, why)
	}
	switch {
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
	// node not caught up). While it is less than a third of the total,
	// the validators that have been signing hold more than two thirds and
	// the chain goes on without it; more would halt the chain until it
	// signs, and no proposal could then undo it. Counted over every
	// validator: added power stays unseen until its validator signs a
	// block under the change (markSigned), and removing a validator that
	// signs raises the share of the rest.
	unseen, err := ctx.st.unseen()
	if err != nil {
		return err
	}
	unseenAfter, after := int64(0), total-current+set.Power
	for k, p := range unseen {
		if k != string(set.PubKey) {
			unseenAfter += p
		}
	}
	unseenAfter += nextUnseen(current, unseen[string(set.PubKey)], set.Power)
	if unseenAfter > 0 && 3*unseenAfter >= after {
		return fmt.Errorf("%w: after this change %d of the %d voting power would be in validators not yet seen signing (a third or more halts the chain until they sign): wait until they sign, or change less at once",
			ErrTooLarge, unseenAfter, after)
	}
	return nil
}

// checkPossession checks set's proof of possession (checked when the
// proposal is made, after checkChange: set.FromPower is the key's power
// now, set.FromChanges its change count), by ValidatorPossessionProblem.
// The one signature verification is the same on every node.
func checkPossession(chainID string, set *emrv1.SetValidatorPower) error {
	if why := ValidatorPossessionProblem(chainID, set); why != "" {
		return fmt.Errorf("%w: %s", ErrInvalidMsg, why)
	}
	return nil
}

// ValidatorPossessionProblem says what is wrong with set's proof of
// possession on chain chainID ("" when nothing), set.FromPower being the
// key's power now and set.FromChanges its change count: the chain's rule,
// which emrcli applies to the verified count (the ValidatorKey query)
// before it signs a proposal. A proposal adding a key (no power now, some
// after) needs one: a key nobody holds, a typo or the wrong key pasted,
// would count as power never seen signing, and the proposal would be
// voted on for nothing. A change of an existing validator's power needs
// none (its key is in the set already, and a lost or leaked key must still
// be removable), but one given must verify. It must be for the key's
// change count now (ValidatorPossessionSignBytes): a possession kept in an
// earlier proposal of the key, made before the key's last change, cannot
// add it again.
func ValidatorPossessionProblem(chainID string, set *emrv1.SetValidatorPower) string {
	key := ValidatorKeyText(set.GetPubKey())
	if len(set.GetPossession()) == 0 {
		if set.GetFromPower() == 0 && set.GetPower() > 0 {
			return fmt.Sprintf("%s is not a validator, and adding it needs its proof of possession for change count %d: its operator runs `emrchaind show validator --possession --changes %d` on the node of that key and hands the output to the proposer (emrcli propose validator --possession)",
				key, set.GetFromChanges(), set.GetFromChanges())
		}
		return ""
	}
	if VerifyValidatorPossession(chainID, set.GetPubKey(), set.GetFromChanges(), set.GetPossession()) {
		return ""
	}
	why := fmt.Sprintf("the possession is not a signature by validator key %s for chain %q and change count %d (another key's, another chain's, or one made before the key's last change: the count is how many executed proposals changed the key's power, and a possession is good for one count only): its operator runs `emrchaind show validator --possession --changes %d` on the node of that key, of this chain, and hands the output to the proposer",
		key, chainID, set.GetFromChanges(), set.GetFromChanges())
	if set.GetFromPower() > 0 {
		// Checked all the same, as it would be kept in the proposal; but
		// the likelier fix is to give none.
		why += fmt.Sprintf("; or leave it out: %s is a validator (power %d), and a change of a validator's power needs none", key, set.GetFromPower())
	}
	return why
}

// checkMemberOrganization checks that organization id, which a proposal
// changes, exists and is still a member of the consortium (a change to a
// retired one is overtaken).
func (ctx *txContext) checkMemberOrganization(id string) error {
	org, err := ctx.st.organization(id)
	if err != nil {
		return err
	}
	if org == nil {
		return fmt.Errorf("%w: no organization %q", ErrNotFound, id)
	}
	if why := OrganizationRetired(org.Id, org.RetiredHeight); why != "" {
		return fmt.Errorf("%w: %s", ErrProposalClosed, why)
	}
	return nil
}

// checkRetirement checks that retire's organization can be retired: it
// exists, is not retired, and another organization can still approve
// proposals after it (else no change could ever be made again).
func (ctx *txContext) checkRetirement(retire *emrv1.RetireOrganization) error {
	if err := ctx.checkMemberOrganization(retire.OrganizationId); err != nil {
		return err
	}
	voting, err := ctx.st.votingOrganizations()
	if err != nil {
		return err
	}
	delete(voting, retire.OrganizationId)
	if len(voting) == 0 {
		return fmt.Errorf("%w: no other organization has an active registrar, and without one no proposal could ever be approved", ErrInvalidMsg)
	}
	return nil
}

// checkParamsChange checks that the params may become set's: no change of
// the params executed since the ones it was built from (from_changes),
// valid with CometBFT's limits, it changes something, and it only adds
// record categories, after the current ones.
func (ctx *txContext) checkParamsChange(set *emrv1.SetParams) error {
	changes, err := ctx.st.paramsChanges()
	if err != nil {
		return err
	}
	if why := ParamsChangeOvertaken(set, changes); why != "" {
		return fmt.Errorf("%w: %s: another change overtook it", ErrProposalClosed, why)
	}
	// Again with CometBFT's limits, which the proposal may have left out
	// (ValidateMsg checked it without them).
	if err := ValidateParams(set.Params); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidMsg, err)
	}
	current, err := ctx.st.params()
	if err != nil {
		return err
	}
	if proto.Equal(current, set.Params) {
		return fmt.Errorf("%w: the params are these already", ErrAlreadyExists)
	}
	// A storage organization newly named must be a member of the
	// consortium: one that does not exist, or has retired, can never run
	// a storage service, and the blobs placed with it would keep a copy
	// fewer. One named already stays named (retirement drops it:
	// dropStorageOrganization).
	for _, org := range NewStorageOrganizations(current, set.Params) {
		if err := ctx.checkMemberOrganization(org); err != nil {
			return fmt.Errorf("params.storage_organizations: %w", err)
		}
	}
	// Linear in the categories (a transaction may carry tens of
	// thousands): the set only to name a removed one.
	next := set.Params.Categories
	if len(next) >= len(current.Categories) && slices.Equal(next[:len(current.Categories)], current.Categories) {
		return nil
	}
	listed := make(map[string]bool, len(next))
	for _, c := range next {
		listed[c] = true
	}
	for _, c := range current.Categories {
		if !listed[c] {
			return fmt.Errorf("%w: category %q cannot be removed: its records, consents and shares outlive it", ErrInvalidMsg, c)
		}
	}
	// Added after the current ones, which keep their order: a reorder
	// changes nothing the chain enforces.
	return fmt.Errorf("%w: categories are added after the current ones, which keep their order (%v)", ErrInvalidMsg, current.Categories)
}

// Overtaken changes. A change is checked when it is proposed and again
// when its approvals would execute it; meanwhile another change may have
// overtaken it, so that it can no longer execute. A validator change, a
// reactivation and a params change record what they change from when
// proposed (from_power and from_changes; from_status_changes;
// from_changes) and execute only while that still holds; an organization is admitted only while it does not exist, and a
// registrar seated only while its organization has no active registrar.
// The functions below say why a change was overtaken ("" while it was
// not), given the state now: the chain's rule, which emrcli applies to
// verified state to show such a proposal as overtaken.

// ValidatorChangeOvertaken: the key of set has power power now (0: no
// validator), set by changes executed proposals in all. Changed and
// changed back (removed and added again, say) is overtaken too.
func ValidatorChangeOvertaken(set *emrv1.SetValidatorPower, power int64, changes uint64) string {
	key := ValidatorKeyText(set.GetPubKey())
	switch {
	case power != set.GetFromPower():
		return fmt.Sprintf("validator %s has power %d, %d when this was proposed", key, power, set.GetFromPower())
	case changes < set.GetFromChanges():
		// Never on the chain (counts only grow); an unverified answer
		// in emrcli.
		return fmt.Sprintf("validator %s was changed %d times, not %d", key, changes, set.GetFromChanges())
	case changes != set.GetFromChanges():
		return fmt.Sprintf("validator %s was changed %d times since this was proposed", key, changes-set.GetFromChanges())
	}
	return ""
}

// MemberStatusChangeOvertaken: set's member has changed status
// statusChanges times in all. A reactivation voted on before the member's
// status changed again (suspended anew, for a new reason) is not the one
// voted on. A suspension still is, whatever happened since: the safe side.
func MemberStatusChangeOvertaken(set *emrv1.SetMemberStatus, statusChanges uint64) string {
	if set.GetStatus() != emrv1.MemberStatus_MEMBER_STATUS_ACTIVE || statusChanges == set.GetFromStatusChanges() {
		return ""
	}
	return fmt.Sprintf("member %X's status changed %d times since this reactivation was proposed",
		set.GetAddress(), statusChanges-set.GetFromStatusChanges())
}

// AddOrganizationOvertaken: exists says whether the organization add
// admits exists now.
func AddOrganizationOvertaken(add *emrv1.AddOrganization, exists bool) string {
	if !exists {
		return ""
	}
	return fmt.Sprintf("organization %q exists", add.GetOrganization().GetId())
}

// AddRegistrarOvertaken: activeRegistrar says whether add's organization
// has an active registrar now, who registers its registrars.
func AddRegistrarOvertaken(add *emrv1.AddRegistrar, activeRegistrar bool) string {
	if !activeRegistrar {
		return ""
	}
	return fmt.Sprintf("%q has an active registrar, who registers its registrars", add.GetOrganizationId())
}

// ParamsChangeOvertaken: executed proposals have changed the params
// changes times in all. Executing set after another change would undo that
// change unseen.
func ParamsChangeOvertaken(set *emrv1.SetParams, changes uint64) string {
	switch from := set.GetFromChanges(); {
	case changes == from:
		return ""
	case changes < from:
		return fmt.Sprintf("the params were changed %d times, not %d", changes, from)
	}
	return fmt.Sprintf("the params were changed %d times since this was proposed", changes-set.GetFromChanges())
}

// NewStorageOrganizations are the organizations next names in
// params.storage_organizations that current does not: a params change may
// name them only while they are members, not retired (a retirement after
// the proposal overtakes it: OrganizationRetired).
func NewStorageOrganizations(current, next *emrv1.Params) []string {
	var named []string
	for _, org := range next.GetStorageOrganizations() {
		if !slices.Contains(current.GetStorageOrganizations(), org) {
			named = append(named, org)
		}
	}
	return named
}

// OrganizationRetired: organization id was retired at retiredHeight (0:
// it was not). A retirement of it and a registrar seated in it are
// overtaken then.
func OrganizationRetired(id string, retiredHeight int64) string {
	if retiredHeight == 0 {
		return ""
	}
	return fmt.Sprintf("organization %q was retired at height %d", id, retiredHeight)
}

// nextUnseen is a validator's unseen power after its power goes from
// current to next: a raise adds to it; what is left can hold no more.
func nextUnseen(current, unseen, next int64) int64 {
	if next > current {
		return unseen + next - current
	}
	return min(unseen, next)
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
		return ctx.seatRegistrar(add.Organization.Id, add.RegistrarSignPubKey, add.RegistrarEncPubKey, add.RegistrarCredentialRef)
	case *emrv1.ConsortiumChange_AddRegistrar:
		add := c.AddRegistrar
		return ctx.seatRegistrar(add.OrganizationId, add.SignPubKey, add.EncPubKey, add.CredentialRef)
	case *emrv1.ConsortiumChange_SetValidatorPower:
		set := c.SetValidatorPower
		unseen, err := ctx.st.unseen()
		if err != nil {
			return err
		}
		if err := ctx.st.setUnseen(set.PubKey, nextUnseen(set.FromPower, unseen[string(set.PubKey)], set.Power)); err != nil {
			return err
		}
		if err := ctx.st.setKeyChanges(set.PubKey, set.FromChanges+1); err != nil {
			return err
		}
		v := &emrv1.Validator{PubKey: set.PubKey, Power: set.Power, ChangedHeight: ctx.block.Height}
		ctx.validatorUpdates = append(ctx.validatorUpdates, v)
		return ctx.st.setValidator(v)
	case *emrv1.ConsortiumChange_SetMemberStatus:
		target, err := ctx.organizationMember(c.SetMemberStatus.Address)
		if err != nil {
			return err
		}
		return ctx.putMemberStatus(target, c.SetMemberStatus.Status, true)
	case *emrv1.ConsortiumChange_RetireOrganization:
		return ctx.retireOrganization(c.RetireOrganization.OrganizationId)
	case *emrv1.ConsortiumChange_SetParams:
		return ctx.changeParams(c.SetParams.Params, c.SetParams.FromChanges)
	}
	return fmt.Errorf("%w: unhandled change %T", ErrInvalidMsg, change.GetChange())
}

// retireOrganization marks org retired and retires each of its members,
// in address order. The event names the organization, not each member.
func (ctx *txContext) retireOrganization(id string) error {
	org, err := ctx.st.organization(id)
	if err != nil {
		return err
	}
	org.RetiredHeight = ctx.block.Height
	if err := ctx.st.put(organizationKey(id), org); err != nil {
		return err
	}
	ctx.attr(OrganizationAttribute, id)
	// Collected first: nothing is written while the scan is open.
	addrs, err := ctx.st.keysAfter(orgMemberPrefix(id))
	if err != nil {
		return err
	}
	for _, addr := range addrs {
		m, err := ctx.st.member(addr)
		if err != nil {
			return err
		}
		if m == nil {
			return fmt.Errorf("%w: organization index of %q names %X, no member", ErrInternal, id, addr)
		}
		m.Status, m.SuspendedByConsortium = emrv1.MemberStatus_MEMBER_STATUS_RETIRED, false
		m.StatusChanges++
		// The member alone: its organization's indexes stay as they are.
		if err := ctx.st.put(memberKey(addr), m); err != nil {
			return err
		}
	}
	return ctx.dropStorageOrganization(id)
}

// dropStorageOrganization takes retired organization id out of
// params.storage_organizations, if it is named there: its storage service
// is retired with it, and every blob placed with it (CopyHolders) would
// keep a copy fewer for good. Without it the sidecars place those blobs
// with the next organization in their ranking and copy them there.
// storage_copies comes down to the organizations left if it was above
// them. This is a change of the params, counted as a proposal's is, so a
// params proposal made before it is overtaken (from_changes) instead of
// naming the organization again.
func (ctx *txContext) dropStorageOrganization(id string) error {
	current, err := ctx.st.params()
	if err != nil {
		return err
	}
	i := slices.Index(current.StorageOrganizations, id)
	if i < 0 {
		return nil
	}
	changes, err := ctx.st.paramsChanges()
	if err != nil {
		return err
	}
	next := proto.Clone(current).(*emrv1.Params)
	next.StorageOrganizations = slices.Delete(next.StorageOrganizations, i, i+1)
	next.StorageCopies = min(next.StorageCopies, uint32(len(next.StorageOrganizations)))
	return ctx.changeParams(next, changes)
}

// changeParams stores next as the params, changes having been made before
// (the params change counter, which moves on by one: a params proposal
// made before is overtaken), and has the block pick them up at its end.
func (ctx *txContext) changeParams(next *emrv1.Params, changes uint64) error {
	if err := ctx.st.setParamsChanges(changes + 1); err != nil {
		return err
	}
	ctx.paramsChanged = true
	return ctx.st.put(keyParams, next)
}

// seatRegistrar makes a registrar of org, by proposal: no registrar
// registered it (registered_by empty).
func (ctx *txContext) seatRegistrar(org string, signPubKey, encPubKey []byte, credential string) error {
	return ctx.putNewMember(AddressOf(signPubKey), &emrv1.MsgRegisterMember{
		SignPubKey:     signPubKey,
		EncPubKey:      encPubKey,
		Role:           emrv1.Role_ROLE_REGISTRAR,
		OrganizationId: org,
		CredentialRef:  credential,
	}, nil)
}

// markSigned clears the unseen power of the validators whose signatures
// are in block b's last commit (the commit of block b-1), when that block
// was signed under their latest change: CometBFT applies a change made at
// height H from H+2. The last commit is part of the block, so every node
// clears the same.
func markSigned(st state, b BlockInfo) error {
	unseen, err := st.unseen()
	if err != nil || len(unseen) == 0 {
		return err
	}
	signed := make(map[string]bool, len(b.Signers))
	for _, a := range b.Signers {
		signed[string(a)] = true
	}
	// In key order, as the writes of a block must be deterministic.
	keys := make([]string, 0, len(unseen))
	for k := range unseen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !signed[string(AddressOf([]byte(k)))] {
			continue
		}
		v, err := st.validator([]byte(k))
		if err != nil {
			return err
		}
		if v == nil || b.Height-1 < v.ChangedHeight+2 {
			continue // a signature from before its power changed
		}
		if err := st.setUnseen([]byte(k), 0); err != nil {
			return err
		}
	}
	return nil
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
