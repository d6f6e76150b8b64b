package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// breakGlassRow is one transaction's emergency reads through one emergency
// service: the entries of that service's break-glass log it made.
type breakGlassRow struct {
	Time      string   `json:"time"`
	Clinician string   `json:"clinician"`
	PatientID string   `json:"patient_id"`
	Reason    string   `json:"reason"`
	Service   string   `json:"emergency_service"`
	Records   []uint64 `json:"records"`
	Height    int64    `json:"height"`
	TxHash    string   `json:"tx_hash"`
	// Entries are the reads' numbers in the service's break-glass log.
	Entries []uint64 `json:"entries"`
	// Events are the reads' numbers in the patient's access log.
	Events []uint64 `json:"events"`
}

// breakGlassRows groups the entries of one emergency service's break-glass
// log (in the log's order) by transaction, keeping those logged at or after
// since (all when since is zero).
func breakGlassRows(service []byte, entries []*emrv1.BreakGlassEntry, since time.Time) []breakGlassRow {
	var rows []breakGlassRow
	var lastTx []byte // the transaction of rows[len(rows)-1]
	for _, e := range entries {
		ev := e.GetEvent()
		if !since.IsZero() && ev.GetTime().AsTime().Before(since) {
			continue
		}
		if n := len(rows); n > 0 && bytes.Equal(lastTx, ev.TxHash) {
			rows[n-1].Records = append(rows[n-1].Records, ev.RecordSequence)
			rows[n-1].Entries = append(rows[n-1].Entries, e.Sequence)
			rows[n-1].Events = append(rows[n-1].Events, ev.Sequence)
			continue
		}
		rows = append(rows, breakGlassRow{
			Time: ts(ev.Time), Clinician: upperHex(ev.Accessor), PatientID: hexStr(ev.PatientId),
			Reason: app.EmergencyReasonName(ev.EmergencyReason), Service: upperHex(service),
			Records: []uint64{ev.RecordSequence}, Height: ev.Height, TxHash: upperHex(ev.TxHash),
			Entries: []uint64{e.Sequence}, Events: []uint64{ev.Sequence},
		})
		lastTx = ev.TxHash
	}
	return rows
}

// breakGlassView is break-glass-log's output.
type breakGlassView struct {
	Organization string `json:"organization"`
	// Services are the emergency services whose logs were read.
	Services []string        `json:"emergency_services"`
	Since    string          `json:"since,omitempty"`
	Reads    []breakGlassRow `json:"reads"`
	provenance
}

func (v breakGlassView) text(w io.Writer, label func(string) string) {
	switch {
	case len(v.Services) == 0:
		fmt.Fprintf(w, "organization %s has no emergency service: its clinicians cannot read in emergencies\n", v.Organization)
	case len(v.Reads) == 0 && v.Since != "":
		fmt.Fprintf(w, "no break-glass reads since %s\n", v.Since)
	case len(v.Reads) == 0:
		fmt.Fprintln(w, "no break-glass reads logged")
	default:
		var cells [][]string
		records := 0
		clinicians, patients := map[string]bool{}, map[string]bool{}
		for _, r := range v.Reads {
			cells = append(cells, r.cells(label))
			records += len(r.Records)
			clinicians[r.Clinician], patients[r.PatientID] = true, true
		}
		table(w, breakGlassColumns, cells)
		fmt.Fprintf(w, "%d break-glass read(s) of %d record(s) by %d clinician(s) of %d patient(s)\n", len(v.Reads), records, len(clinicians), len(patients))
	}
	v.provenance.text(w)
}

// joinUints is "3,5".
func joinUints(ns []uint64) string {
	var b []byte
	for i, n := range ns {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Append(b, n)
	}
	return string(b)
}

func newBreakGlassLogCmd(a *cli) *cobra.Command {
	var org, service, from, sinceStr string
	var follow bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "break-glass-log (--org ORG | --service MEMBER | --from KEY) [--since TIME] [--follow]",
		Short: "Show every break-glass read through an organization's emergency services, across patients (verified, complete)",
		Long: `break-glass-log is an organization's auditors' view of its clinicians'
emergency ("break-glass") reads: every read a clinician made without a
consent of its own, through an emergency service of the organization that
the patient had opted in to ("emrcli download --purpose emergency"), of
every patient, oldest first. Each row is one transaction: when, the
clinician, the patient (pseudonymous id), the reason it gave, the records
read, the emergency service, and the block.

The chain keeps each emergency service's reads as a log numbered without
gaps, beside each patient's own access log ("emrcli audit"). Every entry is
proven against a light-client-verified header and each log is checked to
be complete up to its proven length: a node cannot hide a break-glass read.
All the logs shown are of one state.

--org lists the organization's emergency services (verified) and shows
all their reads; --from does that for the organization of a key's member;
--service shows one emergency service's. --since keeps the reads logged at
or after a time (RFC 3339, or YYYY-MM-DD for midnight UTC; block time),
for a review of what is new. Reads are oldest first by block; within one
block, by service.

With --follow, break-glass-log then keeps watching: every --interval it
reads the entries logged since the last it showed (verified and complete,
as above; with --org or --from, also of emergency services registered
meanwhile) and prints each new break-glass read as one more line, until
interrupted (Ctrl-C, which exits 0). A read that fails is warned about on
standard error, again once a minute while reads fail, and asked again;
only a root of trust replaced meanwhile, or expired, ends the command
(exit 1). With --json and --follow every read is one JSON object per line
(the fields of "reads", with organization and verified), oldest first.`,
		Example: "  emrcli break-glass-log --org st-mary\n  emrcli break-glass-log --from auditor --since 2026-11-01\n" +
			"  emrcli break-glass-log --service er-desk --json\n  emrcli break-glass-log --from auditor --follow",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			given := 0
			for _, s := range []string{org, service, from} {
				if s != "" {
					given++
				}
			}
			switch {
			case given != 1:
				return usagef("give one of --org, --service or --from: the organization, or the emergency service, whose break-glass reads to show")
			case cmd.Flags().Changed("interval") && !follow:
				return usagef("--interval is how often --follow asks: give --follow too")
			case interval <= 0:
				return usagef("--interval must be positive, got %s", interval)
			}
			var since time.Time
			if sinceStr != "" {
				var err error
				if since, err = parseTime("since", sinceStr); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			src, err := a.breakGlassSource(ctx, c, org, service, from)
			if err != nil {
				return err
			}
			src.since = since
			seen := map[string]uint64{}
			out, err := src.read(ctx, c, seen)
			if err != nil {
				return err
			}
			if follow {
				return a.followBreakGlass(ctx, c, src, out, seen, interval)
			}
			return a.emit(out, func(w io.Writer) { out.text(w, a.labeler()) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&org, "org", "", "the organization whose emergency services' reads to show")
	a.keyFlag(cmd, &service, "service", "one emergency service (address or key name)")
	a.keyFlag(cmd, &from, "from", "a key whose member's organization to show (e.g. your auditor key)")
	f.StringVar(&sinceStr, "since", "", "only reads logged at or after this time (RFC 3339, or YYYY-MM-DD for midnight UTC)")
	f.BoolVarP(&follow, "follow", "f", false, "then print each new break-glass read as it is committed, until interrupted")
	f.DurationVar(&interval, "interval", defaultFollowInterval, "with --follow, how often to ask for new reads")
	return cmd
}

// breakGlassSource is what break-glass-log reads: the break-glass log of
// one emergency service, or those of every emergency service of an
// organization, and of it the reads logged at or after since (all when
// zero).
type breakGlassSource struct {
	org string
	// service is the one emergency service; nil: every one of org, as
	// the organization's verified member list has them at each read.
	service []byte
	since   time.Time
}

// breakGlassSource resolves break-glass-log's --org, --service or --from
// (one of them is given).
func (a *cli) breakGlassSource(ctx context.Context, c *client.Client, org, service, from string) (breakGlassSource, error) {
	flag, name := "--service", service
	if from != "" {
		flag, name = "--from", from
	}
	if name == "" {
		return breakGlassSource{org: org}, nil
	}
	addr, err := a.address(name)
	if err != nil {
		return breakGlassSource{}, err
	}
	m, err := c.Member(ctx, addr)
	if err != nil {
		return breakGlassSource{}, fmt.Errorf("%s %s (%X): %w", flag, name, addr, err)
	}
	switch {
	case service != "" && m.Role != emrv1.Role_ROLE_EMERGENCY_SERVICE:
		hint := ""
		if m.OrganizationId != "" {
			hint = fmt.Sprintf(" (emrcli member list --org %s --role emergency-service lists them)", m.OrganizationId)
		}
		return breakGlassSource{}, fmt.Errorf("member %X is a %s, not an emergency service%s", addr, roleName(m.Role), hint)
	case service != "":
		return breakGlassSource{org: m.OrganizationId, service: addr}, nil
	case m.OrganizationId == "":
		return breakGlassSource{}, fmt.Errorf("--from %s (%X) is a %s, which belongs to no organization: give an organization's member, or --org", from, addr, roleName(m.Role))
	}
	return breakGlassSource{org: m.OrganizationId}, nil
}

// read reads the source's break-glass logs, all of one state, from the
// entry after the one seen holds for each service (by its address's
// string; absent: from the first). Once every log is read, seen holds the
// last entry of each.
func (s breakGlassSource) read(ctx context.Context, c *client.Client, seen map[string]uint64) (breakGlassView, error) {
	services := [][]byte{s.service}
	var info *client.QueryInfo
	if s.service == nil {
		members, at, err := c.AllMembers(ctx, s.org, emrv1.Role_ROLE_EMERGENCY_SERVICE)
		if err != nil {
			return breakGlassView{}, fmt.Errorf("organization %q: %w", s.org, err)
		}
		info, services = at, nil
		for _, m := range members {
			services = append(services, m.Address)
		}
	}
	out := breakGlassView{Organization: s.org, Services: []string{}, Reads: []breakGlassRow{}}
	if !s.since.IsZero() {
		out.Since = s.since.UTC().Format(time.RFC3339Nano)
	}
	last := map[string]uint64{}
	for _, svc := range services {
		var height int64 // the state every log is read at: the first read's
		if info != nil {
			height = info.Height
		}
		entries, at, err := c.BreakGlassLog(ctx, svc, seen[string(svc)], height)
		if err != nil {
			return breakGlassView{}, fmt.Errorf("break-glass log of emergency service %X: %w", svc, err)
		}
		if info == nil {
			info = at
		}
		if n := len(entries); n > 0 {
			last[string(svc)] = entries[n-1].Sequence
		}
		out.Services = append(out.Services, upperHex(svc))
		out.Reads = append(out.Reads, breakGlassRows(svc, entries, s.since)...)
	}
	maps.Copy(seen, last)
	// Oldest first across the services, by block (an access event does
	// not say its transaction's place in the block: within one, rows are
	// by service); one service's rows keep their log's order.
	slices.SortStableFunc(out.Reads, func(x, y breakGlassRow) int { return cmp.Compare(x.Height, y.Height) })
	out.provenance = viewInfo(info)
	return out, nil
}

// breakGlassColumns are break-glass-log's table's columns (breakGlassRow.cells).
var breakGlassColumns = []string{"WHEN", "CLINICIAN", "PATIENT", "REASON", "RECORDS", "VIA", "BLOCK"}

// cells is r as a row of the table; label names addresses.
func (r breakGlassRow) cells(label func(string) string) []string {
	return []string{r.Time, label(r.Clinician), r.PatientID, r.Reason, joinUints(r.Records), label(r.Service), fmt.Sprint(r.Height)}
}

// followBreakGlass prints first, the logs as read so far, then every
// interval the break-glass reads logged since (seen: the last entry shown
// of each service), until ctx ends or a read fails in a way asking again
// cannot mend (follow).
func (a *cli) followBreakGlass(ctx context.Context, c *client.Client, src breakGlassSource, first breakGlassView, seen map[string]uint64, interval time.Duration) error {
	label, width := a.addressLabels()
	cells := func(v breakGlassView) [][]string {
		var cells [][]string
		for _, r := range v.Reads {
			cells = append(cells, r.cells(label))
		}
		return cells
	}
	var out *columns
	show := func(v breakGlassView) {
		if !a.jsonOut {
			out.print(cells(v)...)
			return
		}
		enc := json.NewEncoder(a.stdout)
		for _, r := range v.Reads {
			_ = enc.Encode(struct {
				Organization string `json:"organization"`
				breakGlassRow
				Verified bool `json:"verified"`
			}{v.Organization, r, v.Verified})
		}
	}
	if a.jsonOut {
		show(first)
	} else {
		// Room for a time, a labelled address, a patient id, the longest
		// reason and a labelled address, even before any read is logged.
		out = a.followTable(breakGlassColumns, cells(first),
			len("2006-01-02T15:04:05Z"), width, 2*app.PatientIDSize, len("patient-incapacitated"), 0, width)
	}
	what, logs := fmt.Sprintf("the break-glass logs of organization %s's emergency services (%d now)", first.Organization, len(first.Services)), "the break-glass logs"
	if src.service != nil {
		what, logs = fmt.Sprintf("the break-glass log of emergency service %X", src.service), "the break-glass log"
	}
	shown := fmt.Sprintf("%d break-glass read(s) so far", len(first.Reads))
	if first.Since != "" {
		shown = fmt.Sprintf("%d break-glass read(s) since %s so far", len(first.Reads), first.Since)
	}
	a.followStart(what, first.Height, first.Verified, shown, interval)
	return a.follow(ctx, interval, logs, func(ctx context.Context) error {
		v, err := src.read(ctx, c, seen)
		if err != nil {
			return err
		}
		show(v)
		return nil
	})
}
