package crypto

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// transferLabel keeps transfer-key envelopes apart from KEK envelopes: it
// prefixes both the key derivation's info and the associated data.
const transferLabel = "emrchain/v1/transfer-key"

// SealTransferKey returns a fresh data key for one transfer of bytes to
// the holder of recipient's private key, and that key sealed to recipient
// in an envelope (EnvelopeSize bytes, the layout of a KEK envelope under
// its own label) bound to context, which names the transfer (the request
// it answers, say) and must not be empty. The sender encrypts the transfer
// with NewEncryptWriter under the data key; only the recipient can open the
// envelope (OpenTransferKey), so whoever relays or records the transfer
// holds bytes it cannot read. Like a KEK envelope, it does not
// authenticate its sender.
func SealTransferKey(recipient *ecdh.PublicKey, context []byte) (dataKey, envelope []byte, err error) {
	eph, err := GenerateEncryptionKey()
	if err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, gcmNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	dataKey, err = GenerateKey()
	if err != nil {
		return nil, nil, err
	}
	envelope, err = sealTransferKey(recipient, dataKey, context, eph, nonce)
	if err != nil {
		return nil, nil, err
	}
	return dataKey, envelope, nil
}

// sealTransferKey is SealTransferKey with a caller-chosen data key,
// ephemeral key and nonce, for known-answer tests.
func sealTransferKey(recipient *ecdh.PublicKey, dataKey, context []byte, eph *ecdh.PrivateKey, nonce []byte) ([]byte, error) {
	aad, err := transferAAD(context)
	if err != nil {
		return nil, err
	}
	return sealKey(transferLabel, recipient, dataKey, aad, eph, nonce)
}

// OpenTransferKey returns the data key of an envelope SealTransferKey made
// for recipient's public key under context. A wrong recipient, a wrong
// context or any modification yields an error matching ErrDecrypt; a
// wrong length ErrBadFormat; an unknown version byte
// ErrUnsupportedVersion.
func OpenTransferKey(recipient *ecdh.PrivateKey, envelope, context []byte) ([]byte, error) {
	aad, err := transferAAD(context)
	if err != nil {
		return nil, err
	}
	return openKey("transfer-key envelope", transferLabel, recipient, envelope, aad)
}

// transferAAD encodes the binding injectively:
// label || version || u32(len(context)) || context.
func transferAAD(context []byte) ([]byte, error) {
	switch {
	case len(context) == 0:
		return nil, errors.New("crypto: transfer key bound to an empty context")
	case uint64(len(context)) > math.MaxUint32:
		return nil, fmt.Errorf("crypto: transfer key context of %d bytes is too long", len(context))
	}
	out := make([]byte, 0, len(transferLabel)+1+4+len(context))
	out = append(out, transferLabel...)
	out = append(out, envelopeVersion)
	out = binary.BigEndian.AppendUint32(out, uint32(len(context)))
	return append(out, context...), nil
}
