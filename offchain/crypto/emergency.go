package crypto

import (
	"crypto/sha256"
)

// emergencyKeyLabel labels the pseudo-grantee of an emergency data-key
// envelope (EmergencyKeyBinding).
const emergencyKeyLabel = "emrchain/v1/emergency-file-key"

// EmergencyKeyBinding is the binding of the envelope in which an
// organization's emergency service hands one record's data key to the
// clinician who logged an emergency read of it. It reuses the KEK envelope
// format (SealEnvelope) with:
//
//	PatientID  = the patient id
//	Grantee    = first 20 bytes of SHA-256("emrchain/v1/emergency-file-key" || u32(len(clinician)) || clinician)
//	KeyVersion = the record's sequence number
//
// so the envelope opens only for its (patient, clinician, record), with the
// clinician's X25519 key, and cannot be taken for a KEK envelope (whose
// Grantee is a member address: making the two coincide takes a 160-bit
// second preimage) or moved to another record. The service never hands out
// the patient's KEK: a break-glass read discloses the data keys of the
// records read, nothing more.
func EmergencyKeyBinding(patientID, clinician []byte, recordSequence uint64) EnvelopeBinding {
	h := sha256.Sum256(LengthPrefixed(emergencyKeyLabel, clinician))
	return EnvelopeBinding{PatientID: patientID, Grantee: h[:GranteeAddressSize], KeyVersion: recordSequence}
}
