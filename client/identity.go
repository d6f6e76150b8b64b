package client

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// PatientSecretSize is the size of a patient secret.
const PatientSecretSize = 32

// patientIDDomain separates the id seed's HMAC input from any other use of
// the patient secret. (The seed was the id itself before ids were bound to
// the patient's key; the domain string stayed.)
const patientIDDomain = "emrchain/v1/patient-id\x00"

// PatientSeed derives the seed of the pseudonymous patient id:
// HMAC-SHA256(secret, "emrchain/v1/patient-id" 0x00 || identity), where
// identity is a normalized encoding of identifying information
// (IdentityFromNameAndBirth, IdentityFromJSON). Without the secret, which
// never leaves the patient's keyring, nobody can find or link the seed (or
// the id) from the identifying information.
func PatientSeed(secret, identity []byte) ([]byte, error) {
	if len(secret) != PatientSecretSize {
		return nil, fmt.Errorf("patient secret is %d bytes, want %d", len(secret), PatientSecretSize)
	}
	if len(identity) == 0 {
		return nil, errors.New("empty identifying information")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(patientIDDomain))
	mac.Write(identity)
	return mac.Sum(nil), nil
}

// EnrollPatientMsg is the EnrollPatient by which the holder of signPubKey
// enrolls with the id its key and seed give, app.BoundPatientID(signPubKey,
// seed): the chain accepts that id from that key only, so a copy of the
// pending transaction is no use to anyone else.
func EnrollPatientMsg(signPubKey, encPubKey, seed, kek []byte) *emrv1.Msg {
	id := app.BoundPatientID(signPubKey, seed)
	return &emrv1.Msg{Sum: &emrv1.Msg_EnrollPatient{EnrollPatient: &emrv1.MsgEnrollPatient{
		PatientId: id, IdSeed: seed, EncPubKey: encPubKey, KekCheck: crypto.KEKCheck(kek, id, 1),
	}}}
}

// IdentityFromNameAndBirth normalizes a name and a birth date: the name
// lowercased, trimmed, inner whitespace collapsed to one space; the date
// as YYYY-MM-DD; joined by "|". "  Ada   LOVELACE " and "ada lovelace"
// give the same identity.
func IdentityFromNameAndBirth(name, birthDate string) ([]byte, error) {
	n := strings.Join(strings.FieldsFunc(strings.ToLower(name), unicode.IsSpace), " ")
	if n == "" {
		return nil, errors.New("empty name")
	}
	if strings.Contains(n, "|") {
		return nil, errors.New(`name must not contain "|"`)
	}
	d, err := time.Parse("2006-01-02", strings.TrimSpace(birthDate))
	if err != nil {
		return nil, fmt.Errorf("birth date %q: want YYYY-MM-DD", birthDate)
	}
	return []byte("name-birth:" + n + "|" + d.Format("2006-01-02")), nil
}

// IdentityFromJSON normalizes an identity document (a JSON object, e.g.
// {"name": ..., "birth_date": ..., "national_id": ...}) to canonical JSON:
// object keys sorted, no insignificant whitespace, strings trimmed,
// numbers kept as written.
func IdentityFromJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("identity file: more than one JSON value")
	}
	obj, ok := v.(map[string]any)
	if !ok || len(obj) == 0 {
		return nil, errors.New("identity file: want a non-empty JSON object")
	}
	canon, err := json.Marshal(trimStrings(obj)) // encoding/json sorts map keys
	if err != nil {
		return nil, err
	}
	return append([]byte("json:"), canon...), nil
}

func trimStrings(v any) any {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x)
	case map[string]any:
		for k, e := range x {
			x[k] = trimStrings(e)
		}
	case []any:
		for i, e := range x {
			x[i] = trimStrings(e)
		}
	}
	return v
}
