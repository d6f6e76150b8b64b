package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// blockTime is the time to judge consents by: the verified header's, else
// the local clock.
func blockTime(info *client.QueryInfo) time.Time {
	if info != nil && !info.Time.IsZero() {
		return info.Time
	}
	return time.Now()
}

func newPermissionsCmd(a *cli) *cobra.Command {
	var from, patient string
	cmd := &cobra.Command{
		Use:   "permissions [--patient ID | --from KEY]",
		Short: "List the consents a patient has given (verified)",
		Long: `permissions lists every consent the patient has given, active, expired and
revoked, each proven against a light-client-verified header.

An expired consent whose grantee was handed the patient's current key is
marked "holds the current key": new records are encrypted under that key
until it rotates, and an expiry does not rotate it (the chain cannot act for
the patient). emrcli revoke --to MEMBER rotates the key past it.`,
		Example: "  emrcli permissions --from alice\n  emrcli permissions --patient 5be1...9f --json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pid, c, err := a.queriedPatient(ctx, patient, from)
			if err != nil {
				return err
			}
			perms, info, err := c.Permissions(ctx, pid)
			if err != nil {
				return err
			}
			now := blockTime(info)
			out := struct {
				PatientID   string           `json:"patient_id"`
				Permissions []permissionView `json:"permissions"`
				provenance
			}{hexStr(pid), []permissionView{}, viewInfo(info)}
			for _, p := range perms {
				out.Permissions = append(out.Permissions, viewPermission(p, now))
			}
			if err := markStanding(ctx, c, info, out.Permissions); err != nil {
				return err
			}
			holders, err := markKeyHolders(ctx, c, info, pid, perms, out.Permissions)
			if err != nil {
				return err
			}
			return a.emit(out, func(w io.Writer) {
				if len(out.Permissions) == 0 {
					fmt.Fprintln(w, "no consents given")
				} else {
					label := a.labeler()
					table(w, []string{"GRANTEE", "RIGHTS", "CATEGORIES", "WINDOW", "KEY V", "STATE"},
						permissionRows(out.Permissions, func(p permissionView) string { return label(p.Grantee) }))
				}
				if holders > 0 {
					fmt.Fprintf(w, "%d ended consent(s) hold the key new records are encrypted under: emrcli revoke --to MEMBER rotates the key past one.\n", holders)
				}
				out.provenance.text(w)
			})
		},
	}
	a.patientFlags(cmd, &patient, &from)
	return cmd
}

func newGrantsCmd(a *cli) *cobra.Command {
	var after string
	var limit uint32
	cmd := &cobra.Command{
		Use:   "grants MEMBER [--after PATIENT --limit N]",
		Short: "List the consents a member holds (verified)",
		Long: `grants lists the consents a member holds, ordered by patient id, each page
proven complete against a light-client-verified header. Without --limit it
pages through all of them (any patient may grant to any clinician, so the
list can be long).`,
		Example: "  emrcli grants dr-who\n  emrcli grants 3F2A0C9D5E6B7A8190AB3F2A0C9D5E6B7A8190AB --json\n" +
			"  emrcli grants dr-who --limit 20 --after 5be1...9f",
		ValidArgsFunction: a.completeKeys,
		Args:              exactArgs(1, "one MEMBER (address or key name)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			addr, c, err := a.memberClient(ctx, args[0])
			if err != nil {
				return err
			}
			var perms []*emrv1.Permission
			var info *client.QueryInfo
			var next string
			if limit > 0 || after != "" {
				var resp emrv1.QueryGrantsResponse
				req := &emrv1.QueryGrantsRequest{Grantee: hexStr(addr), After: after, Limit: limit}
				if info, err = c.QueryInfo(ctx, "Grants", req, &resp); err != nil {
					return err
				}
				perms, next = resp.Permissions, resp.Next
			} else if perms, info, err = c.AllGrants(ctx, addr); err != nil {
				return err
			}
			now := blockTime(info)
			out := struct {
				Grantee     string           `json:"grantee"`
				Permissions []permissionView `json:"permissions"`
				Next        string           `json:"next,omitempty"`
				provenance
			}{upperHex(addr), []permissionView{}, next, viewInfo(info)}
			for _, p := range perms {
				out.Permissions = append(out.Permissions, viewPermission(p, now))
			}
			if err := markStanding(ctx, c, info, out.Permissions); err != nil {
				return err
			}
			return a.emit(out, func(w io.Writer) {
				if len(out.Permissions) == 0 {
					fmt.Fprintln(w, "no consents held")
				} else {
					table(w, []string{"PATIENT", "RIGHTS", "CATEGORIES", "WINDOW", "KEY V", "STATE"},
						permissionRows(out.Permissions, func(p permissionView) string { return p.PatientID }))
				}
				if next != "" {
					fmt.Fprintf(w, "more: --after %s\n", next)
				}
				out.provenance.text(w)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&after, "after", "", "start after this patient id (hex)")
	f.Uint32Var(&limit, "limit", 0, "consents per page (default: all)")
	return cmd
}

func newEmergencyReadsCmd(a *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "emergency-reads MEMBER",
		Short: "Show a clinician's count of patients read in emergencies (verified)",
		Long: `emergency-reads shows how a clinician stands against the chain's limit on
break-glass reads: the patients it read in emergencies ("emrcli download
--purpose emergency") that still count, each for 24 hours of block time from
its read, and how many other patients it may read now, or from when. A
patient counted may be read again without counting anew. The limit is the
consortium's "emergency patients per day" ("emrcli params"; 0 is no limit).
The reads are judged at the time of the light-client-verified header the
answer is checked against (with --no-verify, at this machine's clock). Only
an active clinician reads in emergencies: for another member it says so.`,
		Example:           "  emrcli emergency-reads dr-er\n  emrcli emergency-reads 3F2A0C9D5E6B7A8190AB3F2A0C9D5E6B7A8190AB --json",
		ValidArgsFunction: a.completeKeys,
		Args:              exactArgs(1, "one MEMBER (address or key name)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			addr, c, err := a.memberClient(ctx, args[0])
			if err != nil {
				return err
			}
			allowance, info, err := c.EmergencyReads(ctx, addr)
			if err != nil {
				return err
			}
			out := viewEmergencyAllowance(addr, allowance, info)
			return a.emit(out, out.text)
		},
	}
}

// emergencyAllowanceView is emergency-reads' output.
type emergencyAllowanceView struct {
	Member         string              `json:"member"`
	Role           string              `json:"role"`
	Status         string              `json:"status"`
	PatientsPerDay uint32              `json:"emergency_patients_per_day"`
	Counted        []emergencyReadView `json:"counted"`
	// Barred says why the member reads no patient in an emergency at all.
	Barred string `json:"barred,omitempty"`
	// Left is how many other patients may be read now; absent with no
	// limit, 0 when barred.
	Left *int `json:"left,omitempty"`
	// NextAt is when another may be read, when none may now for the count.
	NextAt string `json:"next_at,omitempty"`
	// JudgedAt is the time the reads were counted at.
	JudgedAt string `json:"judged_at"`
	provenance
}

type emergencyReadView struct {
	PatientID string `json:"patient_id"`
	ReadAt    string `json:"read_at"`
	// CountsUntil is when the read stops counting (in whole seconds,
	// rounded up: at that time it no longer counts).
	CountsUntil string `json:"counts_until"`
}

func viewEmergencyAllowance(addr []byte, a *client.EmergencyAllowance, info *client.QueryInfo) emergencyAllowanceView {
	v := emergencyAllowanceView{
		Member:         upperHex(addr),
		Role:           roleName(a.Member.GetRole()),
		Status:         statusName(a.Member.GetStatus()),
		PatientsPerDay: a.Limit,
		Counted:        []emergencyReadView{},
		JudgedAt:       rfc3339(a.At),
		provenance:     viewInfo(info),
	}
	for _, r := range a.Counted {
		v.Counted = append(v.Counted, emergencyReadView{
			PatientID:   hexStr(r.PatientId),
			ReadAt:      ts(r.Time),
			CountsUntil: rfc3339(app.EmergencyReadEnds(r)),
		})
	}
	if left := a.Left(); left >= 0 {
		v.Left = &left
	}
	if next := a.NextAt(); !next.IsZero() {
		v.NextAt = rfc3339(next)
	}
	if err := a.Barred(); err != nil {
		none := 0
		v.Barred, v.Left, v.NextAt = err.Error(), &none, ""
	}
	return v
}

func (v emergencyAllowanceView) text(w io.Writer) {
	counted := fmt.Sprintf("patients read in emergencies that count at %s: %d (limit %d)", v.JudgedAt, len(v.Counted), v.PatientsPerDay)
	switch {
	case v.Barred != "":
		fmt.Fprintln(w, v.Barred)
		if len(v.Counted) > 0 {
			fmt.Fprintln(w, counted)
		}
	case v.Left == nil:
		fmt.Fprintln(w, "no limit on patients read in emergencies (emergency patients per day is 0)")
	case *v.Left > 0:
		fmt.Fprintf(w, "%s; %d more may be read\n", counted, *v.Left)
	default:
		fmt.Fprintf(w, "%s; those may be read again, another from %s\n", counted, v.NextAt)
	}
	if len(v.Counted) > 0 {
		rows := make([][]string, len(v.Counted))
		for i, r := range v.Counted {
			rows[i] = []string{r.PatientID, r.ReadAt, r.CountsUntil}
		}
		table(w, []string{"PATIENT", "READ", "COUNTS UNTIL"}, rows)
	}
	v.provenance.text(w)
}

// markStanding reads, in the state the consents were read from
// (info.Height, verified like them), each grantee's member entry and each
// named study's organization, and records them in the views. A consent
// that would be in force says in its state when it lets its grantee do
// nothing: the grantee is suspended, or retired with its organization
// (the chain refuses everything such a member signs; a suspended member's
// consents take effect again if it is reactivated, a retired one's
// never), or the study it names has closed, its organization having left
// the consortium (the chain refuses research reads and shares for it).
func markStanding(ctx context.Context, c *client.Client, info *client.QueryInfo, views []permissionView) error {
	statuses := map[string]emrv1.MemberStatus{}
	closed := map[string]string{} // study id -> why it is closed ("" open)
	for i := range views {
		v := &views[i]
		status, ok := statuses[v.Grantee]
		if !ok {
			var resp emrv1.QueryMemberResponse
			if _, err := c.QueryInfoAt(ctx, info.Height, "Member", &emrv1.QueryMemberRequest{Address: v.Grantee}, &resp); err != nil {
				return fmt.Errorf("grantee %s: %w", v.Grantee, err)
			}
			status = resp.GetMember().GetStatus()
			statuses[v.Grantee] = status
		}
		v.GranteeStatus = memberStatusWord(status)
		if v.StudyID != "" {
			why, ok := closed[v.StudyID]
			if !ok {
				var err error
				if why, err = studyClosed(ctx, c, info.Height, v.StudyID); err != nil {
					return err
				}
				closed[v.StudyID] = why
			}
			v.StudyClosed = why
		}
		if v.State != stateActive && v.State != stateNotYetValid {
			continue
		}
		switch {
		case status != emrv1.MemberStatus_MEMBER_STATUS_ACTIVE:
			v.State = fmt.Sprintf("%s, but grantee %s", v.State, v.GranteeStatus)
		case v.StudyClosed != "":
			v.State += ", but study closed"
		}
	}
	return nil
}

// markKeyHolders marks the consents of views (of perms, the patient pid's,
// read at info) that have expired but whose grantee was handed the
// patient's current key version: the chain encrypts nothing for it any
// more, but new records are wrapped under that key until the patient
// rotates it, which a revocation does (an expiry does not: the chain
// cannot act for the patient). It returns how many there are.
func markKeyHolders(ctx context.Context, c *client.Client, info *client.QueryInfo, pid []byte, perms []*emrv1.Permission, views []permissionView) (int, error) {
	var patient emrv1.QueryPatientResponse
	if _, err := c.QueryInfoAt(ctx, info.Height, "Patient", &emrv1.QueryPatientRequest{PatientId: hexStr(pid)}, &patient); err != nil {
		return 0, fmt.Errorf("patient %x: %w", pid, err)
	}
	current := patient.GetPatient().GetKeyVersion()
	n := 0
	for i, p := range perms {
		if views[i].State != stateExpired || len(p.WrappedKek) == 0 || p.KeyVersion != current {
			continue
		}
		views[i].HoldsCurrentKey = true
		views[i].State += ", holds the current key"
		n++
	}
	return n, nil
}

// studyClosed says why study id takes no research read or share in the
// state at height ("" when it does): its organization left the
// consortium.
func studyClosed(ctx context.Context, c *client.Client, height int64, id string) (string, error) {
	var study emrv1.QueryStudyResponse
	if _, err := c.QueryInfoAt(ctx, height, "Study", &emrv1.QueryStudyRequest{Id: id}, &study); err != nil {
		return "", fmt.Errorf("study %q: %w", id, err)
	}
	orgID := study.GetStudy().GetOrganizationId()
	var org emrv1.QueryOrganizationResponse
	if _, err := c.QueryInfoAt(ctx, height, "Organization", &emrv1.QueryOrganizationRequest{Id: orgID}, &org); err != nil {
		return "", fmt.Errorf("study %q: its organization %q: %w", id, orgID, err)
	}
	return app.OrganizationRetired(orgID, org.GetOrganization().GetRetiredHeight()), nil
}

// memberStatusWord names a member status in one word ("suspended").
func memberStatusWord(s emrv1.MemberStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "MEMBER_STATUS_"))
}

// labeler returns a function that shows an address with the name of the
// local key that has it. It lists the keyring once, not once per row.
func (a *cli) labeler() func(addrHex string) string {
	label, _ := a.addressLabels()
	return label
}

// addressLabels is labeler, and how wide its labels are at the most: an
// address (40 hex characters) with the longest key name, for a table
// whose rows come later (--follow) to make room for any.
func (a *cli) addressLabels() (label func(addrHex string) string, width int) {
	names := map[string]string{}
	width = 2 * app.AddressSize
	if kr, err := a.keyring(); err == nil {
		infos, _ := kr.List()
		for i := len(infos) - 1; i >= 0; i-- { // the first key with an address names it
			names[upperHex(infos[i].Address)] = infos[i].Name
		}
	}
	for _, name := range names {
		width = max(width, 2*app.AddressSize+len(" ()")+utf8.RuneCountInString(name))
	}
	return func(addrHex string) string {
		if name, ok := names[strings.ToUpper(addrHex)]; ok {
			return fmt.Sprintf("%s (%s)", addrHex, name)
		}
		return addrHex
	}, width
}

func newTxCmd(a *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "tx",
		Short:   "Transactions",
		Example: "  emrcli tx status 5C1E...A9",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status HASH",
		Short: "Show a committed transaction's block and result code (verified)",
		Long: `status looks a transaction up by hash. Verified, it checks that the
transaction is in its block (against the header's data hash) and that its result
code is the one committed in the next header's results hash. The log message is
informational (it is not part of any hash).`,
		Example: "  emrcli tx status 5C1EA9D0E1F2A3B4C5D6E7F8091A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("want one transaction HASH")
			}
			if _, ok := decodeHex(args[0], 32); !ok {
				return usagef("%q is not a transaction hash (64 hex characters)", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			hash, _ := decodeHex(args[0], 32)
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			res, err := c.TxStatus(cmd.Context(), hash)
			if err != nil {
				return err
			}
			v := viewTx(res)
			return a.emit(v, func(w io.Writer) {
				v.text(w)
				if res.Code != 0 {
					fmt.Fprintf(w, "failed: %s\n", app.OneLine(res.Log))
				}
			})
		},
	})
	return cmd
}

func newSharesCmd(a *cli) *cobra.Command {
	var from, patient, study string
	cmd := &cobra.Command{
		Use:   "shares (--patient ID | --from KEY | --study ID)",
		Short: "List records shared with research studies: a patient's or a study's (verified, complete)",
		Long: `shares lists the copies of records that clinicians re-encrypted for research
studies (emrcli share), with the numbers "emrcli download --share N" takes.

With --patient or --from, it lists that patient's shares, oldest first, each
proven against a light-client-verified header, and the list is complete;
--study keeps those of one study.

With --study alone, it lists the study's shares across patients, in the order
they were made, from the study's own index in the chain's state: each share
proven, and the list complete.`,
		Example: `  emrcli shares --study cardio-2026
  emrcli shares --from alice
  emrcli shares --patient 5be1...9f --study cardio-2026 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if study != "" {
				if err := app.CheckID("--study", study); err != nil {
					return usageError{err}
				}
			}
			var shares []*emrv1.Share
			var pid []byte
			var c *client.Client
			var info *client.QueryInfo
			var err error
			if patient == "" && from == "" {
				if study == "" {
					return usagef("say whose shares: --patient ID, --from PATIENT-KEY or --study ID")
				}
				if c, err = a.client(ctx); err != nil {
					return err
				}
				if shares, info, err = c.StudyShares(ctx, study); err != nil {
					return err
				}
			} else {
				if pid, c, err = a.queriedPatient(ctx, patient, from); err != nil {
					return err
				}
				var all []*emrv1.Share
				if all, info, err = c.AllShares(ctx, pid); err != nil {
					return err
				}
				for _, s := range all {
					if study == "" || s.StudyId == study {
						shares = append(shares, s)
					}
				}
			}
			out := struct {
				PatientID string      `json:"patient_id,omitempty"`
				StudyID   string      `json:"study_id,omitempty"`
				Shares    []shareView `json:"shares"`
				provenance
			}{PatientID: hexStr(pid), StudyID: study, Shares: []shareView{}, provenance: viewInfo(info)}
			for _, s := range shares {
				out.Shares = append(out.Shares, viewShare(s))
			}
			return a.emit(out, func(w io.Writer) {
				if len(out.Shares) == 0 {
					fmt.Fprintln(w, "no shares")
				} else {
					label := a.labeler()
					var rows [][]string
					for _, s := range out.Shares {
						rows = append(rows, []string{s.PatientID, fmt.Sprint(s.Sequence), fmt.Sprint(s.Record), s.StudyID,
							fmt.Sprint(s.Anonymised), label(s.Sharer), s.Time, fmt.Sprint(s.Size)})
					}
					table(w, []string{"PATIENT", "SHARE", "RECORD", "STUDY", "ANONYMISED", "SHARER", "SHARED", "SIZE"}, rows)
					fmt.Fprintln(w, "download one with: emrcli download --from KEY --patient PATIENT --share SHARE -o FILE")
				}
				out.provenance.text(w)
			})
		},
	}
	a.patientFlags(cmd, &patient, &from)
	cmd.Flags().StringVar(&study, "study", "", "only shares for this study; alone, the study's shares across patients")
	return cmd
}
