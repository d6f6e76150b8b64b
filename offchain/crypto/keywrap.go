package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

const (
	wrapVersion = 1
	wrapLabel   = "emrchain/v1/wrapped-key"
	// WrappedKeySize is the length of every output of WrapKey.
	WrappedKeySize = 1 + gcmNonceSize + KeySize + gcmTagSize // 61

	fileKeyAADLabel = "emrchain/v1/file-key-aad"
)

// GenerateKey returns a fresh random KeySize-byte key from crypto/rand, for
// use as a per-file data key or as a patient KEK.
func GenerateKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return k, nil
}

// WrapKey encrypts key (KeySize bytes, e.g. a per-file data key) under kek
// (KeySize bytes, the patient's key-encryption key) with AES-256-GCM and a
// random 96-bit nonce, binding aad (use FileKeyAAD). The result is
// WrappedKeySize bytes; see the package documentation for the layout.
//
// Random nonces bound the number of keys one KEK may safely wrap to about
// 2^32 (collision probability below 2^-32); KEK rotation on revocation keeps
// real use many orders of magnitude below that.
func WrapKey(kek, key, aad []byte) ([]byte, error) {
	nonce := make([]byte, gcmNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return wrapKey(kek, key, aad, nonce)
}

// wrapKey is WrapKey with a caller-chosen nonce, for known-answer tests.
func wrapKey(kek, key, aad, nonce []byte) ([]byte, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: key to wrap is %d bytes, want %d", ErrInvalidKey, len(key), KeySize)
	}
	aead, err := newGCM(kek, "KEK")
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, WrappedKeySize)
	out = append(out, wrapVersion)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, key, wrapAAD(aad)), nil
}

// UnwrapKey reverses WrapKey. A wrong kek, a wrong aad or any modification
// of wrapped yields an error matching ErrDecrypt; a wrong length ErrBadFormat;
// an unknown version byte ErrUnsupportedVersion.
func UnwrapKey(kek, wrapped, aad []byte) ([]byte, error) {
	aead, err := newGCM(kek, "KEK")
	if err != nil {
		return nil, err
	}
	if len(wrapped) == 0 {
		return nil, fmt.Errorf("%w: empty wrapped key", ErrBadFormat)
	}
	if wrapped[0] != wrapVersion {
		return nil, fmt.Errorf("%w: wrapped key version %d", ErrUnsupportedVersion, wrapped[0])
	}
	if len(wrapped) != WrappedKeySize {
		return nil, fmt.Errorf("%w: wrapped key is %d bytes, want %d", ErrBadFormat, len(wrapped), WrappedKeySize)
	}
	nonce := wrapped[1 : 1+gcmNonceSize]
	key, err := aead.Open(nil, nonce, wrapped[1+gcmNonceSize:], wrapAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("%w: unwrapping key", ErrDecrypt)
	}
	return key, nil
}

// wrapAAD is the GCM associated data of a wrapped key: a fixed label and the
// version (so a wrapped key is never valid as any other GCM message under
// the same KEK) followed by the caller's aad.
func wrapAAD(aad []byte) []byte {
	b := make([]byte, 0, len(wrapLabel)+1+len(aad))
	b = append(b, wrapLabel...)
	b = append(b, wrapVersion)
	return append(b, aad...)
}

// FileKeyAAD returns the associated data that binds a wrapped per-file data
// key to its patient, its record category and the KEK version it is wrapped
// under, so a wrapped key cannot be moved to another patient or category or
// replayed under another key version. The encoding is injective (every
// variable-length field is length-prefixed) and starts with a label that no
// other associated data in emrchain starts with:
//
//	"emrchain/v1/file-key-aad" || u32(len(patientID)) || patientID ||
//	u32(len(category)) || category || u64(keyVersion)        (big-endian)
//
// This encoding is persistent (wrapped keys live on chain): it must never
// change.
func FileKeyAAD(patientID []byte, category string, keyVersion uint64) []byte {
	return binary.BigEndian.AppendUint64(LengthPrefixed(fileKeyAADLabel, patientID, []byte(category)), keyVersion)
}

func newGCM(key []byte, what string) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: %s is %d bytes, want %d", ErrInvalidKey, what, len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
