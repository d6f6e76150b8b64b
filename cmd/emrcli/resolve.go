package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/client/keyring"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// decodeHex decodes a fixed-size hex value with an optional 0x prefix.
func decodeHex(s string, size int) ([]byte, bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X")
	b, err := hex.DecodeString(s)
	return b, err == nil && len(b) == size
}

// address resolves a member reference: 40 hex characters, or the name of
// a key in the keyring.
func (a *cli) address(ref string) ([]byte, error) {
	if b, ok := decodeHex(ref, 20); ok {
		return b, nil
	}
	if keyring.CheckName(ref) == nil {
		kr, err := a.keyring()
		if err != nil {
			return nil, err
		}
		if info, err := kr.Info(ref); err == nil {
			return info.Address, nil
		} else if !errors.Is(err, keyring.ErrNotFound) {
			return nil, err
		}
	}
	return nil, usagef("%q is neither an address (40 hex characters) nor a key in the %s keyring", ref, a.backend)
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
	kr, err := a.keyring()
	if err != nil {
		return nil, err
	}
	info, err := kr.Info(from)
	if err != nil {
		return nil, err
	}
	if info.PatientID != nil {
		return info.PatientID, nil
	}
	c, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	p, err := c.PatientByOwner(ctx, info.Address)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", from, err)
	}
	return p.Id, nil
}

// ownPatient is the patient k owns: from the key's (encrypted) entry, else
// from the chain, verified.
func (a *cli) ownPatient(ctx context.Context, k *keyring.Key) ([]byte, error) {
	if k.PatientID != nil {
		return k.PatientID, nil
	}
	c, err := a.client(ctx)
	if err != nil {
		return nil, err
	}
	p, err := c.PatientByOwner(ctx, k.Address())
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", k.Name, err)
	}
	return p.Id, nil
}

// parseTime accepts a date (YYYY-MM-DD, midnight UTC) or RFC 3339.
func parseTime(flag, s string) (time.Time, error) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, usagef("--%s %q: want a date YYYY-MM-DD or an RFC 3339 time", flag, s)
}

func parseRights(list []string) ([]emrv1.Right, error) {
	var out []emrv1.Right
	for _, s := range list {
		v, ok := emrv1.Right_value["RIGHT_"+strings.ToUpper(strings.TrimSpace(s))]
		if !ok || v == 0 {
			return nil, usagef("--rights: unknown right %q (want read, write, share)", s)
		}
		out = append(out, emrv1.Right(v))
	}
	if len(out) == 0 {
		return nil, usagef("--rights: name at least one of read, write, share")
	}
	return out, nil
}

func parseRole(s string) (emrv1.Role, error) {
	v, ok := emrv1.Role_value["ROLE_"+strings.ToUpper(strings.TrimSpace(s))]
	if !ok || v == 0 || emrv1.Role(v) == emrv1.Role_ROLE_PATIENT {
		return 0, usagef("--role %q: want clinician, researcher, auditor or registrar", s)
	}
	return emrv1.Role(v), nil
}

func parsePurpose(s string) (emrv1.Purpose, error) {
	v, ok := emrv1.Purpose_value["PURPOSE_"+strings.ToUpper(strings.TrimSpace(s))]
	if !ok || v == 0 {
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
