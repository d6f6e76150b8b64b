package crypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// smallOrderHex are the canonical encodings of the X25519 u-coordinates
// of small order (on the curve or its twist): 0, 1, p-1 and the two of
// order 8. TestParseEncryptionPublicKeyRejectsSmallOrder adds their
// non-canonical spellings.
var smallOrderHex = []string{
	"0000000000000000000000000000000000000000000000000000000000000000", // 0
	"0100000000000000000000000000000000000000000000000000000000000000", // 1
	"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p-1
	"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800", // order 8
	"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157", // order 8
}

// smallOrderU is smallOrderHex decoded, as a set.
var smallOrderU = func() map[string]bool {
	m := map[string]bool{}
	for _, h := range smallOrderHex {
		m[string(mustHex(h))] = true
	}
	return m
}()

// isCanonicalU reports whether b is 32 bytes encoding (little-endian) a
// number below p = 2^255-19, compared from the most significant byte.
func isCanonicalU(b []byte) bool {
	if len(b) != X25519KeySize {
		return false
	}
	p := bytes.Repeat([]byte{0xff}, 32)
	p[0], p[31] = 0xed, 0x7f
	for i := 31; i >= 0; i-- {
		if b[i] != p[i] {
			return b[i] < p[i]
		}
	}
	return false
}

// FuzzParseEncryptionPublicKey: a member's registered encryption key is
// refused with ErrInvalidKey and no key, or it is 32 bytes, canonical and
// not of small order, and read as the key whose encoding is those bytes,
// with which ECDH gives a non-zero secret; every key of that form is read.
func FuzzParseEncryptionPublicKey(f *testing.F) {
	nine := make([]byte, 32)
	nine[0] = 9
	for _, seed := range [][]byte{
		nine,
		seqBytes(0x20, 32),
		mustHex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), // p-1: small order
		mustHex("ebffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), // p-2
		mustHex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), // p
		mustHex("0900000000000000000000000000000000000000000000000000000000000080"), // 9, top bit
		mustHex("f6ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), // p+9: 9, not canonical
		mustHex(smallOrderHex[3]), // order 8
		mustHex(smallOrderHex[4]), // order 8
		make([]byte, 32),
		make([]byte, 31),
		nine[:31],
		make([]byte, 33),
		nil,
	} {
		f.Add(seed)
	}
	probe, err := ParseEncryptionPrivateKey(seqBytes(0x80, 32))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		k, err := ParseEncryptionPublicKey(b)
		if !bytes.Equal(in, b) {
			t.Fatal("the input was modified")
		}
		valid := isCanonicalU(b) && !smallOrderU[string(b)]
		if CanonicalX25519(b) != isCanonicalU(b) {
			t.Fatalf("CanonicalX25519(%x) = %v", b, CanonicalX25519(b))
		}
		if err != nil {
			if k != nil || !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("%x refused with %v, key %v", b, err, k)
			}
			if valid {
				t.Fatalf("valid key %x refused: %v", b, err)
			}
			return
		}
		if !valid {
			t.Fatalf("%x accepted", b)
		}
		if !bytes.Equal(MarshalEncryptionPublicKey(k), b) {
			t.Fatalf("%x read as %x", b, MarshalEncryptionPublicKey(k))
		}
		secret, err := probe.ECDH(k)
		if err != nil || bytes.Equal(secret, make([]byte, len(secret))) {
			t.Fatalf("ECDH with %x: %x, %v", b, secret, err)
		}
	})
}

// FuzzParseEncryptionPrivateKey: a private key is refused with ErrInvalidKey
// and no key exactly when it is not 32 bytes; otherwise it reads as the key
// whose encoding is those bytes and whose public key parses as a member's
// registered key.
func FuzzParseEncryptionPrivateKey(f *testing.F) {
	for _, seed := range [][]byte{
		seqBytes(0x80, 32),
		make([]byte, 32),
		bytes.Repeat([]byte{0xff}, 32),
		make([]byte, 31),
		make([]byte, 33),
		nil,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		k, err := ParseEncryptionPrivateKey(b)
		if !bytes.Equal(in, b) {
			t.Fatal("the input was modified")
		}
		if err != nil {
			if k != nil || !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("%x refused with %v, key %v", b, err, k)
			}
			if len(b) == X25519KeySize {
				t.Fatalf("32-byte key refused: %v", err)
			}
			return
		}
		if !bytes.Equal(MarshalEncryptionPrivateKey(k), b) {
			t.Fatalf("%x read as %x", b, MarshalEncryptionPrivateKey(k))
		}
		if _, err := ParseEncryptionPublicKey(MarshalEncryptionPublicKey(k.PublicKey())); err != nil {
			t.Fatalf("the public key of %x does not parse: %v", b, err)
		}
	})
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
