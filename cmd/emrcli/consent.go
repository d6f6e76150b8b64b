package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/keyring"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

func newGrantCmd(a *cli) *cobra.Command {
	var (
		from, to, until, fromTime, study string
		rights, categories               []string
		anonymise, async, replace        bool
	)
	cmd := &cobra.Command{
		Use:   "grant --from PATIENT --to MEMBER --rights R[,R] [--categories C[,C]] --until TIME",
		Short: "Give a clinician or researcher consent over your records, or opt in to break-glass reads by an organization",
		Long: `grant records the patient's consent on chain: rights (read, write, share)
over categories (none = all) from --from-time (default: the grant's block
time) until --until, each a date (YYYY-MM-DD, midnight UTC) or RFC 3339 time.
It seals the patient's current key-encryption key to the grantee's encryption
key, fetched from the chain and verified, bound to (patient, grantee, key
version); only that grantee can open it. A grant to the same member replaces
the previous one whole: when the member's standing consent would lose
anything by it (a right, a category, time, the study, or sharing without
anonymisation), grant refuses and says what, unless --replace is given; to
add a right, give the rights to keep too. The share right needs --study (and --anonymise if shared
data must be anonymised); the study downloads what the member shares only
while this consent stands, and what it downloaded stays with it. An
anonymised share is a de-identified document, but the chain shows every
member its patient id and record metadata (docs/decisions.md).

--rights emergency, alone, to an organization's emergency service (a member of
role emergency-service: "emrcli member show" says), is your opt-in to
emergency ("break-glass") reads by that organization's clinicians: any active
clinician of it may then read your records of --categories (default: all)
without a consent of their own, with "emrcli download --purpose emergency".
Each such read is logged on chain as an emergency read naming the service
and the clinician's reason (patient-incapacitated, immediate-threat or
patient-request):
you see it in "emrcli audit", and the organization's auditors review them.
The service holds your key (sealed to its emergency key like any grantee's)
and releases to the clinician only the data key of each record read, never
your key. "emrcli revoke" ends the opt-in (and rotates your key) like any
consent.`,
		Example: `  emrcli grant --from alice --to dr-who --rights read,write --categories lab-results --until 2027-01-01
  emrcli grant --from alice --to 3F2A0C9D5E6B7A8190AB3F2A0C9D5E6B7A8190AB --rights read --until 2026-12-31T18:00:00Z
  emrcli grant --from alice --to dr-lab --rights share --study covid-19 --anonymise --until 2027-06-30
  emrcli grant --from alice --to st-mary-emergency --rights emergency --categories prescriptions,radiation-dose --until 2030-01-01`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			rightNames, cats := splitList(rights), splitList(categories)
			if cmd.Flags().Changed("categories") && len(cats) == 0 {
				// No category on chain means every category: an empty
				// list (an unset variable in a script) must not widen
				// the consent to all.
				return usagef("--categories is empty: name the categories the consent covers, or leave the flag out to cover all of them")
			}
			rs, err := parseRights(rightNames)
			if err != nil {
				return err
			}
			if until == "" {
				return usagef("--until is required: consent always ends")
			}
			notAfter, err := parseTime("until", until)
			if err != nil {
				return err
			}
			var notBefore time.Time
			if fromTime != "" {
				if notBefore, err = parseTime("from-time", fromTime); err != nil {
					return err
				}
				if !notBefore.Before(notAfter) {
					return usagef("--from-time %s is not before --until %s", fromTime, until)
				}
			}
			if hasShare := slices.Contains(rs, emrv1.Right_RIGHT_SHARE); hasShare != (study != "") {
				if hasShare {
					return usagef("--rights share needs --study: the study the member may share with")
				}
				return usagef("--study is for the share right: add share to --rights")
			}
			if anonymise && study == "" {
				return usagef("--anonymise is for the share right: give --rights share and --study")
			}
			grantee, err := a.address(to)
			if err != nil {
				return err
			}
			k, pid, c, err := a.signer(ctx, from, "")
			if err != nil {
				return err
			}
			old, info, err := c.Permission(ctx, pid, grantee)
			if err != nil && !errors.Is(err, client.ErrNotFound) {
				return err
			}
			spec := client.GrantSpec{
				Grantee: grantee, Rights: rs, Categories: cats, NotBefore: notBefore, NotAfter: notAfter,
				StudyID: study, Anonymise: anonymise,
			}
			var replaced string
			if now := blockTime(info); old != nil && old.RevokedHeight == 0 && now.Before(old.GetNotAfter().AsTime()) {
				replaced = describeConsent(old)
				lost := consentLost(old, spec, now)
				if len(lost) > 0 && !replace {
					return usagef("%s already holds a consent: %s. A grant replaces it whole, and this one would take away %s. "+
						"Give the rights, categories and time to keep as well, or --replace to replace it as given",
						to, replaced, strings.Join(lost, ", "))
				}
			}
			msg, err := c.GrantMsg(ctx, pid, spec, existingKEK(a.kr, k))
			if err != nil {
				return err
			}
			res, err := a.submit(ctx, k, msg, async)
			if err != nil && !client.NotSent(err) {
				return fmt.Errorf("%w (the grant may have reached the node with your current key sealed to %s: if you no longer mean to grant it, emrcli rotate-key)", err, to)
			}
			if err != nil {
				return err
			}
			g := msg.GetGrant()
			out := struct {
				PatientID  string   `json:"patient_id"`
				Grantee    string   `json:"grantee"`
				Rights     []string `json:"rights"`
				Categories []string `json:"categories"`
				NotAfter   string   `json:"not_after"`
				StudyID    string   `json:"study_id,omitempty"`
				Anonymise  bool     `json:"anonymise,omitempty"`
				Replaced   string   `json:"replaced,omitempty"`
				Tx         *txView  `json:"tx"`
			}{hexStr(pid), upperHex(grantee), rightsNames(g.Rights), cats, ts(g.NotAfter), g.StudyId, g.Anonymise, replaced, viewTx(res)}
			return a.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "granted %s %s\n", out.Grantee, describeConsent(&emrv1.Permission{
					Rights: g.Rights, Categories: cats, NotBefore: g.NotBefore, NotAfter: g.NotAfter, StudyId: g.StudyId, Anonymise: g.Anonymise}))
				if out.Replaced != "" {
					fmt.Fprintf(w, "it replaces: %s\n", out.Replaced)
				}
				out.Tx.text(w)
			})
		},
	}
	f := cmd.Flags()
	a.keyFlag(cmd, &from, "from", "the patient's key")
	a.keyFlag(cmd, &to, "to", "grantee: address or key name")
	f.StringSliceVar(&rights, "rights", nil, "read, write and/or share; or emergency, alone, to an emergency service (opt-in to break-glass reads)")
	f.StringSliceVar(&categories, "categories", nil, "record categories, among those \"emrcli params\" lists (default: all)")
	f.StringVar(&until, "until", "", "end of the consent: YYYY-MM-DD (midnight UTC) or RFC 3339")
	f.StringVar(&fromTime, "from-time", "", "start of the consent: YYYY-MM-DD (midnight UTC) or RFC 3339 (default: the grant's block time)")
	f.StringVar(&study, "study", "", "study the share right is for")
	f.BoolVar(&anonymise, "anonymise", false, "shared data must be anonymised")
	f.BoolVar(&async, "async", false, "do not wait for the transaction to commit")
	f.BoolVar(&replace, "replace", false, "replace the member's standing consent even where this grant gives less")
	_ = cmd.RegisterFlagCompletionFunc("rights", cobra.FixedCompletions([]string{"read", "write", "share", "emergency"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// describeConsent says what a consent allows: "read+write on all
// categories until T", with the study a share right is for.
func describeConsent(p *emrv1.Permission) string {
	cats := strings.Join(p.Categories, ",")
	if cats == "" {
		cats = "all categories"
	}
	d := fmt.Sprintf("%s on %s until %s", strings.Join(rightsNames(p.Rights), "+"), cats, ts(p.NotAfter))
	if p.NotBefore != nil {
		d = fmt.Sprintf("%s on %s from %s until %s", strings.Join(rightsNames(p.Rights), "+"), cats, ts(p.NotBefore), ts(p.NotAfter))
	}
	if p.StudyId != "" {
		d += ", sharing with study " + p.StudyId
		if p.Anonymise {
			d += " (anonymised only)"
		}
	}
	return d
}

// consentLost lists what a standing consent old would lose if grant g
// replaced it at block time now: nothing when g gives at least as much.
func consentLost(old *emrv1.Permission, g client.GrantSpec, now time.Time) []string {
	rights, cats, study := g.Rights, g.Categories, g.StudyID
	var lost []string
	for _, r := range old.Rights {
		if !slices.Contains(rights, r) {
			lost = append(lost, "the "+rightsNames([]emrv1.Right{r})[0]+" right")
		}
	}
	switch {
	case len(cats) == 0:
	case len(old.Categories) == 0:
		lost = append(lost, "every category but "+strings.Join(cats, ","))
	default:
		for _, c := range old.Categories {
			if !slices.Contains(cats, c) {
				lost = append(lost, "category "+c)
			}
		}
	}
	if g.NotAfter.Before(old.GetNotAfter().AsTime()) {
		lost = append(lost, "the time until "+ts(old.NotAfter))
	}
	// A later start: the grant starts at its block (about now) unless it
	// names a time, and the old consent stands from its own start.
	oldStart := now
	if old.NotBefore != nil && old.NotBefore.AsTime().After(now) {
		oldStart = old.NotBefore.AsTime()
	}
	if g.NotBefore.After(oldStart) {
		lost = append(lost, "the time before "+rfc3339(g.NotBefore))
	}
	if slices.Contains(old.Rights, emrv1.Right_RIGHT_SHARE) && slices.Contains(rights, emrv1.Right_RIGHT_SHARE) {
		if study != old.StudyId {
			lost = append(lost, "sharing with study "+old.StudyId)
		} else if g.Anonymise && !old.Anonymise {
			lost = append(lost, "sharing without anonymisation")
		}
	}
	return lost
}

func splitList(in []string) []string {
	out := []string{}
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// newKEK is the KEKFunc of a rotation: reuse a stored version (an earlier
// attempt may have used it), else create, save, then use it.
func newKEK(kr *keyring.Keyring, k *keyring.Key) client.KEKFunc {
	return func(v uint64) ([]byte, error) { return ensureKEK(kr, k, v) }
}

func newRevokeCmd(a *cli) *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "revoke --from PATIENT --to MEMBER",
		Short: "Revoke a consent and rotate your key so it stops every future read",
		Long: `revoke submits Revoke (from its block on, the chain refuses the member's
reads, writes and shares, and sidecars stop serving what it shared with a
study), then RotateKey until the patient's key is two versions
past the last one sealed to the member: twice when that is the current
version, once when it is the one before, not at all when it is older. Each
rotation makes a new version of the patient's key-encryption key (saved in
the key before it is used), sealed to every member whose consent still
stands (any right), so the revoked member holds no key for anything written
from now on. Two versions, because the key of the next version may already
exist from an earlier rotation attempt that never committed, and that
attempt may have sealed it to the member being revoked; the key of the
version after it is made after the revocation. Run it again after a
failure: it completes whatever is missing. It prints what was rotated. It
always waits for each transaction to commit (there is no --async): the
rotation must see the revocation committed.

The last rotation also re-wraps the data key of every existing record under
the new key (unwrapped with the version each record was wrapped under, which
this key holds), so the remaining grantees can still read them while the
revoked member's old key opens nothing new. A rotation before it re-wraps
nothing (its key is replaced a block later), so until revoke completes the
remaining grantees cannot open older records: run it again after a failure. The chain takes at most
params.max_rewraps_per_rotation re-wrapped keys per rotation and has no
follow-up message yet: if the patient has more records, the newest are
re-wrapped and revoke lists the others, which stay readable by the patient
only. Records whose key this key cannot unwrap are listed the same way.

Honest limits: a file the member already downloaded and decrypted cannot be
taken back, and neither can a data key it already unwrapped: only
re-encrypting such a file (download, upload again) takes it out of reach.`,
		Example: `  emrcli revoke --from alice --to dr-who`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			grantee, err := a.address(to)
			if err != nil {
				return err
			}
			k, pid, c, err := a.signer(ctx, from, "")
			if err != nil {
				return err
			}
			res, err := c.RevokeAndRotate(ctx, k, pid, grantee, newKEK(a.kr, k), client.FileKeyRewrapper(pid, existingKEK(a.kr, k)))
			if err != nil {
				return err
			}
			out := struct {
				PatientID     string          `json:"patient_id"`
				Grantee       string          `json:"grantee"`
				RevokedHeight int64           `json:"revoked_height"`
				RevokeTx      *txView         `json:"revoke_tx"`
				Rotation      *rotationView   `json:"rotation"` // the last of rotations
				Rotations     []*rotationView `json:"rotations"`
			}{PatientID: hexStr(pid), Grantee: upperHex(grantee), RevokedHeight: res.RevokedHeight, RevokeTx: viewTx(res.Revoke),
				Rotations: []*rotationView{}}
			for _, r := range res.Rotations {
				rv := viewRotation(r)
				out.Rotations = append(out.Rotations, rv)
				out.Rotation = rv
			}
			return a.emit(out, func(w io.Writer) {
				if out.RevokeTx != nil {
					fmt.Fprintf(w, "revoked %s at height %d\n", out.Grantee, out.RevokedHeight)
					out.RevokeTx.text(w)
				} else {
					fmt.Fprintf(w, "%s was already revoked at height %d\n", out.Grantee, out.RevokedHeight)
				}
				for _, rv := range out.Rotations {
					rv.text(w)
				}
				if len(out.Rotations) == 0 {
					fmt.Fprintln(w, "no key rotation needed: the member holds no current key (if a grant to it was ever sent and did not commit, it may: emrcli rotate-key)")
				}
			})
		},
	}
	a.keyFlag(cmd, &from, "from", "the patient's key")
	a.keyFlag(cmd, &to, "to", "member to revoke: address or key name")
	return cmd
}

// rotationView is a key rotation as revoke and rotate-key show it.
type rotationView struct {
	OldVersion uint64   `json:"old_key_version"`
	NewVersion uint64   `json:"new_key_version"`
	Envelopes  []string `json:"new_envelopes_for"`
	// Standing consents of retired members: no envelope.
	Retired      []string      `json:"not_sealed_to_retired"`
	Rewrapped    []uint64      `json:"rewrapped_records"`
	NotRewrapped []skippedView `json:"not_rewrapped_records"`
	// The next rotation re-wraps the records instead.
	RewrapDeferred bool    `json:"rewrap_deferred"`
	Tx             *txView `json:"tx"`
}

// skippedView is a record a rotation did not re-wrap, and why.
type skippedView struct {
	Record     uint64 `json:"record"`
	KeyVersion uint64 `json:"key_version"`
	Reason     string `json:"reason"`
}

func viewRotation(r *client.RotationResult) *rotationView {
	rv := &rotationView{OldVersion: r.OldVersion, NewVersion: r.NewVersion, Envelopes: []string{}, Retired: []string{}, Rewrapped: r.Rewrapped,
		NotRewrapped: []skippedView{}, RewrapDeferred: r.RewrapDeferred, Tx: viewTx(r.Tx)}
	for _, sk := range r.Skipped {
		rv.NotRewrapped = append(rv.NotRewrapped, skippedView{sk.Sequence, sk.KeyVersion, sk.Reason})
	}
	for _, g := range r.Grantees {
		rv.Envelopes = append(rv.Envelopes, upperHex(g))
	}
	for _, g := range r.Retired {
		rv.Retired = append(rv.Retired, upperHex(g))
	}
	if rv.Rewrapped == nil {
		rv.Rewrapped = []uint64{}
	}
	return rv
}

func (rv *rotationView) text(w io.Writer) {
	fmt.Fprintf(w, "rotated the patient key: version %d -> %d\n", rv.OldVersion, rv.NewVersion)
	if len(rv.Envelopes) == 0 {
		fmt.Fprintln(w, "  new key sealed to: nobody (no other unrevoked, unexpired consent to an active or suspended member)")
	} else {
		fmt.Fprintf(w, "  new key sealed to: %s\n", strings.Join(rv.Envelopes, ", "))
	}
	if len(rv.Retired) > 0 {
		fmt.Fprintf(w, "  not sealed to (retired: their organization left the consortium; their consents stand on older keys until revoked): %s\n", strings.Join(rv.Retired, ", "))
	}
	if rv.RewrapDeferred {
		fmt.Fprintln(w, "  record keys: re-wrapped by the next rotation, straight under its key")
	} else {
		fmt.Fprintf(w, "  record keys re-wrapped under version %d: %d of %d records\n", rv.NewVersion, len(rv.Rewrapped), len(rv.Rewrapped)+len(rv.NotRewrapped))
		if n := len(rv.NotRewrapped); n > 0 {
			seqs := make([]string, 0, n)
			for i, sk := range rv.NotRewrapped {
				if i == 20 {
					seqs = append(seqs, fmt.Sprintf("and %d more", n-i))
					break
				}
				seqs = append(seqs, fmt.Sprint(sk.Record))
			}
			fmt.Fprintf(w, "  NOT re-wrapped: %d record(s) (%s) stay under older key versions: you can still read them, your grantees cannot.\n",
				n, strings.Join(seqs, ", "))
			fmt.Fprintf(w, "    reason (record %d): %s\n", rv.NotRewrapped[0].Record, rv.NotRewrapped[0].Reason)
		}
	}
	rv.Tx.text(w)
}

func newRotateKeyCmd(a *cli) *cobra.Command {
	var from string
	cmd := &cobra.Command{
		Use:   "rotate-key --from PATIENT",
		Short: "Rotate your key: what is written from now on opens only for your standing consents",
		Long: `rotate-key submits RotateKey once: a new version of the patient's
key-encryption key (stored in your keyring before it is used), sealed to
every member whose consent still stands (any right), with the data keys of
your records re-wrapped under it as revoke's last rotation does (at most
params.max_rewraps_per_rotation of them, the newest first; records whose key
cannot be unwrapped are listed). Records written from then on are wrapped
under a key no one else holds.

revoke rotates by itself. rotate-key is for a key that may have reached a
member without a consent on the chain: a grant that failed or never
committed (its transaction carried your current key sealed to the member,
and the node it was sent to saw it), or a copy of your key you no longer
trust. If that member shows among "new key sealed to", the grant committed
after all: revoke it. Below the floor of an unfinished revocation a
rotation re-wraps nothing, and says so: run revoke again to finish it.
Honest limits as for revoke: what a member already decrypted cannot be
taken back.`,
		Example: `  emrcli rotate-key --from alice`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			k, pid, c, err := a.signer(ctx, from, "")
			if err != nil {
				return err
			}
			res, err := c.RotateKey(ctx, k, pid, newKEK(a.kr, k), client.FileKeyRewrapper(pid, existingKEK(a.kr, k)))
			if err != nil {
				return err
			}
			out := struct {
				PatientID string `json:"patient_id"`
				*rotationView
			}{hexStr(pid), viewRotation(res)}
			return a.emit(out, func(w io.Writer) {
				out.text(w)
				if out.RewrapDeferred {
					fmt.Fprintln(w, "A revocation's key rotations are unfinished, so no record key was re-wrapped: run emrcli revoke --to MEMBER again for the member revoked (or rotate-key again). Until then your grantees cannot open your existing records.")
				}
			})
		},
	}
	a.keyFlag(cmd, &from, "from", "the patient's key")
	return cmd
}
