package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/emrchain/emrchain/app"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// paramLimit is one numeric param and its flag of "propose params": the
// field it names, uint64, uint32, int64 or a duration.
type paramLimit struct {
	flag, usage string
	u64         func(*emrv1.Params) *uint64
	u32         func(*emrv1.Params) *uint32
	i64         func(*emrv1.Params) *int64
	dur         func(*emrv1.Params) **durationpb.Duration
}

func u64Limit(flag, usage string, field func(*emrv1.Params) *uint64) paramLimit {
	return paramLimit{flag: flag, usage: usage, u64: field}
}

func u32Limit(flag, usage string, field func(*emrv1.Params) *uint32) paramLimit {
	return paramLimit{flag: flag, usage: usage, u32: field}
}

func i64Limit(flag, usage string, field func(*emrv1.ConsensusLimits) *int64) paramLimit {
	return paramLimit{flag: flag, usage: usage, i64: func(p *emrv1.Params) *int64 { return field(consensusOf(p)) }}
}

func durationLimit(flag, usage string, field func(*emrv1.ConsensusLimits) **durationpb.Duration) paramLimit {
	return paramLimit{flag: flag, usage: usage, dur: func(p *emrv1.Params) **durationpb.Duration { return field(consensusOf(p)) }}
}

// consensusOf is p's CometBFT limits, made empty when p has none.
func consensusOf(p *emrv1.Params) *emrv1.ConsensusLimits {
	if p.Consensus == nil {
		p.Consensus = &emrv1.ConsensusLimits{}
	}
	return p.Consensus
}

// bind makes the flag set the field of into.
func (l paramLimit) bind(f *pflag.FlagSet, into *emrv1.Params) {
	switch {
	case l.u64 != nil:
		f.Uint64Var(l.u64(into), l.flag, 0, l.usage)
	case l.u32 != nil:
		f.Uint32Var(l.u32(into), l.flag, 0, l.usage)
	case l.i64 != nil:
		f.Int64Var(l.i64(into), l.flag, 0, l.usage)
	default:
		f.Var(durationFlag{l.dur(into)}, l.flag, l.usage)
	}
}

// copy sets the field of dst to src's.
func (l paramLimit) copy(dst, src *emrv1.Params) {
	switch {
	case l.u64 != nil:
		*l.u64(dst) = *l.u64(src)
	case l.u32 != nil:
		*l.u32(dst) = *l.u32(src)
	case l.i64 != nil:
		*l.i64(dst) = *l.i64(src)
	default:
		*l.dur(dst) = *l.dur(src)
	}
}

// durationFlag is a flag of a duration ("48h") into a protobuf Duration.
type durationFlag struct{ into **durationpb.Duration }

func (d durationFlag) String() string {
	if d.into == nil || *d.into == nil {
		return ""
	}
	return (*d.into).AsDuration().String()
}

func (d durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d.into = durationpb.New(v)
	return nil
}

func (durationFlag) Type() string { return "duration" }

// paramLimits are the numeric params, in the order of the Params message.
var paramLimits = []paramLimit{
	u64Limit("max-tx-bytes", "largest transaction, in bytes (it must fit in a block, see --block-max-bytes; each node's config.toml [mempool] max_tx_bytes bounds it too)", func(p *emrv1.Params) *uint64 { return &p.MaxTxBytes }),
	u64Limit("max-blob-bytes", "largest encrypted file, in bytes", func(p *emrv1.Params) *uint64 { return &p.MaxBlobBytes }),
	u32Limit("max-records-per-access", "most records one read (RecordAccess) names", func(p *emrv1.Params) *uint32 { return &p.MaxRecordsPerAccess }),
	u32Limit("max-rewraps-per-rotation", "most file keys one key rotation re-wraps", func(p *emrv1.Params) *uint32 { return &p.MaxRewrapsPerRotation }),
	u32Limit("max-page-size", "most entries one query answer lists", func(p *emrv1.Params) *uint32 { return &p.MaxPageSize }),
	u64Limit("emergency-access-seconds", "how long after an emergency (break-glass) read its clinician may fetch the record and its data key (each sidecar's [sidecar] access_window, 10m by default, bounds it too)", func(p *emrv1.Params) *uint64 { return &p.EmergencyAccessSeconds }),
	u32Limit("max-wrapped-key-bytes", "largest wrapped key in a grant or record", func(p *emrv1.Params) *uint32 { return &p.MaxWrappedKeyBytes }),
	u64Limit("proposal-seconds", "how long a consortium proposal can be approved", func(p *emrv1.Params) *uint64 { return &p.ProposalSeconds }),
	i64Limit("block-max-bytes", "largest block, in bytes (CometBFT's block.max_bytes; -1: 100 MiB): it must hold a transaction of max-tx-bytes beside the evidence and the commit", func(c *emrv1.ConsensusLimits) *int64 { return &c.BlockMaxBytes }),
	i64Limit("evidence-max-bytes", "most evidence of misbehaviour in one block, in bytes (evidence.max_bytes)", func(c *emrv1.ConsensusLimits) *int64 { return &c.EvidenceMaxBytes }),
	i64Limit("evidence-max-age-blocks", "evidence older than this many blocks, and than --evidence-max-age, is refused (evidence.max_age_num_blocks)", func(c *emrv1.ConsensusLimits) *int64 { return &c.EvidenceMaxAgeBlocks }),
	durationLimit("evidence-max-age", "evidence older than this (e.g. 48h), and than --evidence-max-age-blocks, is refused (evidence.max_age_duration)", func(c *emrv1.ConsensusLimits) **durationpb.Duration { return &c.EvidenceMaxAge }),
	u32Limit("storage-copies", "how many of the storage organizations keep a copy of each blob (0: every one), chosen per blob by its hash", func(p *emrv1.Params) *uint32 { return &p.StorageCopies }),
	u32Limit("emergency-patients-per-day", "most patients one clinician may read in emergencies (break-glass) within 24 hours (0: no limit)", func(p *emrv1.Params) *uint32 { return &p.EmergencyPatientsPerDay }),
}

func newProposeParamsCmd(a *cli) *cobra.Command {
	var pf proposeFlags
	var addCategories, storageOrgs []string
	var given emrv1.Params
	cmd := &cobra.Command{
		Use:   "params --from REGISTRAR [--add-category NAME]... [--max-tx-bytes N] [--max-page-size N] [--storage-organizations ORG,...] [...] --reason TEXT",
		Short: "Propose new consortium params: record categories added, size limits, the emergency window and daily limit, the voting period, the storage organizations, CometBFT's block and evidence limits",
		Long: governanceLong + `

The proposal carries the whole set of params: the current ones, read
verified, with the values the flags give ("emrcli params" shows them).
They are checked as at genesis before anything is signed. Record
categories can be added, never removed: the records, consents and shares
of a category outlive it. The new params apply from the block after the
one that executes the proposal. A params proposal is refused, or
overtaken, by any params change executed after the params it carries
were read (it would undo that change unseen): propose again then.

The block and evidence limits are CometBFT's consensus params, which the
chain hands to CometBFT when the proposal executes: every node applies
them from the next block, with no restart. They are checked by
CometBFT's own rules, and a block must still hold a transaction of
max-tx-bytes beside the most evidence and the commit of 100 validators.
A node's config.toml [mempool] max_tx_bytes and max_txs_bytes are its
own, not the chain's: raise them on every node before raising
max-tx-bytes past them.

--storage-organizations names the organizations whose storage services
(members of role storage-service, each its hospital's sidecar) keep copies
of the ciphertext of committed records and shares: only those may
register one, and the sidecars serve copies to those listed now. An
organization newly named must be a member of the consortium (a retiring
one is dropped from the list by its retirement). Dropping
an organization stops its copies at once; its storage service stays a
member, which its registrar suspends. --storage-copies N has N of them
keep each blob (0, the default: every one), chosen per blob by its hash
(rendezvous hashing): naming or dropping one moves only the copies it
gains or held. The sidecar a blob was uploaded to keeps it too.

--emergency-patients-per-day N lets one clinician read at most N patients
in emergencies (break-glass reads) within any 24 hours of block time; a
patient counts once for 24 hours from the read that counted it. Beyond N
the chain refuses the read (code 31, "emergency read limit reached") and
says when the next one is possible. 0: no limit.`,
		Example: `  emrcli propose params --from registrar --add-category genomics --reason "genome sequencing joins the records"
  emrcli propose params --from registrar --max-blob-bytes 8589934592 --reason "whole-slide images reach 6 GiB"
  emrcli propose params --from registrar --block-max-bytes 8388608 --reason "blocks of 8 MiB for the night's imaging backlog"
  emrcli propose params --from registrar --storage-organizations st-mary,st-luke --reason "both hospitals keep copies of every record"
  emrcli propose params --from registrar --storage-copies 2 --reason "two copies of each blob are enough for twelve hospitals"
  emrcli propose params --from registrar --emergency-patients-per-day 40 --reason "the trauma centre's night shifts break the glass more often"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			var read emrv1.QueryParamsResponse
			if _, err := c.QueryInfo(ctx, "Params", &emrv1.QueryParamsRequest{}, &read); err != nil {
				return fmt.Errorf("read the current params: %w", err)
			}
			current := read.Params
			next := proto.Clone(current).(*emrv1.Params)
			for _, cat := range addCategories {
				switch {
				case slices.Contains(current.Categories, cat):
					return usagef("--add-category %s: the chain has that category", cat)
				case slices.Contains(next.Categories, cat):
					return usagef("--add-category %s: given twice", cat)
				}
				next.Categories = append(next.Categories, cat)
			}
			for _, l := range paramLimits {
				if cmd.Flags().Changed(l.flag) {
					l.copy(next, &given)
				}
			}
			if cmd.Flags().Changed("storage-organizations") {
				next.StorageOrganizations = slices.DeleteFunc(storageOrgs, func(s string) bool { return s == "" })
			}
			if proto.Equal(next, current) {
				return usagef("the params would not change: give --add-category or a new value (see --help; \"emrcli params\" shows the current ones)")
			}
			if err := app.ValidateParams(next); err != nil {
				return usagef("%v", err)
			}
			// Built from the params of read.Changes changes: the chain
			// refuses it if another change executes first.
			change := &emrv1.ConsortiumChange{Change: &emrv1.ConsortiumChange_SetParams{SetParams: &emrv1.SetParams{Params: next, FromChanges: read.Changes}}}
			return pf.submit(a, cmd, change)
		},
	}
	pf.add(a, cmd)
	f := cmd.Flags()
	f.StringArrayVar(&addCategories, "add-category", nil, "a record category to add (repeatable)")
	f.StringSliceVar(&storageOrgs, "storage-organizations", nil, `the organizations whose storage services keep a copy of every blob, replacing the list (comma-separated; "" for none)`)
	for _, l := range paramLimits {
		l.bind(f, &given)
	}
	return cmd
}

// paramsView is the params as emrcli shows them.
type paramsView struct {
	Categories             []string `json:"categories"`
	MaxTxBytes             uint64   `json:"max_tx_bytes"`
	MaxBlobBytes           uint64   `json:"max_blob_bytes"`
	MaxRecordsPerAccess    uint32   `json:"max_records_per_access"`
	MaxRewrapsPerRotation  uint32   `json:"max_rewraps_per_rotation"`
	MaxPageSize            uint32   `json:"max_page_size"`
	EmergencyAccessSeconds uint64   `json:"emergency_access_seconds"`
	MaxWrappedKeyBytes     uint32   `json:"max_wrapped_key_bytes"`
	ProposalSeconds        uint64   `json:"proposal_seconds"`
	// Consensus is nil when the params carry none (a chain from before
	// they did).
	Consensus *consensusView `json:"consensus,omitempty"`
	// StorageOrganizations keep copies of every blob ([] for none).
	StorageOrganizations []string `json:"storage_organizations"`
	// StorageCopies of them keep each blob; 0: every one.
	StorageCopies uint32 `json:"storage_copies"`
	// EmergencyPatientsPerDay one clinician may read in emergencies; 0: no
	// limit.
	EmergencyPatientsPerDay uint32 `json:"emergency_patients_per_day"`
}

// consensusView is CometBFT's block and evidence limits as emrcli shows
// them; the evidence age in seconds.
type consensusView struct {
	BlockMaxBytes        int64   `json:"block_max_bytes"`
	BlockMaxGas          int64   `json:"block_max_gas"`
	EvidenceMaxBytes     int64   `json:"evidence_max_bytes"`
	EvidenceMaxAgeBlocks int64   `json:"evidence_max_age_blocks"`
	EvidenceMaxAge       float64 `json:"evidence_max_age_seconds"`
	evidenceMaxAge       time.Duration
}

func viewParams(p *emrv1.Params) paramsView {
	v := paramsView{p.GetCategories(), p.GetMaxTxBytes(), p.GetMaxBlobBytes(), p.GetMaxRecordsPerAccess(), p.GetMaxRewrapsPerRotation(),
		p.GetMaxPageSize(), p.GetEmergencyAccessSeconds(), p.GetMaxWrappedKeyBytes(), p.GetProposalSeconds(), nil,
		append([]string{}, p.GetStorageOrganizations()...), p.GetStorageCopies(), p.GetEmergencyPatientsPerDay()}
	if c := p.GetConsensus(); c != nil {
		age := c.GetEvidenceMaxAge().AsDuration()
		v.Consensus = &consensusView{c.BlockMaxBytes, c.BlockMaxGas, c.EvidenceMaxBytes, c.EvidenceMaxAgeBlocks, age.Seconds(), age}
	}
	return v
}

// fields are the params as name and value pairs, named as the flags of
// emrcli propose params name them: for the text output and a change's diff.
func (v paramsView) fields() []string {
	// Past a Duration's range (292 years) in plain seconds: multiplied
	// out it would wrap, and two different values could read the same.
	seconds := func(s uint64) string {
		if s > uint64(math.MaxInt64/int64(time.Second)) {
			return fmt.Sprintf("%ds", s)
		}
		return (time.Duration(s) * time.Second).String()
	}
	kv := []string{"categories", strings.Join(v.Categories, ", "), "max tx bytes", fmt.Sprint(v.MaxTxBytes),
		"max blob bytes", fmt.Sprint(v.MaxBlobBytes), "max records per access", fmt.Sprint(v.MaxRecordsPerAccess),
		"max rewraps per rotation", fmt.Sprint(v.MaxRewrapsPerRotation), "max page size", fmt.Sprint(v.MaxPageSize),
		"emergency window", seconds(v.EmergencyAccessSeconds), "max wrapped key bytes", fmt.Sprint(v.MaxWrappedKeyBytes),
		"proposals open for", seconds(v.ProposalSeconds), "emergency patients per day", perDay(v.EmergencyPatientsPerDay)}
	if c := v.Consensus; c != nil {
		blockBytes := fmt.Sprint(c.BlockMaxBytes)
		if c.BlockMaxBytes == -1 {
			blockBytes = "-1 (100 MiB)"
		}
		kv = append(kv, "block max bytes", blockBytes, "block max gas", fmt.Sprint(c.BlockMaxGas),
			"evidence max bytes", fmt.Sprint(c.EvidenceMaxBytes), "evidence max age blocks", fmt.Sprint(c.EvidenceMaxAgeBlocks),
			"evidence max age", c.evidenceMaxAge.String())
	}
	return kv
}

// perDay is a daily limit of n, 0 being none.
func perDay(n uint32) string {
	if n == 0 {
		return "no limit"
	}
	return fmt.Sprint(n)
}

// storageField is the storage organizations as a name and value pair,
// none when none are named. (Not among fields, whose pairs a change's diff
// compares by position: these are compared as a set.)
func (v paramsView) storageField() []string {
	if len(v.StorageOrganizations) == 0 {
		return nil
	}
	kv := []string{"storage organizations", strings.Join(v.StorageOrganizations, ", ")}
	if v.StorageCopies > 0 {
		kv = append(kv, "copies of each blob", v.copiesText())
	}
	return kv
}

// copiesText says how many storage organizations keep each blob.
func (v paramsView) copiesText() string {
	if v.StorageCopies == 0 {
		return "at every storage organization"
	}
	return fmt.Sprint(v.StorageCopies)
}

// String is the params on one line, as a proposal's change shows them.
func (v paramsView) String() string {
	kv := append(v.fields(), v.storageField()...)
	parts := make([]string, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		parts = append(parts, kv[i]+" "+kv[i+1])
	}
	return strings.Join(parts, "; ")
}

// paramsChangeText describes a params change: what differs from the
// params it replaces (recorded by the chain), or the whole new set when
// those are not known.
func paramsChangeText(set *emrv1.SetParams) string {
	to := viewParams(set.GetParams())
	if set.GetFromParams() == nil {
		return "params: " + to.String()
	}
	from := viewParams(set.GetFromParams())
	var parts []string
	// Sets: params may carry tens of thousands of categories.
	setOf := func(list []string) map[string]bool {
		m := make(map[string]bool, len(list))
		for _, c := range list {
			m[c] = true
		}
		return m
	}
	was, now := setOf(from.Categories), setOf(to.Categories)
	for _, c := range to.Categories {
		if !was[c] {
			parts = append(parts, "category "+c+" added")
		}
	}
	for _, c := range from.Categories {
		if !now[c] {
			parts = append(parts, "category "+c+" removed")
		}
	}
	was, now = setOf(from.StorageOrganizations), setOf(to.StorageOrganizations)
	for _, o := range to.StorageOrganizations {
		if !was[o] {
			parts = append(parts, "storage organization "+o+" named")
		}
	}
	for _, o := range from.StorageOrganizations {
		if !now[o] {
			parts = append(parts, "storage organization "+o+" dropped")
		}
	}
	if from.StorageCopies != to.StorageCopies {
		parts = append(parts, fmt.Sprintf("copies of each blob %s (was %s)", to.copiesText(), from.copiesText()))
	}
	// After the categories (the first pair), name and value pairs in the
	// same order.
	before, after := from.fields(), to.fields()
	// Params without CometBFT's limits (a malformed answer) lack those
	// pairs.
	for i := 2; i+1 < len(after); i += 2 {
		was := "not kept"
		if i+1 < len(before) {
			was = before[i+1]
		}
		if was != after[i+1] {
			parts = append(parts, fmt.Sprintf("%s %s (was %s)", after[i], after[i+1], was))
		}
	}
	if len(parts) == 0 {
		return "params: as they were"
	}
	return "params: " + strings.Join(parts, "; ")
}

func newParamsCmd(a *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "params",
		Short: "Show the consortium parameters (verified)",
		Long: `Show the consortium parameters (verified): the record categories, the size
limits, how long a proposal can be approved, and how many executed
proposals have changed them ("emrcli propose params" proposes new ones).`,
		Example: "  emrcli params\n  emrcli params --json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			var resp emrv1.QueryParamsResponse
			info, err := c.QueryInfo(ctx, "Params", &emrv1.QueryParamsRequest{}, &resp)
			if err != nil {
				return err
			}
			out := struct {
				paramsView
				Changes uint64 `json:"changes"`
				provenance
			}{viewParams(resp.Params), resp.Changes, viewInfo(info)}
			return a.emit(out, func(w io.Writer) {
				fields(w, append(append(out.paramsView.fields(), out.paramsView.storageField()...), "changed by proposals", fmt.Sprint(out.Changes))...)
				out.provenance.text(w)
			})
		},
	}
}
