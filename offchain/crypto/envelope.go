package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

const (
	envelopeVersion = 1
	envelopeLabel   = "emrchain/v1/kek-envelope"

	// EnvelopeSize is the length of every output of SealEnvelope.
	EnvelopeSize = 1 + X25519KeySize + gcmNonceSize + KeySize + gcmTagSize // 93

	// GranteeAddressSize is the length of a member address.
	GranteeAddressSize = 20
)

// EnvelopeBinding is the context a KEK envelope is bound to (as AES-GCM
// associated data): opening it with any other patient, grantee or key
// version fails.
type EnvelopeBinding struct {
	PatientID  []byte // pseudonymous patient id; must not be empty
	Grantee    []byte // the grantee's 20-byte member address
	KeyVersion uint64 // the version of the KEK inside the envelope
}

func (b EnvelopeBinding) validate() error {
	if len(b.PatientID) == 0 {
		return errors.New("crypto: envelope binding has an empty patient id")
	}
	if uint64(len(b.PatientID)) > math.MaxUint32 {
		return errors.New("crypto: envelope binding patient id too long")
	}
	if len(b.Grantee) != GranteeAddressSize {
		return fmt.Errorf("crypto: envelope binding grantee is %d bytes, want %d", len(b.Grantee), GranteeAddressSize)
	}
	return nil
}

// aad encodes the binding injectively:
// label || version || u32(len(PatientID)) || PatientID || Grantee (20) || u64(KeyVersion).
func (b EnvelopeBinding) aad() []byte {
	out := make([]byte, 0, len(envelopeLabel)+1+4+len(b.PatientID)+GranteeAddressSize+8)
	out = append(out, envelopeLabel...)
	out = append(out, envelopeVersion)
	out = binary.BigEndian.AppendUint32(out, uint32(len(b.PatientID)))
	out = append(out, b.PatientID...)
	out = append(out, b.Grantee...)
	return binary.BigEndian.AppendUint64(out, b.KeyVersion)
}

// SealEnvelope encrypts a patient KEK to the X25519 key of a grantee:
// a fresh ephemeral X25519 key agrees a shared secret with recipient, HKDF-
// SHA256 turns it into an AES-256-GCM key (info binds the label and both
// public keys), and the KEK is sealed with binding as associated data. The
// result is EnvelopeSize bytes; see the package documentation for the layout.
func SealEnvelope(recipient *ecdh.PublicKey, kek []byte, binding EnvelopeBinding) ([]byte, error) {
	eph, err := GenerateEncryptionKey()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcmNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return sealEnvelope(recipient, kek, binding, eph, nonce)
}

// sealEnvelope is SealEnvelope with a caller-chosen ephemeral key and nonce,
// for known-answer tests. Reusing an ephemeral key is never safe.
func sealEnvelope(recipient *ecdh.PublicKey, kek []byte, binding EnvelopeBinding, eph *ecdh.PrivateKey, nonce []byte) ([]byte, error) {
	if err := binding.validate(); err != nil {
		return nil, err
	}
	return sealKey(envelopeLabel, recipient, kek, binding.aad(), eph, nonce)
}

// sealKey seals a 32-byte key to recipient under label (the HKDF info's
// prefix, which keeps each kind of envelope apart) with aad as associated
// data: the layout of a KEK envelope, shared by transfer keys.
func sealKey(label string, recipient *ecdh.PublicKey, key, aad []byte, eph *ecdh.PrivateKey, nonce []byte) ([]byte, error) {
	if err := checkX25519Public(recipient); err != nil {
		return nil, err
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: sealed key is %d bytes, want %d", ErrInvalidKey, len(key), KeySize)
	}
	shared, err := eph.ECDH(recipient)
	if err != nil {
		// All-zero shared secret: recipient is a small-order point.
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	ephPub := eph.PublicKey().Bytes()
	aead, err := envelopeAEAD(label, shared, ephPub, recipient.Bytes())
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, EnvelopeSize)
	out = append(out, envelopeVersion)
	out = append(out, ephPub...)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, key, aad), nil
}

// OpenEnvelope decrypts an envelope made by SealEnvelope for the public key
// of recipient. binding must equal the one it was sealed with. A wrong
// recipient, a wrong binding or any modification yields an error matching
// ErrDecrypt; a wrong length ErrBadFormat; an unknown version byte
// ErrUnsupportedVersion.
func OpenEnvelope(recipient *ecdh.PrivateKey, envelope []byte, binding EnvelopeBinding) ([]byte, error) {
	if err := binding.validate(); err != nil {
		return nil, err
	}
	return openKey("KEK envelope", envelopeLabel, recipient, envelope, binding.aad())
}

// openKey opens an envelope of sealKey's; what names it in errors.
func openKey(what, label string, recipient *ecdh.PrivateKey, envelope, aad []byte) ([]byte, error) {
	if err := checkX25519Private(recipient); err != nil {
		return nil, err
	}
	if len(envelope) == 0 {
		return nil, fmt.Errorf("%w: empty envelope", ErrBadFormat)
	}
	if envelope[0] != envelopeVersion {
		return nil, fmt.Errorf("%w: envelope version %d", ErrUnsupportedVersion, envelope[0])
	}
	if len(envelope) != EnvelopeSize {
		return nil, fmt.Errorf("%w: envelope is %d bytes, want %d", ErrBadFormat, len(envelope), EnvelopeSize)
	}
	ephPub := envelope[1 : 1+X25519KeySize]
	nonce := envelope[1+X25519KeySize : 1+X25519KeySize+gcmNonceSize]
	ct := envelope[1+X25519KeySize+gcmNonceSize:]
	eph, err := ecdh.X25519().NewPublicKey(ephPub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFormat, err)
	}
	shared, err := recipient.ECDH(eph)
	if err != nil {
		// Small-order ephemeral key: never produced by sealKey.
		return nil, fmt.Errorf("%w: ephemeral key has small order", ErrDecrypt)
	}
	aead, err := envelopeAEAD(label, shared, ephPub, recipient.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	key, err := aead.Open(nil, nonce, ct, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: opening %s", ErrDecrypt, what)
	}
	return key, nil
}

// envelopeKey derives a KEK envelope's key (kat_test.go checks it).
func envelopeKey(shared, ephPub, recipientPub []byte) ([]byte, error) {
	return sealingKey(envelopeLabel, shared, ephPub, recipientPub)
}

// sealingKey derives the key of an envelope of kind label:
// HKDF-SHA256(ikm = shared, salt = none, info = label || ephPub || recipientPub, L = 32).
// Binding the transmitted ephemeral key bytes (not just the shared secret)
// matters: X25519 ignores the top bit of a u-coordinate, so two encodings of
// the ephemeral key give the same shared secret; with both in info, a
// re-encoded envelope derives a different key and fails to open.
func sealingKey(label string, shared, ephPub, recipientPub []byte) ([]byte, error) {
	info := make([]byte, 0, len(label)+2*X25519KeySize)
	info = append(info, label...)
	info = append(info, ephPub...)
	info = append(info, recipientPub...)
	return hkdf.Key(sha256.New, shared, nil, string(info), KeySize)
}

func envelopeAEAD(label string, shared, ephPub, recipientPub []byte) (cipher.AEAD, error) {
	key, err := sealingKey(label, shared, ephPub, recipientPub)
	clear(shared)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
