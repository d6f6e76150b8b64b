package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// kekFor returns the KEK k may wrap a patient's data keys with, and its
// version: the owner's own (current version, checked against the chain's
// check value: another copy of the key may hold another), else the one in
// k's grant (GranteeKEK checks it).
func (a *cli) kekFor(ctx context.Context, c *client.Client, k *keyring.Key, pid []byte) ([]byte, uint64, error) {
	// Unverified, the node names the KEK: the owner's by its version (an
	// older one, whose check value is public in its RotateKey, may be held
	// by a revoked grantee), a member's by the envelope it serves (one the
	// node sealed itself would give it the record's key).
	if err := c.SealVerified("a record's key is wrapped under the patient key the chain names"); err != nil {
		return nil, 0, err
	}
	p, err := c.Patient(ctx, pid)
	if err != nil {
		return nil, 0, err
	}
	owner, err := a.ownsPatient(ctx, k, p)
	if err != nil {
		return nil, 0, err
	}
	if owner {
		kek, err := existingKEK(a.kr, k)(p.KeyVersion)
		if err != nil {
			return nil, 0, err
		}
		if err := client.CheckKEK(p, p.KeyVersion, kek); err != nil {
			clear(kek)
			return nil, 0, err
		}
		return kek, p.KeyVersion, nil
	}
	kek, v, err := c.GranteeKEK(ctx, k.EncPrivKey(), pid, k.Address())
	if err != nil {
		return nil, 0, err
	}
	if v != p.KeyVersion {
		clear(kek)
		return nil, 0, fmt.Errorf("your consent carries key version %d, the patient's key is at version %d: ask the patient to grant again", v, p.KeyVersion)
	}
	return kek, v, nil
}

func newAddRecordCmd(a *cli) *cobra.Command {
	var from, patient, category, sum, objectKey, dataKeyFile string
	var size uint64
	var async bool
	cmd := &cobra.Command{
		Use:   "add-record --from KEY --patient ID --category C --sha256 HEX --size N --object-key KEY --data-key-file FILE",
		Short: "Add the metadata of an encrypted file to a patient's records",
		Long: `add-record adds a record's metadata: category, where the ciphertext lives
(--object-key), its SHA-256 and size, and the data key the ciphertext was
encrypted with (--data-key-file: 64 hex characters, the 32-byte key of
emrchain's file format), wrapped under the patient's key-encryption key (the
patient's own, or the one sealed to you in your consent); you sign
(patient, category, hash) as the uploader. The signer must be the patient or
hold a write consent covering the category. Readers unwrap that data key to
decrypt the file, so it must be the one the file was encrypted with.

This command records metadata only, for ciphertext encrypted and stored by
other means; "emrcli upload" encrypts a file, uploads it to a blob sidecar
and adds its record in one go.`,
		Example: `  emrcli add-record --from dr-who --patient 5be1...9f --category lab-results \
    --sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 --size 4096 --object-key blobs/9f86d0 \
    --data-key-file ./lab-1.key`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			h, ok := decodeHex(sum, 32)
			if !ok {
				return usagef("--sha256: want 64 hex characters")
			}
			if category == "" || objectKey == "" || dataKeyFile == "" {
				return usagef("--category, --object-key and --data-key-file are required")
			}
			dataKey, err := readHexKeyFile("--data-key-file", dataKeyFile, crypto.KeySize, "the data key the ciphertext was encrypted with")
			if err != nil {
				return err
			}
			defer clear(dataKey)
			k, pid, c, err := a.signer(ctx, from, patient)
			if err != nil {
				return err
			}
			kek, version, err := a.kekFor(ctx, c, k, pid)
			if err != nil {
				return err
			}
			defer clear(kek)
			msg, err := client.AddRecordMsg(pid, client.RecordSpec{Category: category, ObjectKey: objectKey, SHA256: h, Size: size}, kek, version, dataKey)
			if err != nil {
				return err
			}
			res, err := a.submit(ctx, k, msg, async)
			if err != nil {
				return err
			}
			out := struct {
				PatientID string  `json:"patient_id"`
				Record    uint64  `json:"record,omitempty"`
				Tx        *txView `json:"tx"`
			}{PatientID: hexStr(pid), Tx: viewTx(res)}
			if res.Height > 0 {
				out.Record = c.RecordCreatedBy(ctx, res, pid).GetSequence()
			}
			return a.emit(out, func(w io.Writer) {
				if out.Record > 0 {
					fmt.Fprintf(w, "added record %d of patient %s\n", out.Record, out.PatientID)
				}
				out.Tx.text(w)
			})
		},
	}
	f := cmd.Flags()
	a.keyFlag(cmd, &from, "from", "uploader key (the patient or a member with write consent)")
	f.StringVar(&patient, "patient", "", "patient id (hex) or enrolled key name (default: --from's own patient)")
	f.StringVar(&category, "category", "", "record category, e.g. lab-results")
	f.StringVar(&sum, "sha256", "", "SHA-256 of the ciphertext (hex)")
	f.Uint64Var(&size, "size", 0, "size of the ciphertext in bytes")
	f.StringVar(&objectKey, "object-key", "", "where the ciphertext is stored (public on chain: a name that says nothing, such as its SHA-256)")
	f.StringVar(&dataKeyFile, "data-key-file", "", "file holding the data key the ciphertext was encrypted with (64 hex characters)")
	f.BoolVar(&async, "async", false, "do not wait for the transaction to commit")
	return cmd
}

func newReadCmd(a *cli) *cobra.Command {
	var from, patient, purposeStr, via, reasonStr string
	var records []string
	var async bool
	cmd := &cobra.Command{
		Use:   "read --from KEY --patient ID --record N[,N]",
		Short: "Log a read of records on chain (the audit trail), then show their verified metadata",
		Long: `read submits RecordAccess: the chain checks, at block time, that you are the
patient or hold a consent with the right for the purpose (read for treatment,
share for research) over each record's category, and logs one access event per
record before any ciphertext may be served. A refused read exits non-zero with
the chain's reason. Then it shows each record's metadata, verified: proven
against a light-client-verified header, and signed by its uploader.

--purpose emergency logs a break-glass read: a clinician without a consent
reads through the emergency service of its organization that the patient
opted in to (--via; by default the first, by address, whose opt-in stands
for the categories of all the records named), for records of the categories
the opt-in covers, and says why (--reason, required: patient-incapacitated,
immediate-threat or patient-request). The patient sees it in "emrcli audit" as
an emergency read naming the service and the reason.

To fetch, verify and decrypt the file as well, use "emrcli download" (which
logs the read the same way).`,
		Example: `  emrcli read --from dr-who --patient 5be1...9f --record 1
  emrcli read --from dr-who --patient 5be1...9f --record 1,2 --purpose treatment
  emrcli read --from dr-er --patient 5be1...9f --record 2 --purpose emergency --reason patient-incapacitated`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			purpose, err := parsePurpose(purposeStr)
			if err != nil {
				return err
			}
			var seqs []uint64
			for _, s := range splitList(records) {
				n, err := strconv.ParseUint(s, 10, 64)
				if err != nil || n == 0 {
					return usagef("--record %q: want record numbers (1, 2, ...)", s)
				}
				seqs = append(seqs, n)
			}
			if len(seqs) == 0 {
				return usagef("--record is required")
			}
			viaAddr, err := a.viaService(via, purpose)
			if err != nil {
				return err
			}
			reason, err := emergencyReason(reasonStr, purpose, false)
			if err != nil {
				return err
			}
			k, pid, c, err := a.signer(ctx, from, patient)
			if err != nil {
				return err
			}
			access := &emrv1.MsgRecordAccess{PatientId: pid, RecordSequences: seqs, Purpose: purpose, EmergencyReason: reason,
				EmergencyService: viaAddr}
			var recs []*emrv1.Record // read once: before the read when its service is found by their categories
			if purpose == emrv1.Purpose_PURPOSE_EMERGENCY && viaAddr == nil {
				if recs, err = recordsOf(ctx, c, pid, seqs); err != nil {
					return err
				}
				if access.EmergencyService, err = emergencyServiceFor(ctx, c, k, pid, recs); err != nil {
					return err
				}
			}
			msg := &emrv1.Msg{Sum: &emrv1.Msg_RecordAccess{RecordAccess: access}}
			res, err := a.submit(ctx, k, msg, async)
			if err != nil {
				return err
			}
			out := struct {
				Records []recordView `json:"records"`
				Tx      *txView      `json:"tx"`
				// EmergencyReason is a break-glass read's reason.
				EmergencyReason string `json:"emergency_reason,omitempty"`
			}{Tx: viewTx(res), Records: []recordView{}}
			if reason != 0 {
				out.EmergencyReason = app.EmergencyReasonName(reason)
			}
			if recs == nil {
				if recs, err = recordsOf(ctx, c, pid, seqs); err != nil {
					return err
				}
			}
			if err := c.CheckUploaderSignatures(ctx, recs); err != nil {
				return err
			}
			for _, r := range recs {
				out.Records = append(out.Records, viewRecord(r))
			}
			return a.emit(out, func(w io.Writer) {
				if out.EmergencyReason != "" {
					fmt.Fprintf(w, "read logged (%s, reason %s)\n", purposeName(purpose), out.EmergencyReason)
				} else {
					fmt.Fprintf(w, "read logged (%s)\n", purposeName(purpose))
				}
				out.Tx.text(w)
				for _, r := range out.Records {
					fmt.Fprintln(w)
					r.text(w)
				}
			})
		},
	}
	f := cmd.Flags()
	a.keyFlag(cmd, &from, "from", "reader key")
	f.StringVar(&patient, "patient", "", "patient id (hex) or enrolled key name (default: --from's own patient)")
	f.StringSliceVar(&records, "record", nil, "record number(s)")
	f.StringVar(&purposeStr, "purpose", "treatment", "treatment, research or emergency (a break-glass read: see above)")
	a.keyFlag(cmd, &via, "via", "with --purpose emergency: the emergency service (address or key name; default: the one the patient opted in to)")
	reasonFlag(cmd, &reasonStr)
	f.BoolVar(&async, "async", false, "do not wait for the transaction to commit")
	_ = cmd.RegisterFlagCompletionFunc("purpose", cobra.FixedCompletions([]string{"treatment", "research", "emergency"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// reasonWords are the emergency reasons as --reason takes them, and as a
// sentence lists them.
var reasonWords, reasonChoices = app.EmergencyReasonNames(), app.OrList(app.EmergencyReasonNames())

// reasonFlag adds --reason, why a break-glass read breaks the glass.
func reasonFlag(cmd *cobra.Command, reason *string) {
	cmd.Flags().StringVar(reason, "reason", "", "with --purpose emergency, required for a new read: why you break the glass, "+reasonChoices+"; on the patient's audit trail")
	_ = cmd.RegisterFlagCompletionFunc("reason", cobra.FixedCompletions(reasonWords, cobra.ShellCompDirectiveNoFileComp))
}

// emergencyReason reads --reason, before any passphrase prompt or network
// call: required by a break-glass read that logs a new read (reuse is
// --reuse-access), refused otherwise.
func emergencyReason(s string, purpose emrv1.Purpose, reuse bool) (emrv1.EmergencyReason, error) {
	switch {
	case purpose != emrv1.Purpose_PURPOSE_EMERGENCY:
		if s != "" {
			return 0, usagef("--reason says why a break-glass read breaks the glass: give --purpose emergency")
		}
		return 0, nil
	case reuse:
		if s != "" {
			return 0, usagef("--reason goes with a new break-glass read; --reuse-access logs none (its read's reason stands)")
		}
		return 0, nil
	case s == "":
		return 0, usagef("--purpose emergency needs --reason: %s (on the patient's audit trail)", reasonChoices)
	}
	r, err := app.ParseEmergencyReason(s)
	if err != nil {
		return 0, usagef("--reason: %v", err)
	}
	return r, nil
}

// viaService reads --via, the emergency service of a break-glass read
// (nil when not given), before any passphrase prompt or network call.
func (a *cli) viaService(via string, purpose emrv1.Purpose) ([]byte, error) {
	switch {
	case via == "":
		return nil, nil
	case purpose != emrv1.Purpose_PURPOSE_EMERGENCY:
		return nil, usagef("--via names the emergency service of a break-glass read: give --purpose emergency")
	}
	return a.address(via)
}

// recordsOf reads the patient pid's records seqs (verified).
func recordsOf(ctx context.Context, c *client.Client, pid []byte, seqs []uint64) ([]*emrv1.Record, error) {
	recs := make([]*emrv1.Record, 0, len(seqs))
	for _, seq := range seqs {
		r, err := c.Record(ctx, pid, seq)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", seq, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// emergencyServiceFor is the emergency service a break-glass read by k of
// the patient pid's records recs goes through when --via names none: the
// first, by address, of k's organization that the patient has a standing
// opt-in to for the categories of all of them (client.EmergencyServiceFor).
func emergencyServiceFor(ctx context.Context, c *client.Client, k *keyring.Key, pid []byte, recs []*emrv1.Record) ([]byte, error) {
	me, err := c.Member(ctx, k.Address())
	if err != nil {
		return nil, fmt.Errorf("your membership (%X): %w", k.Address(), err)
	}
	var categories []string
	for _, r := range recs {
		if !slices.Contains(categories, r.Category) {
			categories = append(categories, r.Category)
		}
	}
	return c.EmergencyServiceFor(ctx, me, pid, categories...)
}

func newRecordsCmd(a *cli) *cobra.Command {
	var from, patient, category string
	var after uint64
	var limit uint32
	cmd := &cobra.Command{
		Use:   "records [--patient ID | --from KEY] [--category C]",
		Short: "List a patient's records, oldest first (verified, complete)",
		Long: `records lists record metadata. Each record is proven against a
light-client-verified header, and the list is checked for completeness: a node
cannot leave a record out. Each record's uploader signature is checked with
its uploader's key (itself a verified read): a record its uploader did not
sign fails the command. Without --limit it pages through all records.

A record that names the ciphertext of an earlier one of the same category
(an alias, which the chain allows to whoever may write that category) is
flagged: reading it serves the earlier record's file, and the audit log
names the record read. With --limit or --after, only records of the listing
are compared.`,
		Example: `  emrcli records --from alice
  emrcli records --patient 5be1...9f --category lab-results --json
  emrcli records --from alice --after 20 --limit 10`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pid, c, err := a.queriedPatient(ctx, patient, from)
			if err != nil {
				return err
			}
			var recs []*emrv1.Record
			var info *client.QueryInfo
			var next uint64
			if limit > 0 {
				var resp emrv1.QueryRecordsResponse
				req := &emrv1.QueryRecordsRequest{PatientId: hexStr(pid), Category: category, Page: &emrv1.PageRequest{After: after, Limit: limit}}
				if info, err = c.QueryInfo(ctx, "Records", req, &resp); err != nil {
					return err
				}
				recs, next = resp.Records, resp.GetPage().GetNext()
			} else if recs, info, err = c.AllRecords(ctx, pid, category); err != nil {
				return err
			}
			if err := c.CheckUploaderSignatures(ctx, recs); err != nil {
				return err
			}
			out := struct {
				PatientID string       `json:"patient_id"`
				Records   []recordView `json:"records"`
				Next      uint64       `json:"next,omitempty"`
				provenance
			}{hexStr(pid), []recordView{}, next, viewInfo(info)}
			for _, r := range recs {
				if r.Sequence > after {
					out.Records = append(out.Records, viewRecord(r))
				}
			}
			markAliases(out.Records)
			return a.emit(out, func(w io.Writer) {
				switch {
				case len(out.Records) > 0:
					table(w, []string{"#", "CATEGORY", "SIZE", "UPLOADER", "ADDED", "SHA-256"}, recordRows(out.Records))
				case next > 0:
					// A filtered page ends early after reading a bounded
					// number of records: none of them matched, but later
					// ones may.
					fmt.Fprintln(w, "no records on this page")
				default:
					fmt.Fprintln(w, "no records")
				}
				for _, r := range out.Records {
					if r.SameCiphertextAs != 0 {
						fmt.Fprintf(w, "note: record %d names the ciphertext of record %d (added by %s): a read of either serves the same file\n",
							r.Sequence, r.SameCiphertextAs, r.Uploader)
					}
				}
				if next > 0 {
					fmt.Fprintf(w, "more: --after %d\n", next)
				}
				out.provenance.text(w)
			})
		},
	}
	f := cmd.Flags()
	a.patientFlags(cmd, &patient, &from)
	f.StringVar(&category, "category", "", "only this category")
	f.Uint64Var(&after, "after", 0, "start after this record number")
	f.Uint32Var(&limit, "limit", 0, "records per page (default: all)")
	return cmd
}
