package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// auditRow is one read of a patient's access log: the events one
// transaction logged.
type auditRow struct {
	Time         string `json:"time"`
	Accessor     string `json:"accessor"`
	Organization string `json:"organization"`
	Role         string `json:"role"`
	Purpose      string `json:"purpose"`
	// EmergencyService is, for an emergency (break-glass) read, the
	// emergency service of the accessor's organization that the patient's
	// opt-in let the read through.
	EmergencyService string `json:"emergency_service,omitempty"`
	// EmergencyReason is, for an emergency read, why the clinician broke
	// the glass (app.EmergencyReasonName).
	EmergencyReason string   `json:"emergency_reason,omitempty"`
	Records         []uint64 `json:"records"`
	// Shares are the reads of the patient's shares with a study (of the
	// records ShareRecords names, in the same order).
	Shares       []uint64 `json:"shares,omitempty"`
	ShareRecords []uint64 `json:"share_records,omitempty"`
	Height       int64    `json:"height"`
	TxHash       string   `json:"tx_hash"`
	Events       []uint64 `json:"events"`
}

// auditRows groups a patient's access events (newest first) by
// transaction and resolves each accessor's organization and role,
// verified, keeping the members it reads in members (by address) for a
// later call: a member's organization and role never change.
func auditRows(ctx context.Context, c *client.Client, events []*emrv1.AccessEvent, members map[string]*emrv1.Member) ([]auditRow, error) {
	var rows []auditRow
	var lastTx []byte // the transaction of rows[len(rows)-1]
	for _, ev := range events {
		if n := len(rows); n > 0 && bytes.Equal(lastTx, ev.TxHash) {
			rows[n-1].add(ev)
			rows[n-1].Events = append(rows[n-1].Events, ev.Sequence)
			continue
		}
		m, ok := members[string(ev.Accessor)]
		if !ok {
			var err error
			if m, err = c.Member(ctx, ev.Accessor); err != nil {
				return nil, fmt.Errorf("accessor %X: %w", ev.Accessor, err)
			}
			members[string(ev.Accessor)] = m
		}
		org := m.GetOrganizationId()
		if org == "" {
			org = "-"
		}
		row := auditRow{
			Time: ts(ev.Time), Accessor: upperHex(ev.Accessor), Organization: org, Role: roleName(m.GetRole()),
			Purpose: purposeName(ev.Purpose), Records: []uint64{}, Height: ev.Height, TxHash: upperHex(ev.TxHash), Events: []uint64{ev.Sequence},
		}
		if len(ev.EmergencyService) > 0 {
			row.EmergencyService = upperHex(ev.EmergencyService)
			row.EmergencyReason = app.EmergencyReasonName(ev.EmergencyReason)
		}
		row.add(ev)
		rows = append(rows, row)
		lastTx = ev.TxHash
	}
	return rows, nil
}

// add puts what ev read first in r (events come newest first).
func (r *auditRow) add(ev *emrv1.AccessEvent) {
	if ev.ShareSequence != 0 {
		r.Shares = append([]uint64{ev.ShareSequence}, r.Shares...)
		r.ShareRecords = append([]uint64{ev.RecordSequence}, r.ShareRecords...)
		return
	}
	r.Records = append([]uint64{ev.RecordSequence}, r.Records...)
}

// read is what the row's reads were, for the table: "3,5" for records,
// "share 1 (record 2)" for a share.
func (r auditRow) read() string {
	var parts []string
	if len(r.Records) > 0 {
		parts = append(parts, joinUints(r.Records))
	}
	for i, s := range r.Shares {
		parts = append(parts, fmt.Sprintf("share %d (record %d)", s, r.ShareRecords[i]))
	}
	return strings.Join(parts, ",")
}

func newAuditCmd(a *cli) *cobra.Command {
	var from, patient string
	var follow bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "audit [--patient ID | --from KEY] [--follow]",
		Short: "Show a patient's access log: who read which records, when and why (verified, complete)",
		Long: `audit shows the patient's access log as a table: when, who (address, and the
local key name if any), their organization and role (from their verified
membership), the purpose, the records read (and the reads of the patient's
shares with a study), and the block. Every event is
proven, and the log is checked for completeness: a node cannot hide a read.

An emergency ("break-glass") read is shown as "EMERGENCY (REASON) via
SERVICE": a clinician who holds no consent of the patient read the records
through the emergency service of its organization that the patient opted in
to ("emrcli grant --rights emergency"), for the reason it gave
(patient-incapacitated, immediate-threat or patient-request); "emrcli revoke"
on the service ends the opt-in.

With --follow the table runs oldest first, and audit then keeps watching:
every --interval it reads the events logged since the last one it showed
(verified and complete, as above) and prints each new read as one more line
of the table, until interrupted (Ctrl-C, which exits 0). A read that fails
(a node or witness out of reach or behind, an answer that does not verify,
of which nothing is shown) is warned about on standard error, again once a
minute while reads fail, and asked again; only a root of trust replaced
meanwhile, or expired (set a new one with "emrcli light init --force"),
ends the command (exit 1). With --json and --follow every read, those
logged so far and then each new one, is one JSON object per line (the
fields of "reads", with patient_id and verified), oldest first.`,
		Example: "  emrcli audit --from alice\n  emrcli audit --patient 5be1...9f --json\n  emrcli audit --from alice --follow",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case cmd.Flags().Changed("interval") && !follow:
				return usagef("--interval is how often --follow asks: give --follow too")
			case interval <= 0:
				return usagef("--interval must be positive, got %s", interval)
			}
			ctx := cmd.Context()
			pid, c, err := a.queriedPatient(ctx, patient, from)
			if err != nil {
				return err
			}
			events, info, err := c.AllAccessEvents(ctx, pid)
			if err != nil {
				return err
			}
			members := map[string]*emrv1.Member{}
			rows, err := auditRows(ctx, c, events, members)
			if err != nil {
				return err
			}
			if follow {
				label, width := a.addressLabels()
				f := &auditFollower{a: a, c: c, patientID: pid, label: label, labelWidth: width, verified: info.Verified, members: members}
				if len(events) > 0 {
					f.seen = events[0].Sequence
				}
				return f.run(ctx, rows, info.Height, interval)
			}
			out := struct {
				PatientID string     `json:"patient_id"`
				Reads     []auditRow `json:"reads"`
				provenance
			}{hexStr(pid), rows, viewInfo(info)}
			if out.Reads == nil {
				out.Reads = []auditRow{}
			}
			return a.emit(out, func(w io.Writer) {
				if len(rows) == 0 {
					fmt.Fprintln(w, "no reads logged")
				} else {
					table(w, auditColumns, auditCells(rows, a.labeler()))
					if emergencies := countEmergencies(rows); emergencies > 0 {
						fmt.Fprintf(w, "%d emergency (break-glass) read(s): by a clinician without a consent of its own, through the emergency service the patient opted in to\n", emergencies)
					}
				}
				out.provenance.text(w)
			})
		},
	}
	a.patientFlags(cmd, &patient, &from)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "then print each new read as it is committed, until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", defaultFollowInterval, "with --follow, how often to ask for new reads")
	return cmd
}

// auditColumns are the audit table's columns (auditRow.cells).
var auditColumns = []string{"WHEN", "WHO", "ORGANIZATION", "ROLE", "PURPOSE", "RECORDS", "BLOCK"}

// cells is r as a row of the audit table; label names addresses.
func (r auditRow) cells(label func(string) string) []string {
	purpose := r.Purpose
	if r.EmergencyService != "" {
		purpose = "EMERGENCY (" + r.EmergencyReason + ") via " + label(r.EmergencyService)
	}
	return []string{r.Time, label(r.Accessor), r.Organization, r.Role, purpose, r.read(), fmt.Sprint(r.Height)}
}

// auditCells are rows as rows of the audit table, in their order; label
// names addresses.
func auditCells(rows []auditRow, label func(string) string) [][]string {
	var cells [][]string
	for _, r := range rows {
		cells = append(cells, r.cells(label))
	}
	return cells
}

// countEmergencies is how many of rows are emergency (break-glass) reads.
func countEmergencies(rows []auditRow) int {
	n := 0
	for _, r := range rows {
		if r.EmergencyService != "" {
			n++
		}
	}
	return n
}

// auditFollower is audit --follow: it prints a patient's reads as they are
// logged.
type auditFollower struct {
	a         *cli
	c         *client.Client
	patientID []byte
	label     func(string) string
	// labelWidth is how wide label's labels are at the most
	// (addressLabels): the WHO column makes room for any.
	labelWidth int
	verified   bool
	// seen is the newest event shown (0: none).
	seen uint64
	// members are the accessors read so far (auditRows), by address.
	members map[string]*emrv1.Member
}

// run prints rows, the log so far at height (newest first), oldest
// first, then every interval the reads logged since, until ctx ends (nil)
// or a read fails in a way asking again cannot mend (followEnds).
func (f *auditFollower) run(ctx context.Context, rows []auditRow, height int64, interval time.Duration) error {
	var out *columns
	if f.a.jsonOut {
		f.printLines(rows)
	} else {
		// Room for a clinician's treatment read (a time, a labelled
		// address), the most common, even before any is logged.
		out = f.a.followTable(auditColumns, f.cells(rows),
			len("2006-01-02T15:04:05Z"), max(2*app.AddressSize, f.labelWidth), 0, len("clinician"), len("treatment"))
	}
	f.a.followStart(fmt.Sprintf("the access log of patient %x", f.patientID), height, f.verified,
		fmt.Sprintf("%d emergency read(s) so far", countEmergencies(rows)), interval)
	return f.a.follow(ctx, interval, "the access log", func(ctx context.Context) error {
		rows, err := f.next(ctx)
		if err != nil {
			return err
		}
		if f.a.jsonOut {
			f.printLines(rows)
		} else {
			out.print(f.cells(rows)...)
		}
		return nil
	})
}

// cells are rows (newest first) as table rows, oldest first.
func (f *auditFollower) cells(rows []auditRow) [][]string {
	cells := auditCells(rows, f.label)
	slices.Reverse(cells)
	return cells
}

// next returns the reads logged since the last shown (newest first) and
// marks them shown.
func (f *auditFollower) next(ctx context.Context) ([]auditRow, error) {
	events, _, err := f.c.AccessEventsAfter(ctx, f.patientID, f.seen)
	if err != nil || len(events) == 0 {
		return nil, err
	}
	rows, err := auditRows(ctx, f.c, events, f.members)
	if err != nil {
		return nil, err
	}
	f.seen = events[0].Sequence
	return rows, nil
}

// printLines writes rows (newest first) oldest first, one JSON object per
// line.
func (f *auditFollower) printLines(rows []auditRow) {
	enc := json.NewEncoder(f.a.stdout)
	for _, r := range slices.Backward(rows) {
		_ = enc.Encode(struct {
			PatientID string `json:"patient_id"`
			auditRow
			Verified bool `json:"verified"`
		}{hexStr(f.patientID), r, f.verified})
	}
}
