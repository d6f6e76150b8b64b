package crypto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
)

// KEKCheckSize is the length of a KEK check value.
const KEKCheckSize = 16

const kekCheckLabel = "emrchain/v1/kek-check"

// KEKCheck is the check value of a patient's KEK of version: the first
// KEKCheckSize bytes of
//
//	HMAC-SHA256(kek, "emrchain/v1/kek-check" || u32(len(patientID)) ||
//	            patientID || u64(version))                 (big-endian)
//
// The patient's client commits it on chain with the version (enrolment,
// rotation), so that every copy of the patient's key, and every grantee
// that opens an envelope, can tell the committed KEK of a version from
// another one made for it (a rotation begun on another device that never
// committed) before wrapping a record's key or sealing a consent under it.
// It reveals nothing of the KEK: finding a key that matches it is a
// brute force over 2^256 keys. This encoding is persistent: never change
// it.
func KEKCheck(kek, patientID []byte, version uint64) []byte {
	m := hmac.New(sha256.New, kek)
	m.Write(binary.BigEndian.AppendUint64(LengthPrefixed(kekCheckLabel, patientID), version))
	return m.Sum(nil)[:KEKCheckSize]
}

// KEKMatches reports whether kek is the KEK of version whose check value
// is check, in constant time.
func KEKMatches(kek, patientID []byte, version uint64, check []byte) bool {
	return hmac.Equal(KEKCheck(kek, patientID, version), check)
}
