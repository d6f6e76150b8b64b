package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/keyring"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// decodeHex decodes a fixed-size hex value with an optional 0x prefix.
func decodeHex(s string, size int) ([]byte, bool) { return decodeHexBytes([]byte(s), size) }

// decodeHexBytes is decodeHex of text held in bytes, which a caller can
// clear (a key file's): it makes no string of them.
func decodeHexBytes(text []byte, size int) ([]byte, bool) {
	text = bytes.TrimSpace(text)
	// One prefix at most: trimming "0x" and then "0X" read "0x0X<hex>".
	if len(text) >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X') {
		text = text[2:]
	}
	b := make([]byte, hex.DecodedLen(len(text)))
	n, err := hex.Decode(b, text)
	return b[:n], err == nil && n == size
}

// maxKeyFileSize bounds what readHexKeyFile reads: a key in hex with some
// white space, not a file given by mistake.
const maxKeyFileSize = 4096

// readHexKeyFile reads a key of size bytes, in hex (white space around it
// ignored), from the file path that flag names; what says what the key is.
func readHexKeyFile(flag, path string, size int, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	defer clear(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	key, ok := decodeHexBytes(raw, size)
	if len(raw) > maxKeyFileSize || !ok {
		clear(key)
		return nil, usagef("%s %s: want %s as %d hex characters", flag, path, what, 2*size)
	}
	return key, nil
}

// info reads the public entry of the key called name (no passphrase).
func (a *cli) info(name string) (keyring.Info, error) {
	kr, err := a.keyring()
	if err != nil {
		return keyring.Info{}, err
	}
	return kr.Info(name)
}

// address resolves a member reference: 40 hex characters, or the name of
// a key in the keyring.
func (a *cli) address(ref string) ([]byte, error) {
	if b, ok := decodeHex(ref, 20); ok {
		return b, nil
	}
	if keyring.CheckName(ref) == nil {
		if info, err := a.info(ref); err == nil {
			return info.Address, nil
		} else if !errors.Is(err, keyring.ErrNotFound) {
			return nil, err
		}
	}
	return nil, usagef("%q is neither an address (40 hex characters) nor a key in the %s keyring", ref, a.backend)
}

// memberClient resolves a command's MEMBER argument (an address or a key
// name, as address does) and opens the client it is read through.
func (a *cli) memberClient(ctx context.Context, ref string) ([]byte, *client.Client, error) {
	addr, err := a.address(ref)
	if err != nil {
		return nil, nil, err
	}
	c, err := a.client(ctx)
	if err != nil {
		return nil, nil, err
	}
	return addr, c, nil
}

// patientID resolves the patient a command is about: --patient (64 hex
// characters, or a key name that enrolled), else the patient owned by
// --from (from the keyring, else from the chain, verified).
func (a *cli) patientID(ctx context.Context, patient, from string) ([]byte, error) {
	if patient != "" {
		if b, ok := decodeHex(patient, 32); ok {
			return b, nil
		}
		if keyring.CheckName(patient) == nil {
			kr, err := a.keyring()
			if err != nil {
				return nil, err
			}
			if info, err := kr.Info(patient); err == nil && info.PatientID != nil {
				return info.PatientID, nil
			}
		}
		return nil, usagef("--patient %q is neither a patient id (64 hex characters) nor an enrolled key in the keyring", patient)
	}
	if from == "" {
		return nil, usagef("say which patient: --patient ID or --from PATIENT-KEY")
	}
	info, err := a.info(from)
	if err != nil {
		return nil, err
	}
	return a.ownedPatient(ctx, from, info.Address, info.PatientID)
}

// ownPatient is the patient k owns: from the key's (encrypted) entry, else
// from the chain (and then, read verified, kept in the entry: see
// rememberPatient).
func (a *cli) ownPatient(ctx context.Context, k *keyring.Key) ([]byte, error) {
	id, err := a.ownedPatient(ctx, k.Name, k.Address(), k.PatientID)
	if err != nil || k.PatientID != nil {
		return id, err
	}
	return id, a.rememberPatient(ctx, k, id)
}

// ownsPatient reports whether k owns patient p (read from the chain): the
// id its entry keeps, else whether p's owner is k's account.
func (a *cli) ownsPatient(ctx context.Context, k *keyring.Key, p *emrv1.Patient) (bool, error) {
	if k.PatientID != nil {
		return bytes.Equal(k.PatientID, p.Id), nil
	}
	if !bytes.Equal(p.Owner, k.Address()) {
		return false, nil
	}
	return true, a.rememberPatient(ctx, k, p.Id)
}

// ownsPatientID is ownsPatient for a patient id: the patient is read only
// when k's entry keeps no id.
func (a *cli) ownsPatientID(ctx context.Context, c *client.Client, k *keyring.Key, pid []byte) (bool, error) {
	if k.PatientID != nil {
		return bytes.Equal(k.PatientID, pid), nil
	}
	p, err := c.Patient(ctx, pid)
	if err != nil {
		return false, err
	}
	return a.ownsPatient(ctx, k, p)
}

// rememberPatient keeps in k's entry the patient id the chain says k owns.
// patient enroll saves it only when it saw the enrolment commit; after
// --async, a wait that timed out, an interrupt or a crash, the first
// command that learns it from the chain saves it, so that the patient is
// not taken for a grantee of its own records. Only a verified read is
// kept: with --no-verify the id serves this run, since the keyring never
// lets a key's patient change and a lying node must not make it.
func (a *cli) rememberPatient(ctx context.Context, k *keyring.Key, id []byte) error {
	c, err := a.client(ctx)
	if err != nil || !c.Verified() {
		return err
	}
	k.PatientID = id
	if err := a.kr.Save(k); err != nil {
		return fmt.Errorf("key %q: keep patient id %x: %w", k.Name, id, err)
	}
	return nil
}

// ownedPatient is the patient of the key called name: stored (the id the
// keyring keeps), else the one the chain says owner owns (verified unless
// --no-verify).
func (a *cli) ownedPatient(ctx context.Context, name string, owner, stored []byte) ([]byte, error) {
	if stored != nil {
		return stored, nil
	}
	c, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	p, err := c.PatientByOwner(ctx, owner)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", name, err)
	}
	return p.Id, nil
}

// signer loads the signing key --from, the patient the command acts on
// (--patient, else the one --from owns) and the client.
func (a *cli) signer(ctx context.Context, from, patient string) (*keyring.Key, []byte, *client.Client, error) {
	k, err := a.key(from)
	if err != nil {
		return nil, nil, nil, err
	}
	var pid []byte
	if patient == "" {
		pid, err = a.ownPatient(ctx, k)
	} else {
		pid, err = a.patientID(ctx, patient, "")
	}
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := a.client(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	return k, pid, c, nil
}

// queriedPatient resolves the patient of a query (see patientID) and
// the client.
func (a *cli) queriedPatient(ctx context.Context, patient, from string) ([]byte, *client.Client, error) {
	pid, err := a.patientID(ctx, patient, from)
	if err != nil {
		return nil, nil, err
	}
	c, err := a.client(ctx)
	if err != nil {
		return nil, nil, err
	}
	return pid, c, nil
}

// keyFlag adds a flag that names a key (or member) and completes key names.
func (a *cli) keyFlag(cmd *cobra.Command, p *string, name, usage string) {
	cmd.Flags().StringVar(p, name, "", usage)
	_ = cmd.RegisterFlagCompletionFunc(name, a.completeKeys)
}

// patientFlags adds the --patient/--from pair of the commands that show
// a patient's state.
func (a *cli) patientFlags(cmd *cobra.Command, patient, from *string) {
	cmd.Flags().StringVar(patient, "patient", "", "patient id (hex) or enrolled key name")
	a.keyFlag(cmd, from, "from", "the patient owned by this key")
}

// exactArgs refuses a command line without exactly n arguments, with
// "want WHAT, got N arguments".
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("want %s, got %d arguments", what, len(args))
		}
		return nil
	}
}

// parseTime accepts a date (YYYY-MM-DD, midnight UTC) or RFC 3339, from
// year 1 to 9999 in UTC: the times a transaction can carry.
func parseTime(flag, s string) (time.Time, error) {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		t, err = time.Parse(time.RFC3339, s)
	}
	if err != nil {
		return time.Time{}, usagef("--%s %q: want a date YYYY-MM-DD or an RFC 3339 time", flag, s)
	}
	if timestamppb.New(t).CheckValid() != nil {
		return time.Time{}, usagef("--%s %q: want a time from year 1 to 9999 (UTC)", flag, s)
	}
	return t.UTC(), nil
}

// parseRights reads --rights: read, write, share, or emergency (a
// patient's opt-in to break-glass reads, granted alone to an
// organization's emergency service).
func parseRights(list []string) ([]emrv1.Right, error) {
	var out []emrv1.Right
	for _, s := range list {
		word, ascii := app.EnumWord(s)
		v, ok := emrv1.Right_value["RIGHT_"+word]
		if !ascii || !ok || v == 0 {
			return nil, usagef("--rights: unknown right %q (want read, write, share, or emergency for an emergency service)", s)
		}
		if !slices.Contains(out, emrv1.Right(v)) { // "read,read" grants read once
			out = append(out, emrv1.Right(v))
		}
	}
	if len(out) == 0 {
		return nil, usagef("--rights: name at least one of read, write, share (or emergency, alone, for an emergency service)")
	}
	if slices.Contains(out, emrv1.Right_RIGHT_EMERGENCY) && len(out) > 1 {
		return nil, usagef("--rights: emergency is granted alone, to an organization's emergency service (an opt-in to break-glass reads by its clinicians), not with %s",
			strings.Join(rightsNames(slices.DeleteFunc(slices.Clone(out), func(r emrv1.Right) bool { return r == emrv1.Right_RIGHT_EMERGENCY })), ","))
	}
	return out, nil
}

// parseRole reads --role as roleName writes it: clinician, researcher,
// auditor, registrar or emergency-service (an organization's break-glass
// service), in any case.
func parseRole(s string) (emrv1.Role, error) {
	v, ok := app.ParseKebab(s, "ROLE_", emrv1.Role_value)
	if !ok || emrv1.Role(v) == emrv1.Role_ROLE_PATIENT {
		return 0, usagef("--role %q: want clinician, researcher, auditor, registrar, emergency-service or storage-service", s)
	}
	return emrv1.Role(v), nil
}

// parsePurpose reads --purpose: treatment, research or emergency (a
// break-glass read through an emergency service the patient opted in to).
func parsePurpose(s string) (emrv1.Purpose, error) {
	word, ascii := app.EnumWord(s)
	v, ok := emrv1.Purpose_value["PURPOSE_"+word]
	if !ascii || !ok || v == 0 {
		return 0, usagef("--purpose %q: want treatment, research or emergency", s)
	}
	return emrv1.Purpose(v), nil
}

// submit signs msg with the key, broadcasts it and (unless async) waits
// for its block, then prints the result with extra (may be nil).
func (a *cli) submit(ctx context.Context, key *keyring.Key, msg *emrv1.Msg, async bool) (*client.TxResult, error) {
	c, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	if async {
		tx, err := c.SignTx(ctx, key, msg)
		if err != nil {
			return nil, err
		}
		return c.Broadcast(ctx, tx, false)
	}
	return c.Submit(ctx, key, msg)
}
