package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

const governanceLong = `A change to the consortium (an organization admitted with its first
registrar, a validator added, re-weighted or removed, a member of any
organization suspended or reactivated, a registrar seated in an
organization without an active one, new params, an organization retired)
is proposed by a registrar and takes
effect in the transaction that brings its approvals above two thirds of
the organizations that can approve (those with an active registrar): one
approval per organization, by any of its registrars, the proposer's
counted at once. An approval counts while the registrar who gave it is
active (otherwise its organization may approve again); nobody proposes or
approves a change of their own status. Approvals are refused once the
proposal's voting ends (params proposal_seconds after it was made), or
once the registrar who made it withdraws it (emrcli withdraw).
CometBFT applies a validator change two blocks after the block that
executed it.`

func newProposeCmd(a *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "propose",
		Short: "Propose a change to the consortium: admit or retire an organization, change a validator, suspend a member, seat a registrar, new params",
		Long:  governanceLong,
		Example: `  emrcli propose add-organization --from registrar --id st-mary --name "St Mary's" --kind hospital \
      --registrar-key st-mary-registrar --credential REG-1 --reason "joins the regional network"
  emrcli propose validator --from registrar --pub-key 6Z9T...Q= --power 10 --reason "St Mary's node"
  emrcli propose params --from registrar --add-category genomics --reason "genome sequencing joins the records"`,
	}
	cmd.AddCommand(newProposeOrgCmd(a), newProposeValidatorCmd(a),
		newProposeStatusCmd(a, "suspend-member", "Propose to suspend a member of any organization (a compromised hospital's registrar, say)", emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED),
		newProposeStatusCmd(a, "reactivate-member", "Propose to reactivate a member of any organization that is not retired", emrv1.MemberStatus_MEMBER_STATUS_ACTIVE),
		newProposeRegistrarCmd(a), newProposeParamsCmd(a), newProposeRetireCmd(a))
	return cmd
}

func newProposeRetireCmd(a *cli) *cobra.Command {
	var pf proposeFlags
	var org string
	cmd := &cobra.Command{
		Use:   "retire-organization --from REGISTRAR --org ID --reason TEXT",
		Short: "Propose to retire an organization that leaves the consortium: all its members retired for good",
		Long: governanceLong + `

The transaction that executes the proposal retires every member of the
organization, its registrars included: like a suspension, for good. None
can be reactivated, and no registrar can be seated in it again. It no
longer counts among the organizations that approve, and its studies
close: no share consents, shares or research reads for them. Its records, the consents patients gave
its members, and its audit trail stay on the chain; patients revoke
those consents as they wish, and a patient's key rotation no longer
seals the new key to its members. Shares its clinicians made are no
longer served to studies: a clinician of an active organization shares
anew. Its validators are not tied to it: remove them with "emrcli
propose validator --power 0". If params.storage_organizations names it,
it is dropped from the list (params.storage_copies comes down to the
organizations left if it was above them), which overtakes any params
proposal made before, and the sidecars copy the blobs it held to the
organizations that now hold them. The last organization that can approve
is never retired.`,
		Example: `  emrcli propose retire-organization --from registrar --org st-mary --reason "St Mary's merged into St Luke's"`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			change := &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_RetireOrganization{RetireOrganization: &emrv1.RetireOrganization{OrganizationId: org}}}
			return pf.submit(a, cmd, change)
		},
	}
	pf.add(a, cmd)
	cmd.Flags().StringVar(&org, "org", "", "the organization's id")
	_ = cmd.MarkFlagRequired("org")
	return cmd
}

func newProposeRegistrarCmd(a *cli) *cobra.Command {
	var pf proposeFlags
	var reg registrarFlags
	var org string
	cmd := &cobra.Command{
		Use:   "add-registrar --from REGISTRAR --org ID (--registrar-key NAME | --registrar-sign-pub-key HEX --registrar-enc-pub-key HEX) --reason TEXT",
		Short: "Propose to seat a registrar in an organization without an active one",
		Long: governanceLong + `

An organization's registrars register its registrars; this is for one
without an active registrar. A lost or compromised registrar key is still
active: suspend it first (propose suspend-member).`,
		Example: `  emrcli propose add-registrar --from registrar --org st-mary --registrar-sign-pub-key 1f2e... --registrar-enc-pub-key 9a8b... --reason "its registrar was suspended"`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sp, ep, err := reg.keys(a)
			if err != nil {
				return err
			}
			change := &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_AddRegistrar{AddRegistrar: &emrv1.AddRegistrar{
				OrganizationId: org, SignPubKey: sp, EncPubKey: ep, CredentialRef: reg.credential,
			}}}
			return pf.submit(a, cmd, change)
		},
	}
	pf.add(a, cmd)
	reg.add(a, cmd, "the registrar's")
	cmd.Flags().StringVar(&org, "org", "", "the organization's id")
	_ = cmd.MarkFlagRequired("org")
	return cmd
}

func newProposeStatusCmd(a *cli, verb, short string, status emrv1.MemberStatus) *cobra.Command {
	var pf proposeFlags
	cmd := &cobra.Command{
		Use:   verb + " --from REGISTRAR MEMBER --reason TEXT",
		Short: short,
		Long: governanceLong + `

A registrar suspends members of its own organization directly ("emrcli
member suspend"); this is for a member of an organization that will not,
its registrars included. A member the consortium suspended is reactivated
only by another proposal. Nobody proposes or approves a change of their own
status, so an organization's last active registrar can be suspended only
where the other organizations are more than two thirds (four or more
organizations). An organization can still register new members while it
has an active registrar.`,
		Example: fmt.Sprintf("  emrcli propose %s --from registrar 3F2A0C9D5E6B7A8190AB3F2A0C9D5E6B7A8190AB --reason \"key compromised\"", verb),
		Args:    exactArgs(1, "one MEMBER (address or key name)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := a.address(args[0])
			if err != nil {
				return err
			}
			change := &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetMemberStatus{SetMemberStatus: &emrv1.SetMemberStatus{
				Address: addr, Status: status,
			}}}
			return pf.submit(a, cmd, change)
		},
	}
	pf.add(a, cmd)
	cmd.ValidArgsFunction = a.completeKeys
	return cmd
}

func newProposeOrgCmd(a *cli) *cobra.Command {
	var pf proposeFlags
	var reg registrarFlags
	var id, name, kindStr string
	cmd := &cobra.Command{
		Use:   "add-organization --from REGISTRAR --id ID --name NAME --kind KIND (--registrar-key NAME | --registrar-sign-pub-key HEX --registrar-enc-pub-key HEX) --reason TEXT",
		Short: "Propose to admit an organization and seat its first registrar",
		Long: governanceLong + `

The first registrar's public keys come from a key in this keyring
(--registrar-key) or are given in hex (the new organization's registrar
runs "emrcli keys show NAME --json" and sends them). Once the proposal
executes, that registrar registers the organization's other members.`,
		Example: `  emrcli propose add-organization --from registrar --id st-mary --name "St Mary's" --kind hospital \
      --registrar-sign-pub-key 1f2e... --registrar-enc-pub-key 9a8b... --credential REG-1 --reason "joins the regional network"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind, err := app.ParseOrganizationKind(kindStr)
			if err != nil {
				return usagef("--kind: %v", err)
			}
			sp, ep, err := reg.keys(a)
			if err != nil {
				return err
			}
			change := &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_AddOrganization{AddOrganization: &emrv1.AddOrganization{
				Organization:           &emrv1.Organization{Id: id, Name: name, Kind: kind},
				RegistrarSignPubKey:    sp,
				RegistrarEncPubKey:     ep,
				RegistrarCredentialRef: reg.credential,
			}}}
			return pf.submit(a, cmd, change)
		},
	}
	pf.add(a, cmd)
	reg.add(a, cmd, "the first registrar's")
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "the organization's id (lowercase letters, digits, '.', '_', '-')")
	f.StringVar(&name, "name", "", "the organization's name")
	f.StringVar(&kindStr, "kind", "", "hospital, lab, pharmacy or research")
	for _, name := range []string{"id", "name", "kind"} {
		_ = cmd.MarkFlagRequired(name)
	}
	_ = cmd.RegisterFlagCompletionFunc("kind", cobra.FixedCompletions([]string{"hospital", "lab", "pharmacy", "research"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func newProposeValidatorCmd(a *cli) *cobra.Command {
	var pf proposeFlags
	var pubKey, possessionText string
	var power int64
	cmd := &cobra.Command{
		Use:   "validator --from REGISTRAR --pub-key KEY --power N [--possession SIG] --reason TEXT",
		Short: "Propose to add a validator, change its voting power, or remove it (--power 0)",
		Long: governanceLong + `

--pub-key is the node's ed25519 consensus key: the "value" of "pub_key" in
what "emrchaind show validator" prints (base64), or the same 32 bytes in
hex. Power 0 removes the validator; every validator init and testnet make
has power 10. Before adding a node, start it as a full node and let it catch
up: from two blocks after the change, it must sign.

--possession is the key's proof of possession, which a proposal adding a
key (one that is not a validator now) must carry: the node's operator runs
"emrchaind show validator --possession" on that node, once it has this
chain's genesis.json, and hands its output (base64) to the proposer with
the key. It is the key's signature of this chain's id, the key and the
key's change count (how many executed proposals changed its power: 0 for
a key never a validator), so the chain refuses to add a key nobody holds
(a typo, the wrong key pasted), and a possession made before the key's
last change (the one of the proposal that first added a key since
removed) cannot add it again. To re-add a removed key, its operator runs
"emrchaind show validator --possession --changes N", N being the key's
count. A change of an existing validator's power needs none; one given
is checked all the same. Before signing anything, emrcli reads the key's
power and change count from the chain (verified unless --no-verify) and
checks the possession as the chain will: a missing one, or one that is
not the key's signature for this chain and that count (another key's,
another chain's, one made for an earlier count), is refused (exit 2),
naming the count N to make it for.`,
		Example: `  emrcli propose validator --from registrar --pub-key 6Z9TkQb1...Q= --power 10 --possession jWG4Hcwe...DQ== --reason "St Mary's node"
  emrcli propose validator --from registrar --pub-key 6Z9TkQb1...Q= --power 0 --reason "decommissioned"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := parseConsensusKey(pubKey)
			if err != nil {
				return err
			}
			if power < 0 || power > app.MaxValidatorPower {
				return usagef("--power %d: want 0 (remove) to %d", power, app.MaxValidatorPower)
			}
			var possession []byte
			if cmd.Flags().Changed("possession") {
				if possession, err = parsePossession(possessionText); err != nil {
					return err
				}
			}
			set := &emrv1.SetValidatorPower{PubKey: key, Power: power, Possession: possession}
			// A removal without a possession cannot fail the check: it
			// reads nothing (a lost key's removal waits for no read).
			if possession != nil || power > 0 {
				if err := a.checkPossession(cmd.Context(), set); err != nil {
					return err
				}
			}
			change := &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetValidatorPower{SetValidatorPower: set}}
			return pf.submit(a, cmd, change)
		},
	}
	pf.add(a, cmd)
	f := cmd.Flags()
	f.StringVar(&pubKey, "pub-key", "", `the validator's ed25519 consensus key (base64 as "emrchaind show validator" prints it, or hex)`)
	f.Int64Var(&power, "power", 0, "voting power; 0 removes the validator")
	f.StringVar(&possessionText, "possession", "", `the key's proof of possession (base64), as "emrchaind show validator --possession" prints it on the node; required to add a key that is not a validator`)
	for _, name := range []string{"pub-key", "power"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// checkPossession checks set's proof of possession before anything is
// signed, by the chain's rule (app.ValidatorPossessionProblem) applied to
// the key's power and change count read from the chain now: a usage
// error (exit 2) says what is wrong and the count to make it for. The
// chain checks it again when the proposal is made (its count may have
// moved on meanwhile).
func (a *cli) checkPossession(ctx context.Context, set *emrv1.SetValidatorPower) error {
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	var resp emrv1.QueryValidatorKeyResponse
	if _, err := c.QueryInfo(ctx, "ValidatorKey", &emrv1.QueryValidatorKeyRequest{PubKey: set.PubKey}, &resp); err != nil {
		return fmt.Errorf("read the change count of %s, which its proof of possession is for: %w", app.ValidatorKeyText(set.PubKey), err)
	}
	return possessionProblem(c.ChainID(), set, resp.GetValidator().GetPower(), resp.GetChanges())
}

// earlierCounts bounds the earlier change counts possessionProblem tries a
// possession against, newest first: one kept from the key's last few
// changes is the likely mistake, and each try is a signature
// verification.
const earlierCounts = 64

// possessionProblem is app.ValidatorPossessionProblem for set on chain
// chainID, its key of power power and change count changes now, as a usage
// error; nil when the chain would take it. A possession made for an
// earlier count (one kept from before the key's last change) is named as
// such.
func possessionProblem(chainID string, set *emrv1.SetValidatorPower, power int64, changes uint64) error {
	set = proto.Clone(set).(*emrv1.SetValidatorPower)
	set.FromPower, set.FromChanges = power, changes
	why := app.ValidatorPossessionProblem(chainID, set)
	if why == "" {
		return nil
	}
	for n := changes; n > 0 && changes-n < earlierCounts && len(set.Possession) > 0; n-- {
		if app.VerifyValidatorPossession(chainID, set.PubKey, n-1, set.Possession) {
			since := "change"
			if d := changes - (n - 1); d > 1 {
				since = fmt.Sprintf("%d changes", d)
			}
			why += fmt.Sprintf(" (this one is the key's possession for change count %d, made before the key's last %s)", n-1, since)
			break
		}
	}
	return usagef("--possession: %s", why)
}

// parseConsensusKey reads a 32-byte ed25519 key in hex or standard base64.
func parseConsensusKey(s string) ([]byte, error) {
	if b, ok := decodeHex(s, 32); ok {
		return b, nil
	}
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s)); err == nil && len(b) == 32 {
		return b, nil
	}
	return nil, usagef("--pub-key: want the 32-byte ed25519 key in base64 (44 characters) or hex (64)")
}

// parsePossession reads a 64-byte proof of possession in standard base64,
// as "emrchaind show validator --possession" prints it.
func parsePossession(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s)); err == nil && len(b) == app.SignatureSize {
		return b, nil
	}
	return nil, usagef(`--possession: want the 64-byte signature in base64 (88 characters), as "emrchaind show validator --possession" prints it`)
}

// proposeFlags are the flags every propose subcommand has.
type proposeFlags struct {
	from, reason string
	async        bool
}

func (p *proposeFlags) add(a *cli, cmd *cobra.Command) {
	a.keyFlag(cmd, &p.from, "from", "registrar key that signs")
	cmd.Flags().StringVar(&p.reason, "reason", "", "why, for the other registrars (required)")
	cmd.Flags().BoolVar(&p.async, "async", false, "do not wait for the transaction to commit")
	_ = cmd.MarkFlagRequired("reason")
}

// registrarFlags name a registrar-to-be: its public keys (from the
// keyring or in hex) and its credential.
type registrarFlags struct {
	key, signPub, encPub, credential string
}

func (r *registrarFlags) add(a *cli, cmd *cobra.Command, whose string) {
	a.keyFlag(cmd, &r.key, "registrar-key", whose+" key, in this keyring")
	cmd.Flags().StringVar(&r.signPub, "registrar-sign-pub-key", "", whose+" ed25519 public key (hex)")
	cmd.Flags().StringVar(&r.encPub, "registrar-enc-pub-key", "", whose+" X25519 public key (hex)")
	cmd.Flags().StringVar(&r.credential, "credential", "", whose+" credential reference")
}

func (r *registrarFlags) keys(a *cli) (sign, enc []byte, err error) {
	return a.memberKeys(r.key, r.signPub, r.encPub, "--registrar-key", "--registrar-sign-pub-key", "--registrar-enc-pub-key")
}

// submit submits a MsgPropose of change and prints the proposal it made.
func (p *proposeFlags) submit(a *cli, cmd *cobra.Command, change *emrv1.ConsortiumChange) error {
	k, err := a.key(p.from)
	if err != nil {
		return err
	}
	msg := &emrv1.Msg{Sum: &emrv1.Msg_Propose{Propose: &emrv1.MsgPropose{Change: change, Reason: p.reason}}}
	res, err := a.submit(cmd.Context(), k, msg, p.async)
	if err != nil {
		return err
	}
	var id uint64
	if ids := res.Attribute(app.EventType, app.ProposalAttribute); len(ids) == 1 {
		id, _ = strconv.ParseUint(ids[0], 10, 64)
	}
	return a.emitDecision(cmd, id, res)
}

func newApproveCmd(a *cli) *cobra.Command {
	return newDecisionCmd(a, &cobra.Command{
		Use:   "approve --from REGISTRAR PROPOSAL",
		Short: "Approve a consortium proposal for your organization",
		Long:  governanceLong + "\n\nSee the proposal first: emrcli proposals PROPOSAL.",
		Example: `  emrcli proposals 3
  emrcli approve --from registrar 3`,
	}, func(id uint64) *emrv1.Msg {
		return &emrv1.Msg{Sum: &emrv1.Msg_Approve{Approve: &emrv1.MsgApprove{ProposalId: id}}}
	})
}

func newWithdrawCmd(a *cli) *cobra.Command {
	return newDecisionCmd(a, &cobra.Command{
		Use:   "withdraw --from REGISTRAR PROPOSAL",
		Short: "Withdraw a consortium proposal you made",
		Long: `Withdraw an open proposal (a mistaken key, a change no longer wanted):
it can no longer be approved or executed. Only the registrar who made it
withdraws it; not another registrar of its organization, who may be the
one the proposal is about. An executed proposal, or one whose voting
ended, cannot be withdrawn.`,
		Example: "  emrcli withdraw --from registrar 3",
	}, func(id uint64) *emrv1.Msg {
		return &emrv1.Msg{Sum: &emrv1.Msg_Withdraw{Withdraw: &emrv1.MsgWithdraw{ProposalId: id}}}
	})
}

// newDecisionCmd completes cmd, a command that signs msg(PROPOSAL) with
// --from and prints the proposal it left.
func newDecisionCmd(a *cli, cmd *cobra.Command, msg func(id uint64) *emrv1.Msg) *cobra.Command {
	var from string
	var async bool
	cmd.Args = exactArgs(1, "one PROPOSAL id")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		id, err := parseProposalID(args[0])
		if err != nil {
			return err
		}
		k, err := a.key(from)
		if err != nil {
			return err
		}
		res, err := a.submit(cmd.Context(), k, msg(id), async)
		if err != nil {
			return err
		}
		return a.emitDecision(cmd, id, res)
	}
	a.keyFlag(cmd, &from, "from", "registrar key that signs")
	cmd.Flags().BoolVar(&async, "async", false, "do not wait for the transaction to commit")
	return cmd
}

// emitDecision prints the transaction a propose, approve or withdraw
// submitted and,
// once it committed, the proposal it left, read back verified (which
// waits for the next header). The read-back is for show: when it fails,
// the transaction is committed all the same, so the command succeeds and
// a warning on stderr says where to look.
func (a *cli) emitDecision(cmd *cobra.Command, id uint64, res *client.TxResult) error {
	out := struct {
		ProposalID uint64        `json:"proposal_id,omitempty"`
		Proposal   *proposalView `json:"proposal,omitempty"`
		Tx         *txView       `json:"tx"`
		// Of the read-back; none without one.
		*provenance
	}{ProposalID: id, Tx: viewTx(res)}
	if res.Height > 0 && id > 0 {
		v, prov, err := a.readProposal(cmd.Context(), id)
		if err != nil {
			fmt.Fprintf(a.stderr, "warning: the transaction is committed (height %d), but reading proposal %d back failed: %s; see it with: emrcli proposals %d\n",
				res.Height, id, app.OneLine(err.Error()), id)
		}
		out.Proposal, out.provenance = v, prov
	}
	return a.emit(out, func(w io.Writer) {
		if p := out.Proposal; p != nil {
			fmt.Fprintf(w, "proposal %d: %s\n", p.ID, p.Change)
			switch p.Status {
			case "executed":
				fmt.Fprintf(w, "executed at height %d (approved by %s)\n", p.ExecutedHeight, strings.Join(p.Approvals, ", "))
			case "withdrawn":
				fmt.Fprintf(w, "withdrawn at height %d (approved by %s)\n", p.WithdrawnHeight, strings.Join(p.Approvals, ", "))
			default:
				fmt.Fprintf(w, "%s; approved by %s; voting ends %s\n", p.Status, strings.Join(p.Approvals, ", "), p.VotingEnd)
			}
			if p.Overtaken != "" {
				fmt.Fprintf(w, "it can no longer execute: %s\n", app.OneLine(p.Overtaken))
			}
		} else if out.ProposalID > 0 && out.Tx.Committed {
			fmt.Fprintf(w, "proposal %d\n", out.ProposalID) // not read back: see the warning
		}
		out.Tx.text(w)
		if out.provenance != nil {
			out.provenance.text(w)
		}
	})
}

// readProposal reads proposal id, verified, and whether it was overtaken.
func (a *cli) readProposal(ctx context.Context, id uint64) (*proposalView, *provenance, error) {
	c, err := a.client(ctx)
	if err != nil {
		return nil, nil, err
	}
	var resp emrv1.QueryProposalResponse
	info, err := c.QueryInfo(ctx, "Proposal", &emrv1.QueryProposalRequest{Id: id}, &resp)
	if err != nil {
		return nil, nil, err
	}
	views, err := viewProposals(ctx, c, []*emrv1.Proposal{resp.Proposal}, info)
	if err != nil {
		return nil, nil, err
	}
	prov := viewInfo(info)
	return &views[0], &prov, nil
}

type proposalView struct {
	ID              uint64   `json:"id"`
	Change          string   `json:"change"`
	Reason          string   `json:"reason"`
	Proposer        string   `json:"proposer"`
	Approvals       []string `json:"approvals"`
	Height          int64    `json:"height"`
	Time            string   `json:"time"`
	VotingEnd       string   `json:"voting_end"`
	Status          string   `json:"status"`
	Overtaken       string   `json:"overtaken,omitempty"` // status "overtaken": why it can no longer execute
	ExecutedHeight  int64    `json:"executed_height,omitempty"`
	WithdrawnHeight int64    `json:"withdrawn_height,omitempty"`
	// A params change: the whole new set, and the set it replaces (for
	// programs; change says what differs).
	Params     *paramsView `json:"params,omitempty"`
	FromParams *paramsView `json:"from_params,omitempty"`
}

// viewProposal describes p; an open proposal whose voting ended by now (a
// verified header's time; zero when unknown) is "expired", by the chain's
// rule (approvals are refused from voting_end on). Whether an open one was
// overtaken, viewProposals tells.
func viewProposal(p *emrv1.Proposal, now time.Time) proposalView {
	v := proposalView{
		ID: p.Id, Reason: p.Reason, Proposer: upperHex(p.Proposer), Approvals: append([]string{}, p.Approvals...),
		Height: p.Height, Time: ts(p.Time), VotingEnd: ts(p.VotingEnd), ExecutedHeight: p.ExecutedHeight, WithdrawnHeight: p.WithdrawnHeight,
	}
	// Getters: an unverified node's change may have a nil part.
	switch c := p.Change.GetChange().(type) {
	case *emrv1.ConsortiumChange_AddOrganization:
		o := c.AddOrganization.GetOrganization()
		v.Change = fmt.Sprintf("admit %s (%q, %s) with registrar %s", o.GetId(), o.GetName(),
			enumName(o.GetKind().String(), "ORGANIZATION_KIND_"), upperHex(app.AddressOf(c.AddOrganization.GetRegistrarSignPubKey())))
	case *emrv1.ConsortiumChange_SetValidatorPower:
		set := c.SetValidatorPower
		v.Change = fmt.Sprintf("set validator %s power to %d (from %d)", app.ValidatorKeyText(set.GetPubKey()), set.GetPower(), set.GetFromPower())
	case *emrv1.ConsortiumChange_SetMemberStatus:
		// Said as what the proposal would do: it may still be open.
		verb := "set the status of member %s to " + statusName(c.SetMemberStatus.GetStatus())
		switch c.SetMemberStatus.GetStatus() {
		case emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED:
			verb = "suspend member %s"
		case emrv1.MemberStatus_MEMBER_STATUS_ACTIVE:
			verb = "reactivate member %s"
		}
		v.Change = fmt.Sprintf(verb, upperHex(c.SetMemberStatus.GetAddress()))
	case *emrv1.ConsortiumChange_AddRegistrar:
		v.Change = fmt.Sprintf("seat registrar %s in %s", upperHex(app.AddressOf(c.AddRegistrar.GetSignPubKey())), c.AddRegistrar.GetOrganizationId())
	case *emrv1.ConsortiumChange_RetireOrganization:
		v.Change = fmt.Sprintf("retire %s (all its members, for good)", c.RetireOrganization.GetOrganizationId())
	case *emrv1.ConsortiumChange_SetParams:
		v.Change = paramsChangeText(c.SetParams)
		if p := c.SetParams.GetParams(); p != nil {
			v.Params = &paramsView{}
			*v.Params = viewParams(p)
		}
		if p := c.SetParams.GetFromParams(); p != nil {
			v.FromParams = &paramsView{}
			*v.FromParams = viewParams(p)
		}
	}
	switch {
	case p.Status == emrv1.ProposalStatus_PROPOSAL_STATUS_EXECUTED:
		v.Status = "executed"
	case p.Status == emrv1.ProposalStatus_PROPOSAL_STATUS_WITHDRAWN:
		v.Status = "withdrawn"
	case p.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_OPEN && p.Status != emrv1.ProposalStatus_PROPOSAL_STATUS_UNSPECIFIED:
		// A status of a newer chain: closed in some way this emrcli
		// cannot name; never shown as open (or judged overtaken).
		v.Status = fmt.Sprintf("status %d", int32(p.Status))
	case !now.IsZero() && !now.Before(p.VotingEnd.AsTime()):
		v.Status = "expired"
	default:
		v.Status = "open"
	}
	return v
}

// viewProposals describes list, read at info, and tells the open
// proposals that another change overtook ("overtaken") from the others,
// by the chain's rules applied to the state at info's height.
func viewProposals(ctx context.Context, c *client.Client, list []*emrv1.Proposal, info *client.QueryInfo) ([]proposalView, error) {
	views := make([]proposalView, 0, len(list))
	var open []*emrv1.Proposal
	for _, p := range list {
		v := viewProposal(p, info.Time)
		if v.Status == "open" {
			open = append(open, p)
		}
		views = append(views, v)
	}
	if len(open) == 0 {
		return views, nil
	}
	state, err := readOvertakingState(ctx, c, info.Height, open)
	if err != nil {
		return nil, fmt.Errorf("reading whether open proposals were overtaken: %w", err)
	}
	for i, p := range list {
		if views[i].Status != "open" {
			continue
		}
		if why := state.overtakenReason(p); why != "" {
			views[i].Status, views[i].Overtaken = "overtaken", why
		}
	}
	return views, nil
}

// overtakingState is the state open proposals are judged by, to tell
// whether another change overtook them: answers (verified unless
// --no-verify) at the height the proposals themselves were read at, so
// that a proposal executed after that height is not taken for one its own
// change overtook.
type overtakingState struct {
	// validatorKeys are the ValidatorKey answers of the keys validator
	// changes name (power and change count), by key (nil: none).
	validatorKeys map[string]*emrv1.QueryValidatorKeyResponse
	// members are the members status changes name, by address (nil: none).
	members map[string]*emrv1.Member
	// organizations are those admissions, registrar seatings,
	// retirements and params changes (storage organizations newly named)
	// name, by id (nil: none).
	organizations map[string]*emrv1.QueryOrganizationResponse
	// paramsChanges is how many executed proposals changed the params;
	// read only when paramsRead.
	paramsChanges uint64
	paramsRead    bool
}

// readOvertakingState reads, at height, what the open proposals need:
// each consensus key a validator change names (its power and change
// count), each member a status change names, each organization an
// admission, a registrar seating or a retirement names, and the count of
// params changes once and each storage organization newly named (a params
// change).
func readOvertakingState(ctx context.Context, c *client.Client, height int64, open []*emrv1.Proposal) (*overtakingState, error) {
	s := &overtakingState{validatorKeys: map[string]*emrv1.QueryValidatorKeyResponse{},
		members: map[string]*emrv1.Member{}, organizations: map[string]*emrv1.QueryOrganizationResponse{}}
	readOrganization := func(id string) error {
		if _, read := s.organizations[id]; read {
			return nil
		}
		var resp emrv1.QueryOrganizationResponse
		_, err := c.QueryInfoAt(ctx, height, "Organization", &emrv1.QueryOrganizationRequest{Id: id}, &resp)
		switch {
		case errors.Is(err, client.ErrNotFound):
			s.organizations[id] = nil
		case err != nil:
			return fmt.Errorf("organization %s: %w", id, err)
		default:
			s.organizations[id] = &resp
		}
		return nil
	}
	for _, p := range open {
		switch change := p.Change.GetChange().(type) {
		case *emrv1.ConsortiumChange_SetValidatorPower:
			key := change.SetValidatorPower.GetPubKey()
			// A key not of 32 bytes (only from an unverified node) has
			// no answer: its proposal stays open.
			if _, read := s.validatorKeys[string(key)]; read || len(key) != app.PubKeySize {
				continue
			}
			var resp emrv1.QueryValidatorKeyResponse
			if _, err := c.QueryInfoAt(ctx, height, "ValidatorKey", &emrv1.QueryValidatorKeyRequest{PubKey: key}, &resp); err != nil {
				return nil, fmt.Errorf("validator %s: %w", app.ValidatorKeyText(key), err)
			}
			s.validatorKeys[string(key)] = &resp
		case *emrv1.ConsortiumChange_SetMemberStatus:
			// A reactivation (app.MemberStatusChangeOvertaken), and any
			// change of a retired member (app.MemberRetired), is
			// overtaken.
			set := change.SetMemberStatus
			if _, read := s.members[string(set.GetAddress())]; read {
				continue
			}
			var resp emrv1.QueryMemberResponse
			_, err := c.QueryInfoAt(ctx, height, "Member", &emrv1.QueryMemberRequest{Address: hex.EncodeToString(set.GetAddress())}, &resp)
			if err != nil && !errors.Is(err, client.ErrNotFound) {
				return nil, fmt.Errorf("member %X: %w", set.GetAddress(), err)
			}
			s.members[string(set.GetAddress())] = resp.GetMember() // nil when not found
		case *emrv1.ConsortiumChange_AddOrganization:
			if err := readOrganization(change.AddOrganization.GetOrganization().GetId()); err != nil {
				return nil, err
			}
		case *emrv1.ConsortiumChange_AddRegistrar:
			if err := readOrganization(change.AddRegistrar.GetOrganizationId()); err != nil {
				return nil, err
			}
		case *emrv1.ConsortiumChange_RetireOrganization:
			if err := readOrganization(change.RetireOrganization.GetOrganizationId()); err != nil {
				return nil, err
			}
		case *emrv1.ConsortiumChange_SetParams:
			// While the params are unchanged since the proposal, the chain
			// has its from_params: the organizations it newly names must
			// not have retired since.
			for _, id := range app.NewStorageOrganizations(change.SetParams.GetFromParams(), change.SetParams.GetParams()) {
				if err := readOrganization(id); err != nil {
					return nil, err
				}
			}
			if s.paramsRead {
				continue
			}
			var resp emrv1.QueryParamsResponse
			if _, err := c.QueryInfoAt(ctx, height, "Params", &emrv1.QueryParamsRequest{}, &resp); err != nil {
				return nil, fmt.Errorf("params: %w", err)
			}
			s.paramsChanges, s.paramsRead = resp.Changes, true
		}
	}
	return s, nil
}

// overtakenReason says why open proposal p can no longer execute, another
// change having overtaken it, by the chain's rules (app's
// ValidatorChangeOvertaken and the like) applied to s: "" when none did,
// or when s cannot tell.
func (s *overtakingState) overtakenReason(p *emrv1.Proposal) string {
	switch change := p.Change.GetChange().(type) {
	case *emrv1.ConsortiumChange_SetValidatorPower:
		// The key's power and count of executed changes: the chain's
		// rule exactly (changed and changed back, in any block, moved
		// the count on).
		set := change.SetValidatorPower
		if k, read := s.validatorKeys[string(set.GetPubKey())]; read {
			return app.ValidatorChangeOvertaken(set, k.GetValidator().GetPower(), k.GetChanges())
		}
	case *emrv1.ConsortiumChange_SetMemberStatus:
		// A member not found cannot have its status changed: the chain
		// refuses that, but not as overtaken.
		if m := s.members[string(change.SetMemberStatus.GetAddress())]; m != nil {
			if why := app.MemberRetired(m); why != "" {
				return why
			}
			return app.MemberStatusChangeOvertaken(change.SetMemberStatus, m.StatusChanges)
		}
	case *emrv1.ConsortiumChange_AddOrganization:
		if org, read := s.organizations[change.AddOrganization.GetOrganization().GetId()]; read {
			return app.AddOrganizationOvertaken(change.AddOrganization, org != nil)
		}
	case *emrv1.ConsortiumChange_SetParams:
		if !s.paramsRead {
			return ""
		}
		if why := app.ParamsChangeOvertaken(change.SetParams, s.paramsChanges); why != "" {
			return why
		}
		// An organization not found cannot be named: the chain refuses
		// that, but not as overtaken.
		for _, id := range app.NewStorageOrganizations(change.SetParams.GetFromParams(), change.SetParams.GetParams()) {
			if org := s.organizations[id]; org != nil {
				if why := app.OrganizationRetired(id, org.GetOrganization().GetRetiredHeight()); why != "" {
					return why
				}
			}
		}
	case *emrv1.ConsortiumChange_RetireOrganization:
		if org := s.organizations[change.RetireOrganization.GetOrganizationId()]; org != nil {
			return app.OrganizationRetired(change.RetireOrganization.GetOrganizationId(), org.GetOrganization().GetRetiredHeight())
		}
	case *emrv1.ConsortiumChange_AddRegistrar:
		// The registrar list is proven complete (as the chain has it).
		if org := s.organizations[change.AddRegistrar.GetOrganizationId()]; org != nil {
			if why := app.OrganizationRetired(org.GetOrganization().GetId(), org.GetOrganization().GetRetiredHeight()); why != "" {
				return why
			}
			return app.AddRegistrarOvertaken(change.AddRegistrar, slices.ContainsFunc(org.Registrars, func(r *emrv1.Member) bool {
				return r.GetStatus() == emrv1.MemberStatus_MEMBER_STATUS_ACTIVE
			}))
		}
	}
	return ""
}

func newProposalsCmd(a *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "proposals [PROPOSAL]",
		Short: "List the consortium's proposals, or show one (verified)",
		Long: governanceLong + `

Without an argument, every proposal is listed, oldest first. A proposal is
open, executed, withdrawn (by its proposer: emrcli withdraw), expired (its
voting ended) or overtaken: not executed, but
another change overtook it and it can no longer execute, by the chain's
rules and the state the proposals were read from (verified like them): the
validator's power changed since it was proposed (or changed and changed
back: its count of executed changes moved on), the member to reactivate
changed status again, the member to suspend or reactivate is retired, the
organization to admit exists, the organization to seat a registrar in has
an active one or is retired, the organization to retire is retired, the
params changed since they were read, or a storage organization the params
newly name was retired since.`,
		Example: "  emrcli proposals\n  emrcli proposals 3 --json",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var id uint64
			if len(args) == 1 {
				var err error
				if id, err = parseProposalID(args[0]); err != nil {
					return err
				}
			}
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			var list []*emrv1.Proposal
			var orgs uint32
			var info *client.QueryInfo
			if id > 0 {
				var resp emrv1.QueryProposalResponse
				if info, err = c.QueryInfo(ctx, "Proposal", &emrv1.QueryProposalRequest{Id: id}, &resp); err != nil {
					return err
				}
				list, orgs = []*emrv1.Proposal{resp.Proposal}, resp.Organizations
			} else if list, info, err = c.AllProposals(ctx); err != nil {
				return err
			}
			views, err := viewProposals(ctx, c, list, info)
			if err != nil {
				return err
			}
			out := struct {
				Proposals     []proposalView `json:"proposals"`
				Organizations uint32         `json:"organizations,omitempty"`
				provenance
			}{views, orgs, viewInfo(info)}
			return a.emit(out, func(w io.Writer) {
				if len(out.Proposals) == 0 {
					fmt.Fprintln(w, "no proposals")
				}
				var rows [][]string
				for _, p := range out.Proposals {
					rows = append(rows, []string{strconv.FormatUint(p.ID, 10), p.Status, p.Change,
						strings.Join(p.Approvals, ","), p.VotingEnd, p.Reason})
				}
				if len(rows) > 0 {
					table(w, []string{"ID", "STATUS", "CHANGE", "APPROVED BY", "VOTING ENDS", "REASON"}, rows)
				}
				for _, p := range out.Proposals {
					if p.Overtaken != "" {
						fmt.Fprintf(w, "proposal %d is overtaken, it can no longer execute: %s\n", p.ID, app.OneLine(p.Overtaken))
					}
				}
				if orgs > 0 {
					fmt.Fprintf(w, "organizations that can approve: %d (a proposal needs more than two thirds)\n", orgs)
				}
				out.provenance.text(w)
			})
		},
	}
}

func newValidatorsCmd(a *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "validators",
		Short: "List the validator set as the chain last set it (verified)",
		Long: `validators lists the validators the state machine holds, by consensus key
(base64, as "emrchaind show validator" prints it), with their voting power,
the power added and not yet seen signing (cleared once the validator signs
a block under the change, from two blocks after it; changes are refused
that would leave a third or more of the total unseen) and the height that
last changed them. A change executed at height H is CometBFT's from H+2.`,
		Example: "  emrcli validators\n  emrcli validators --json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			var resp emrv1.QueryValidatorsResponse
			info, err := c.QueryInfo(ctx, "Validators", &emrv1.QueryValidatorsRequest{}, &resp)
			if err != nil {
				return err
			}
			type validatorView struct {
				PubKey        string `json:"pub_key"`
				Power         int64  `json:"power"`
				Unseen        int64  `json:"unseen_power"`
				ChangedHeight int64  `json:"changed_height"`
			}
			out := struct {
				Validators []validatorView `json:"validators"`
				provenance
			}{[]validatorView{}, viewInfo(info)}
			var rows [][]string
			for i, v := range resp.Validators {
				key := app.ValidatorKeyText(v.PubKey)
				var unseen int64
				if i < len(resp.UnseenPower) {
					unseen = resp.UnseenPower[i]
				}
				out.Validators = append(out.Validators, validatorView{key, v.Power, unseen, v.ChangedHeight})
				rows = append(rows, []string{key, strconv.FormatInt(v.Power, 10), strconv.FormatInt(unseen, 10), strconv.FormatInt(v.ChangedHeight, 10)})
			}
			return a.emit(out, func(w io.Writer) {
				table(w, []string{"PUB KEY", "POWER", "NOT YET SEEN SIGNING", "CHANGED AT"}, rows)
				out.provenance.text(w)
			})
		},
	}
}

// parseProposalID reads a PROPOSAL argument.
func parseProposalID(arg string) (uint64, error) {
	id, err := strconv.ParseUint(arg, 10, 64)
	if err != nil || id == 0 {
		return 0, usagef("PROPOSAL %q: want a proposal id (1, 2, ...)", arg)
	}
	return id, nil
}
