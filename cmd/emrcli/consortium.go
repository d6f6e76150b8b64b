package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/client"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// Who is in the consortium: its organizations and their members.

type organizationView struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Kind          string `json:"kind"`
	RetiredHeight int64  `json:"retired_height,omitempty"`
}

func viewOrganization(o *emrv1.Organization) organizationView {
	return organizationView{ID: o.Id, Name: o.Name, Kind: enumName(o.Kind.String(), "ORGANIZATION_KIND_"), RetiredHeight: o.RetiredHeight}
}

// state is "member" or "retired at height H".
func (o organizationView) state() string {
	if o.RetiredHeight > 0 {
		return fmt.Sprint("retired at height ", o.RetiredHeight)
	}
	return "member"
}

func newOrganizationsCmd(a *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "organizations [ORG]",
		Short: "List the consortium's organizations, or show one and its registrars (verified)",
		Long: `Without an argument, every organization is listed by id, retired ones too,
proven complete against a light-client-verified header. With one, that
organization is shown with its registrars (active, suspended or retired).
"emrcli member list --org ORG" lists all its members.`,
		Example: "  emrcli organizations\n  emrcli organizations st-mary --json",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				var resp emrv1.QueryOrganizationResponse
				info, err := c.QueryInfo(ctx, "Organization", &emrv1.QueryOrganizationRequest{Id: args[0]}, &resp)
				if err != nil {
					return err
				}
				if resp.Organization == nil {
					return fmt.Errorf("Organization: the node answered without the organization %q", args[0])
				}
				out := struct {
					organizationView
					Registrars []memberView `json:"registrars"`
					provenance
				}{viewOrganization(resp.GetOrganization()), viewMembers(resp.Registrars), viewInfo(info)}
				return a.emit(out, func(w io.Writer) {
					fields(w, "id", out.ID, "name", out.Name, "kind", out.Kind, "state", out.state())
					fmt.Fprintln(w)
					memberTable(w, out.Registrars, a.labeler(), "no registrars")
					out.provenance.text(w)
				})
			}
			orgs, info, err := c.AllOrganizations(ctx)
			if err != nil {
				return err
			}
			out := struct {
				Organizations []organizationView `json:"organizations"`
				provenance
			}{[]organizationView{}, viewInfo(info)}
			var rows [][]string
			for _, o := range orgs {
				v := viewOrganization(o)
				out.Organizations = append(out.Organizations, v)
				rows = append(rows, []string{v.ID, v.Name, v.Kind, v.state()})
			}
			return a.emit(out, func(w io.Writer) {
				table(w, []string{"ID", "NAME", "KIND", "STATE"}, rows)
				out.provenance.text(w)
			})
		},
	}
}

func newMemberListCmd(a *cli) *cobra.Command {
	var org, roleStr, after string
	var limit uint32
	cmd := &cobra.Command{
		Use:   "list --org ORG [--role ROLE] [--after MEMBER --limit N]",
		Short: "List the members of an organization (verified)",
		Long: `list shows the members of one organization, ordered by address, of every
status (active, suspended, retired), each page proven complete against a
light-client-verified header. --role keeps one role: clinician, researcher,
auditor, registrar, emergency-service or storage-service. Without --limit it
pages through all of them.`,
		Example: "  emrcli member list --org st-mary\n  emrcli member list --org st-mary --role storage-service --json\n" +
			"  emrcli member list --org st-mary --limit 50 --after 3F2A0C9D5E6B7A8190AB3F2A0C9D5E6B7A8190AB",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if org == "" {
				return usagef("--org is required: the organization whose members to list (emrcli organizations lists them)")
			}
			var role emrv1.Role
			if roleStr != "" {
				var err error
				if role, err = parseRole(roleStr); err != nil {
					return err
				}
			}
			var afterHex string
			if after != "" {
				addr, err := a.address(after)
				if err != nil {
					return err
				}
				afterHex = hexStr(addr)
			}
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			var members []*emrv1.Member
			var info *client.QueryInfo
			var next string
			if limit > 0 || after != "" {
				var resp emrv1.QueryMembersResponse
				req := &emrv1.QueryMembersRequest{Organization: org, Role: role, After: afterHex, Limit: limit}
				if info, err = c.QueryInfo(ctx, "Members", req, &resp); err != nil {
					return err
				}
				members, next = resp.Members, resp.Next
			} else if members, info, err = c.AllMembers(ctx, org, role); err != nil {
				return err
			}
			out := struct {
				Organization string       `json:"organization"`
				Members      []memberView `json:"members"`
				Next         string       `json:"next,omitempty"`
				provenance
			}{org, viewMembers(members), strings.ToUpper(next), viewInfo(info)}
			return a.emit(out, func(w io.Writer) {
				none := "no members"
				if role != emrv1.Role_ROLE_UNSPECIFIED {
					none = fmt.Sprintf("no %s members", roleName(role))
				}
				memberTable(w, out.Members, a.labeler(), none)
				if out.Next != "" {
					fmt.Fprintf(w, "more: --after %s\n", out.Next)
				}
				out.provenance.text(w)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&org, "org", "", "the organization id")
	f.StringVar(&roleStr, "role", "", "only members of this role")
	f.StringVar(&after, "after", "", "start after this member (address or key name)")
	f.Uint32Var(&limit, "limit", 0, "members per page (default: all)")
	return cmd
}

func viewMembers(ms []*emrv1.Member) []memberView {
	out := []memberView{}
	for _, m := range ms {
		out = append(out, viewMember(m))
	}
	return out
}

// memberTable prints members one per row, each address with the name of
// the local key that has it, if any.
func memberTable(w io.Writer, ms []memberView, label func(string) string, none string) {
	if len(ms) == 0 {
		fmt.Fprintln(w, none)
		return
	}
	rows := make([][]string, 0, len(ms))
	for _, m := range ms {
		rows = append(rows, []string{label(m.Address), m.Role, m.Status, m.CredentialRef, strconv.FormatInt(m.RegisteredHeight, 10)})
	}
	table(w, []string{"MEMBER", "ROLE", "STATUS", "CREDENTIAL", "REGISTERED AT"}, rows)
}
