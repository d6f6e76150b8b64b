package sidecar

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/offchain/crypto"
)

// EmergencyKeyPath is the route of an emergency service's data-key
// release: GET EmergencyKeyPath?record=<patient id hex>/<sequence>, signed
// by the clinician whose emergency read of that record is committed.
const EmergencyKeyPath = "/v1/emergency-key"

// Codes of the 404s of a sidecar that cannot release a record's data key
// because it is not the emergency service the read names: it holds no
// emergency key at all, or another service's. The client asks the next
// sidecar.
const (
	CodeNoEmergencyService    = "no_emergency_service"
	CodeOtherEmergencyService = "other_emergency_service"
)

// EmergencyKey is an emergency service's answer: the record's data key,
// sealed to the clinician's registered X25519 key with
// crypto.EmergencyKeyBinding(patient, clinician, record sequence).
type EmergencyKey struct {
	// Record names the record: "<patient id hex>/<sequence>".
	Record string `json:"record"`
	// Service is the emergency service's member address, in hex.
	Service string `json:"service"`
	// KeyVersion is the patient key version the record's data key was
	// wrapped under (and the service's opt-in envelope holds).
	KeyVersion uint64 `json:"key_version"`
	// Envelope is the sealed data key (crypto.EnvelopeSize bytes).
	Envelope []byte `json:"envelope"`
	// Signature is the service's ed25519 signature of
	// EmergencyKeySignBytes(the answer, the clinician's address), by the
	// signing key the chain has for the service (VerifyEmergencyKey).
	// Anyone can seal a key to a clinician's public key, and a ciphertext
	// its writer chose can decrypt under two keys (AES-GCM does not commit
	// to its key), so the signature, not a decryption, is what shows the
	// key is the one the service unwrapped from the chain.
	Signature []byte `json:"signature"`
}

// emergencyKeyDomain begins what an emergency service signs for a release
// (EmergencyKeySignBytes), apart from every other message a member's key
// signs: transactions, which are protobuf, and sidecar requests
// (signDomain).
const emergencyKeyDomain = "emrchain/v1/emergency-key-release"

// EmergencyKeySignBytes is what the emergency service k names signs when
// it releases k to clinician (a member address): the domain tag, then
// each of the record, the service, the clinician, the key version (8
// bytes, big-endian) and the envelope, preceded by its length (4 bytes,
// big-endian). The envelope's own binding already ties the key to the
// patient, the clinician and the record; the signature ties the envelope
// to the service.
func EmergencyKeySignBytes(k *EmergencyKey, clinician []byte) []byte {
	return crypto.LengthPrefixed(emergencyKeyDomain, []byte(k.Record), []byte(k.Service), clinician, binary.BigEndian.AppendUint64(nil, k.KeyVersion), k.Envelope)
}

// ErrEmergencyKeyNotSigned: an emergency key release whose signature is
// not the service's (VerifyEmergencyKey).
var ErrEmergencyKeyNotSigned = errors.New("the release is not signed by the emergency service's key on chain")

// VerifyEmergencyKey checks that k, released to clinician, carries the
// signature of signPubKey, the ed25519 key the chain has for the service
// k names. An error wraps ErrEmergencyKeyNotSigned.
func VerifyEmergencyKey(k *EmergencyKey, clinician, signPubKey []byte) error {
	if len(signPubKey) != ed25519.PubKeySize {
		return fmt.Errorf("%w: the service's signing key is %d bytes, want %d", ErrEmergencyKeyNotSigned, len(signPubKey), ed25519.PubKeySize)
	}
	if !ed25519.PubKey(signPubKey).VerifySignature(EmergencyKeySignBytes(k, clinician), k.Signature) {
		return fmt.Errorf("%w (%x)", ErrEmergencyKeyNotSigned, signPubKey)
	}
	return nil
}

// EmergencyKey asks the sidecar's emergency service for the data key of
// record seq of patientID, which the caller read in an emergency (its
// latest committed access event of the record, of purpose emergency, names
// this service). A sidecar that is not that service answers 404 with
// CodeNoEmergencyService or CodeOtherEmergencyService.
func (c *Client) EmergencyKey(ctx context.Context, patientID []byte, seq uint64) (*EmergencyKey, error) {
	ref := RecordRef(patientID, seq)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+EmergencyKeyPath+"?"+ref.query(), nil)
	if err != nil {
		return nil, err
	}
	if err := c.sign(req, ""); err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sidecar: emergency key of %s: %w", ref, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readError(resp)
	}
	var k EmergencyKey
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&k); err != nil {
		return nil, fmt.Errorf("sidecar: emergency key of %s: decode the answer: %w", ref, err)
	}
	if k.Record != ref.value() {
		return nil, fmt.Errorf("sidecar: emergency key of %s: the answer is for %q", ref, cleanText(k.Record, maxErrorReason))
	}
	if _, err := hex.DecodeString(k.Service); err != nil {
		return nil, fmt.Errorf("sidecar: emergency key of %s: service %q is not hex", ref, cleanText(k.Service, maxErrorReason))
	}
	return &k, nil
}
