package sidecar

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
