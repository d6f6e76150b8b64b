package crypto

import (
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"sync"
)

// X25519KeySize is the size of X25519 private and public keys.
const X25519KeySize = 32

// GenerateEncryptionKey returns a fresh X25519 key pair for receiving KEK
// envelopes. The signing key (ed25519) is a different key.
func GenerateEncryptionKey() (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(rand.Reader)
}

// MarshalEncryptionPrivateKey returns the 32-byte X25519 scalar. Treat it as
// a secret.
func MarshalEncryptionPrivateKey(k *ecdh.PrivateKey) []byte { return k.Bytes() }

// MarshalEncryptionPublicKey returns the 32-byte X25519 u-coordinate, the
// form registered on chain.
func MarshalEncryptionPublicKey(k *ecdh.PublicKey) []byte { return k.Bytes() }

// ParseEncryptionPrivateKey parses a 32-byte X25519 private key.
func ParseEncryptionPrivateKey(b []byte) (*ecdh.PrivateKey, error) {
	if len(b) != X25519KeySize {
		return nil, fmt.Errorf("%w: X25519 private key is %d bytes, want %d", ErrInvalidKey, len(b), X25519KeySize)
	}
	k, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return k, nil
}

// ParseEncryptionPublicKey parses a 32-byte X25519 public key and rejects
// points of small order (for which every shared secret is all-zero) and
// non-canonical encodings, so a member cannot register a key that makes
// envelopes to it worthless: an envelope binds the key's bytes as
// registered, and its opener the bytes its private key derives, which are
// always canonical.
func ParseEncryptionPublicKey(b []byte) (*ecdh.PublicKey, error) {
	if len(b) != X25519KeySize {
		return nil, fmt.Errorf("%w: X25519 public key is %d bytes, want %d", ErrInvalidKey, len(b), X25519KeySize)
	}
	if !CanonicalX25519(b) {
		return nil, fmt.Errorf("%w: X25519 public key is not canonically encoded (top bit set, or not below 2^255-19)", ErrInvalidKey)
	}
	k, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	if err := checkNotSmallOrder(k); err != nil {
		return nil, err
	}
	return k, nil
}

// CanonicalX25519 reports whether b (32 bytes) is the canonical encoding of
// an X25519 u-coordinate: little-endian, below p = 2^255-19, so its top bit
// is clear.
func CanonicalX25519(b []byte) bool {
	if len(b) != X25519KeySize || b[31]&0x80 != 0 {
		return false
	}
	if b[31] != 0x7f {
		return true
	}
	for _, x := range b[1:31] {
		if x != 0xff {
			return true
		}
	}
	return b[0] < 0xed // 2^255-19 = 0x7fff…ffed
}

// smallOrderProbe is a fixed X25519 private key. X25519 clamps every scalar
// to a multiple of the cofactor 8, so X25519(probe, u) is the all-zero value
// (which crypto/ecdh reports as an error) exactly when u has small order.
var smallOrderProbe = sync.OnceValue(func() *ecdh.PrivateKey {
	seed := sha256.Sum256([]byte("emrchain/v1/x25519-small-order-probe"))
	k, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		panic(err)
	}
	return k
})

func checkNotSmallOrder(k *ecdh.PublicKey) error {
	if _, err := smallOrderProbe().ECDH(k); err != nil {
		return fmt.Errorf("%w: X25519 public key has small order", ErrInvalidKey)
	}
	return nil
}

func checkX25519Public(k *ecdh.PublicKey) error {
	if k == nil || k.Curve() != ecdh.X25519() {
		return fmt.Errorf("%w: recipient public key must be X25519", ErrInvalidKey)
	}
	return nil
}

func checkX25519Private(k *ecdh.PrivateKey) error {
	if k == nil || k.Curve() != ecdh.X25519() {
		return fmt.Errorf("%w: recipient private key must be X25519", ErrInvalidKey)
	}
	return nil
}
