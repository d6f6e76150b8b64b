package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

func newPatientCmd(a *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "patient",
		Short: "Enroll as a patient, show a patient",
		Example: `  emrcli patient enroll --from alice --name "Ada Lovelace" --birth-date 1815-12-10
  emrcli patient show --from alice`,
	}
	cmd.AddCommand(newPatientEnrollCmd(a), newPatientShowCmd(a))
	return cmd
}

// ensureKEK returns the key's KEK of version, creating and saving it
// first when it does not exist (so a crash never loses a KEK the chain
// may already reference). Another emrcli run may have made that version
// since this one loaded the key: the keyring is asked again first.
func ensureKEK(kr *keyring.Keyring, k *keyring.Key, version uint64) ([]byte, error) {
	if kek, ok := storedKEK(kr, k, version); ok {
		return kek, nil
	}
	kek, err := crypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	if k.KEKs == nil {
		k.KEKs = map[uint64][]byte{}
	}
	k.KEKs[version] = kek
	if err := kr.Save(k); err != nil {
		delete(k.KEKs, version) // not saved: never handed out later
		return nil, fmt.Errorf("save the new key-encryption key: %w", err)
	}
	return bytes.Clone(kek), nil // the caller clears what it is handed
}

// existingKEK is the KEKFunc of commands that must not create KEKs.
func existingKEK(kr *keyring.Keyring, k *keyring.Key) client.KEKFunc {
	return func(v uint64) ([]byte, error) {
		if kek, ok := storedKEK(kr, k, v); ok {
			return kek, nil
		}
		return nil, fmt.Errorf("key %q holds no key-encryption key version %d of its patient (was it rotated from another copy of the key?)", k.Name, v)
	}
}

// storedKEK is k's KEK of version, as loaded or as saved since by another
// emrcli run (a rotation there made it).
func storedKEK(kr *keyring.Keyring, k *keyring.Key, version uint64) ([]byte, bool) {
	if kek, ok := k.KEK(version); ok {
		return kek, true
	}
	if kr == nil || kr.Refresh(k) != nil {
		return nil, false
	}
	return k.KEK(version)
}

func newPatientEnrollCmd(a *cli) *cobra.Command {
	var from, identityFile, name, birth string
	var async bool
	cmd := &cobra.Command{
		Use:   "enroll --from KEY (--identity FILE | --name NAME --birth-date YYYY-MM-DD)",
		Short: "Enroll the key as a patient under a pseudonymous id",
		Long: `enroll derives the patient's pseudonymous id on this machine from a seed,
HMAC-SHA256(patient secret, normalized identifying information), where the
patient secret is kept in the key (it never leaves the keyring), and from
the key's public signing key: id = SHA-256(domain, public key, seed). The
chain accepts that id from this key only, so nobody who sees the pending
transaction can enroll the id first. enroll creates the patient's first
key-encryption key (kept in the key as well) and submits EnrollPatient. The
identifying information never leaves this machine.

Identifying information is either an --identity JSON file (an object,
canonicalized: keys sorted, strings trimmed) or --name and --birth-date (the
name is lowercased and its whitespace normalized). Prefer the file on a
shared machine: command-line arguments are visible to every local user (ps)
and kept in the shell's history. Enrolling the same key with the same
information always gives the same id.`,
		Example: `  emrcli patient enroll --from bob --identity ./bob-identity.json
  emrcli patient enroll --from alice --name "Ada Lovelace" --birth-date 1815-12-10`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var identity []byte
			var err error
			switch {
			case identityFile != "" && (name != "" || birth != ""):
				return usagef("give --identity or --name/--birth-date, not both")
			case identityFile != "":
				raw, err := os.ReadFile(identityFile)
				if err != nil {
					return err
				}
				if identity, err = client.IdentityFromJSON(raw); err != nil {
					return usageError{err}
				}
			case name != "" && birth != "":
				if identity, err = client.IdentityFromNameAndBirth(name, birth); err != nil {
					return usageError{err}
				}
			default:
				return usagef("give --identity FILE, or --name and --birth-date")
			}
			k, err := a.key(from)
			if err != nil {
				return err
			}
			seed, err := client.PatientSeed(k.PatientSecret, identity)
			if err != nil {
				return err
			}
			id := app.BoundPatientID(k.PubKey(), seed)
			if k.PatientID != nil && !bytes.Equal(k.PatientID, id) {
				return fmt.Errorf("key %q already enrolled as patient %x; this identifying information gives another id", from, k.PatientID)
			}
			kek, err := ensureKEK(a.kr, k, 1) // made and saved before the enrolment can commit
			if err != nil {
				return err
			}
			msg := client.EnrollPatientMsg(k.PubKey(), k.EncPubKey(), seed, kek)
			clear(kek)
			res, err := a.submit(ctx, k, msg, async)
			if errors.Is(err, app.ErrAlreadyExists) && k.PatientID == nil {
				// An earlier enrolment of this key committed unseen
				// (--async, a wait that timed out, an interrupt).
				if err = a.enrolledBefore(ctx, k, id, err); err == nil {
					res = nil // not this run's transaction, which failed
				}
			}
			if err != nil {
				return err
			}
			if res != nil && res.Height > 0 && k.PatientID == nil {
				if err := a.rememberPatient(ctx, k, id); err != nil {
					return err
				}
			}
			out := struct {
				PatientID string  `json:"patient_id"`
				Tx        *txView `json:"tx,omitempty"`
			}{hexStr(id), viewTx(res)}
			return a.emit(out, func(w io.Writer) {
				fmt.Fprintf(w, "patient id: %s\n", out.PatientID)
				if res == nil {
					fmt.Fprintln(w, "already enrolled (by an earlier run); the key now keeps the patient id")
					return
				}
				out.Tx.text(w)
			})
		},
	}
	f := cmd.Flags()
	a.keyFlag(cmd, &from, "from", "key that becomes the patient's account")
	f.StringVar(&identityFile, "identity", "", "JSON file of identifying information")
	f.StringVar(&name, "name", "", "the patient's full name")
	f.StringVar(&birth, "birth-date", "", "the patient's birth date, YYYY-MM-DD")
	f.BoolVar(&async, "async", false, "do not wait for the transaction to commit")
	return cmd
}

// enrolledBefore handles an enrolment the chain refused as existing: when
// the chain shows that k already owns patient id, k keeps the id (if the
// read was verified: rememberPatient) and the enrolment is done (nil);
// otherwise refused is returned, with what the chain shows.
func (a *cli) enrolledBefore(ctx context.Context, k *keyring.Key, id []byte, refused error) error {
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	p, err := c.PatientByOwner(ctx, k.Address())
	switch {
	case errors.Is(err, client.ErrNotFound):
		return refused // the id is another account's
	case err != nil:
		return fmt.Errorf("%w (and the key's own patient cannot be read: %w)", refused, err)
	case !bytes.Equal(p.Id, id):
		return fmt.Errorf("%w: key %q already owns patient %x, and this identifying information gives %x", refused, k.Name, p.Id, id)
	}
	return a.rememberPatient(ctx, k, id)
}

func newPatientShowCmd(a *cli) *cobra.Command {
	var from, patient string
	cmd := &cobra.Command{
		Use:     "show [--patient ID | --from KEY]",
		Short:   "Show a patient (verified)",
		Example: "  emrcli patient show --from alice\n  emrcli patient show --patient 5be1...9f",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			id, c, err := a.queriedPatient(ctx, patient, from)
			if err != nil {
				return err
			}
			var resp emrv1.QueryPatientResponse
			info, err := c.QueryInfo(ctx, "Patient", &emrv1.QueryPatientRequest{PatientId: hexStr(id)}, &resp)
			if err != nil {
				return err
			}
			if resp.Patient == nil {
				return errors.New("no patient in the answer")
			}
			v := viewPatient(resp.Patient)
			out := struct {
				patientView
				provenance
			}{v, viewInfo(info)}
			return a.emit(out, func(w io.Writer) { v.text(w); out.provenance.text(w) })
		},
	}
	cmd.Flags().StringVar(&patient, "patient", "", "patient id (hex) or an enrolled key's name")
	a.keyFlag(cmd, &from, "from", "the patient owned by this key")
	return cmd
}
