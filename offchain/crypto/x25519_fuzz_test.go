package crypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// smallOrderU are the canonical encodings of the X25519 u-coordinates of
// small order (on the curve or its twist): 0, 1, p-1 and the two of order 8.
var smallOrderU = func() map[string]bool {
	m := map[string]bool{}
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	} {
		b, _ := hex.DecodeString(h)
		m[string(b)] = true
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
		mustHex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), // order 8
		make([]byte, 32),
		make([]byte, 31),
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
// whose encoding is those bytes, whose public key parses as a member's
// registered key, and which agrees with a peer on the shared secret.
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
	peer, err := ParseEncryptionPrivateKey(seqBytes(0x40, 32))
	if err != nil {
		f.Fatal(err)
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
		if len(b) != X25519KeySize || !bytes.Equal(MarshalEncryptionPrivateKey(k), b) {
			t.Fatalf("%x read as %x", b, MarshalEncryptionPrivateKey(k))
		}
		pub, err := ParseEncryptionPublicKey(MarshalEncryptionPublicKey(k.PublicKey()))
		if err != nil || !pub.Equal(k.PublicKey()) {
			t.Fatalf("the public key of %x does not parse: %v", b, err)
		}
		s1, err1 := k.ECDH(peer.PublicKey())
		s2, err2 := peer.ECDH(pub)
		if err1 != nil || err2 != nil || !bytes.Equal(s1, s2) {
			t.Fatalf("shared secrets differ: %x (%v) vs %x (%v)", s1, err1, s2, err2)
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
