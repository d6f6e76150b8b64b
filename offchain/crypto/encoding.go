package crypto

import (
	"encoding/binary"
	"math"
)

// LengthPrefixed is the injective encoding emrchain's associated data,
// bindings and signed messages use: label, then each field preceded by its
// length (4 bytes, big-endian):
//
//	label || u32(len(f1)) || f1 || u32(len(f2)) || f2 || ...
//
// The label tells one kind of message from every other, and no field can
// run into the next. Every such encoding that lives on chain or is signed
// must never change. A field longer than 2^32-1 bytes panics (no caller
// has one anywhere near).
func LengthPrefixed(label string, fields ...[]byte) []byte {
	n := len(label)
	for _, f := range fields {
		if uint64(len(f)) > math.MaxUint32 {
			panic("crypto: length-prefixed field longer than 2^32-1 bytes")
		}
		n += 4 + len(f)
	}
	b := make([]byte, 0, n+8) // room for a trailing u64
	b = append(b, label...)
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}
