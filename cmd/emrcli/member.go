package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

func newMemberCmd(a *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member",
		Short: "Register, suspend, reactivate, show and list members",
		Example: `  emrcli member register --from registrar --key dr-who --role clinician --credential GMC-1234
  emrcli member suspend --from registrar dr-who
  emrcli member show dr-who
  emrcli member list --org st-mary --role clinician`,
	}
	cmd.AddCommand(newMemberRegisterCmd(a),
		newMemberStatusCmd(a, "suspend", "Suspend a member of your organization: it can sign nothing, its grants pause", emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED),
		newMemberStatusCmd(a, "reactivate", "Reactivate a suspended member", emrv1.MemberStatus_MEMBER_STATUS_ACTIVE),
		newMemberShowCmd(a), newMemberListCmd(a))
	return cmd
}

func newMemberRegisterCmd(a *cli) *cobra.Command {
	var from, keyName, signPub, encPub, roleStr, org, credential string
	var async bool
	cmd := &cobra.Command{
		Use:   "register --from REGISTRAR (--key NAME | --sign-pub-key HEX --enc-pub-key HEX) --role ROLE --credential REF",
		Short: "Register a clinician, researcher, auditor, registrar, emergency or storage service of your organization",
		Long: `A registrar registers a member of its own organization, attesting its
credential (e.g. a licence number). The member's public keys come from a key
in this keyring (--key) or are given in hex (the member runs
"emrcli keys show NAME --json" and sends them). Patients enroll themselves.

Role emergency-service is the organization's break-glass service: its
encryption key is the organization's emergency key, held by the sidecar that
runs the service (emrchaind's sidecar, given that key), not by a person.
Patients opt in to emergency reads by the organization's clinicians by
granting it the emergency right ("emrcli grant --rights emergency"); it is
granted nothing else.

Role storage-service (only for an organization the consortium names in
params.storage_organizations) is the identity the organization's sidecar
signs with towards the other hospitals' sidecars (emrchaind's sidecar, given that key as
[sidecar] storage_key): with it the sidecar keeps a copy of the ciphertext of
every committed record and share (or, with params.storage_copies, of those
placed at its organization), and repairs a copy it finds damaged. It is
granted nothing and decrypts nothing.`,
		Example: `  emrcli member register --from registrar --key dr-who --role clinician --credential GMC-1234
  emrcli member register --from registrar --sign-pub-key 1f2e... --enc-pub-key 9a8b... --role researcher --credential ORCID-0000-0002
  emrcli member register --from registrar --key st-mary-emergency --role emergency-service --credential ER-ON-CALL
  emrcli member register --from registrar --key st-mary-storage --role storage-service --credential SIDECAR-1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			role, err := parseRole(roleStr)
			if err != nil {
				return err
			}
			if strings.TrimSpace(credential) == "" {
				return usagef("--credential is required: the reference (e.g. a licence number) the registrar attests for the member")
			}
			sp, ep, err := a.memberKeys(keyName, signPub, encPub, "--key", "--sign-pub-key", "--enc-pub-key")
			if err != nil {
				return err
			}
			k, err := a.key(from)
			if err != nil {
				return err
			}
			if org == "" {
				c, err := a.client(ctx)
				if err != nil {
					return err
				}
				reg, err := c.Member(ctx, k.Address())
				if err != nil {
					return fmt.Errorf("registrar %q: %w", from, err)
				}
				org = reg.OrganizationId
			}
			msg := &emrv1.Msg{Sum: &emrv1.Msg_RegisterMember{RegisterMember: &emrv1.MsgRegisterMember{
				SignPubKey: sp, EncPubKey: ep, Role: role, OrganizationId: org, CredentialRef: credential,
			}}}
			res, err := a.submit(ctx, k, msg, async)
			if err != nil {
				return err
			}
			out := struct {
				Address      string  `json:"address"`
				Role         string  `json:"role"`
				Organization string  `json:"organization"`
				Tx           *txView `json:"tx"`
			}{upperHex(app.AddressOf(sp)), roleName(role), org, viewTx(res)}
			return a.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "registered %s as %s of %s\n", out.Address, out.Role, out.Organization)
				out.Tx.text(w)
			})
		},
	}
	f := cmd.Flags()
	a.keyFlag(cmd, &from, "from", "registrar key that signs")
	a.keyFlag(cmd, &keyName, "key", "the new member's key, in this keyring")
	f.StringVar(&signPub, "sign-pub-key", "", "the new member's ed25519 public key (hex)")
	f.StringVar(&encPub, "enc-pub-key", "", "the new member's X25519 public key (hex)")
	f.StringVar(&roleStr, "role", "", "clinician, researcher, auditor, registrar, emergency-service or storage-service (a hospital sidecar's identity towards its peers)")
	f.StringVar(&org, "org", "", "organization id (default: the registrar's own)")
	f.StringVar(&credential, "credential", "", "credential reference the registrar attests, e.g. a licence number (required)")
	f.BoolVar(&async, "async", false, "do not wait for the transaction to commit")
	_ = cmd.MarkFlagRequired("role")
	_ = cmd.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"clinician", "researcher", "auditor", "registrar", "emergency-service", "storage-service"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// memberKeys are a new member's public keys: those of keyName in this
// keyring, or signPub and encPub in hex. The flag names go into errors.
func (a *cli) memberKeys(keyName, signPub, encPub, keyFlag, signFlag, encFlag string) (sign, enc []byte, err error) {
	switch {
	case keyName != "" && (signPub != "" || encPub != ""):
		return nil, nil, usagef("give %s or %s/%s, not both", keyFlag, signFlag, encFlag)
	case keyName != "":
		info, err := a.info(keyName)
		if err != nil {
			return nil, nil, err
		}
		return info.SignPubKey, info.EncPubKey, nil
	}
	sign, ok1 := decodeHex(signPub, 32)
	enc, ok2 := decodeHex(encPub, 32)
	if !ok1 || !ok2 {
		return nil, nil, usagef("%s and %s: want 64 hex characters each (or use %s)", signFlag, encFlag, keyFlag)
	}
	return sign, enc, nil
}

func newMemberStatusCmd(a *cli, verb, short string, status emrv1.MemberStatus) *cobra.Command {
	var from string
	var async bool
	cmd := &cobra.Command{
		Use:     verb + " --from REGISTRAR MEMBER",
		Short:   short,
		Example: fmt.Sprintf("  emrcli member %s --from registrar dr-who\n  emrcli member %s --from registrar 3F2A0C9D5E6B7A8190AB3F2A0C9D5E6B7A8190AB", verb, verb),
		Args:    exactArgs(1, "one MEMBER (address or key name)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := a.address(args[0])
			if err != nil {
				return err
			}
			k, err := a.key(from)
			if err != nil {
				return err
			}
			msg := &emrv1.Msg{Sum: &emrv1.Msg_SetMemberStatus{SetMemberStatus: &emrv1.MsgSetMemberStatus{Address: addr, Status: status}}}
			res, err := a.submit(cmd.Context(), k, msg, async)
			if err != nil {
				return err
			}
			out := struct {
				Address string  `json:"address"`
				Status  string  `json:"status"`
				Tx      *txView `json:"tx"`
			}{upperHex(addr), statusName(status), viewTx(res)}
			return a.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "%s is now %s\n", out.Address, out.Status)
				out.Tx.text(w)
			})
		},
	}
	a.keyFlag(cmd, &from, "from", "registrar key that signs")
	cmd.Flags().BoolVar(&async, "async", false, "do not wait for the transaction to commit")
	cmd.ValidArgsFunction = a.completeKeys
	return cmd
}

func newMemberShowCmd(a *cli) *cobra.Command {
	return &cobra.Command{
		Use:               "show MEMBER",
		Short:             "Show a member (verified)",
		Example:           "  emrcli member show dr-who\n  emrcli member show 3F2A0C9D5E6B7A8190AB3F2A0C9D5E6B7A8190AB --json",
		ValidArgsFunction: a.completeKeys,
		Args:              exactArgs(1, "one MEMBER (address or key name)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			addr, c, err := a.memberClient(ctx, args[0])
			if err != nil {
				return err
			}
			var resp emrv1.QueryMemberResponse
			info, err := c.QueryInfo(ctx, "Member", &emrv1.QueryMemberRequest{Address: hexStr(addr)}, &resp)
			if err != nil {
				return err
			}
			if resp.Member == nil {
				return errors.New("no member in the answer")
			}
			v := viewMember(resp.Member)
			out := struct {
				memberView
				provenance
			}{v, viewInfo(info)}
			return a.emit(out, func(w io.Writer) { v.text(w); out.provenance.text(w) })
		},
	}
}
