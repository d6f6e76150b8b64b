package client

import (
	"bytes"
	"crypto/aes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

// A ciphertext that decrypts, in full, under two keys: AES-GCM does not
// commit to its key, and whoever chooses the ciphertext (a record's
// uploader) can solve one free block per segment so that both keys'
// tags agree. It is built in the stream format offchain/crypto documents
// (one final segment), with GHASH done by hand, for the test of
// EmergencyDownload that must not take a second key because it decrypts
// (TestAForgedKeyThatDecryptsIsPassedOver). From the session-45 review.

// gfMul multiplies in GHASH's field GF(2^128) (bit-reflected, as GCM).
func gfMul(x, y [16]byte) [16]byte {
	var z [16]byte
	v := y
	for i := 0; i < 128; i++ {
		if x[i/8]>>(7-uint(i%8))&1 == 1 {
			for j := range z {
				z[j] ^= v[j]
			}
		}
		lsb := v[15] & 1
		for j := 15; j > 0; j-- {
			v[j] = v[j]>>1 | v[j-1]<<7
		}
		v[0] >>= 1
		if lsb == 1 {
			v[0] ^= 0xe1
		}
	}
	return z
}

// xor16 adds in GF(2^128).
func xor16(a, b [16]byte) [16]byte {
	for i := range a {
		a[i] ^= b[i]
	}
	return a
}

// gfInv is a's inverse, a^(2^128-2).
func gfInv(a [16]byte) [16]byte {
	res, t := [16]byte{0x80}, a
	for i := 1; i < 128; i++ {
		t = gfMul(t, t)
		res = gfMul(res, t)
	}
	return res
}

// ghash is GCM's GHASH of aad and ct under h.
func ghash(h [16]byte, aad, ct []byte) [16]byte {
	var x [16]byte
	absorb := func(b []byte) {
		for len(b) > 0 {
			var blk [16]byte
			n := copy(blk[:], b)
			b = b[n:]
			x = gfMul(xor16(x, blk), h)
		}
	}
	absorb(aad)
	absorb(ct)
	var l [16]byte
	binary.BigEndian.PutUint64(l[:8], uint64(len(aad))*8)
	binary.BigEndian.PutUint64(l[8:], uint64(len(ct))*8)
	return gfMul(xor16(x, l), h)
}

// gcmSegment is one file's AES block cipher and nonce prefix.
type gcmSegment struct {
	enc   func([16]byte) [16]byte
	nonce [12]byte
}

// deriveSegment is the stream format's per-file key and segment-0 nonce
// (offchain/crypto/doc.go: HKDF-SHA256(data key, salt, label, 36)).
func deriveSegment(t *testing.T, dataKey, salt []byte) gcmSegment {
	okm, err := hkdf.Key(sha256.New, dataKey, salt, "emrchain/v1/stream-segment-key", 36)
	if err != nil {
		t.Fatal(err)
	}
	b, err := aes.NewCipher(okm[:32])
	if err != nil {
		t.Fatal(err)
	}
	s := gcmSegment{enc: func(in [16]byte) [16]byte { var o [16]byte; b.Encrypt(o[:], in[:]); return o }}
	copy(s.nonce[:4], okm[32:])
	return s
}

// ctr is the counter block c of segment 0.
func (s gcmSegment) ctr(c uint32) [16]byte {
	var blk [16]byte
	copy(blk[:12], s.nonce[:])
	binary.BigEndian.PutUint32(blk[12:], c)
	return blk
}

// twoKeyStream is a valid one-segment stream (the documented format)
// under both k1 and k2 for aad: block 0 reads p2 under k2, block 1 reads
// p1 under k1, block 2 is solved so that both tags agree.
func twoKeyStream(t *testing.T, k1, k2, aad []byte, p1, p2 [16]byte) []byte {
	salt := bytes.Repeat([]byte{0x5a}, 16)
	header := append([]byte("EMR1\x01"), 0, 1, 0, 0) // segment size 65536
	header = append(header, salt...)
	a := append(append(append([]byte{}, header...), make([]byte, 8)...), 1)
	a = append(a, aad...)
	s1, s2 := deriveSegment(t, k1, salt), deriveSegment(t, k2, salt)
	ct := make([]byte, 48)
	b0 := xor16(p2, s2.enc(s2.ctr(2)))
	b1 := xor16(p1, s1.enc(s1.ctr(3)))
	copy(ct, b0[:])
	copy(ct[16:], b1[:])
	h1, h2 := s1.enc([16]byte{}), s2.enc([16]byte{})
	e1, e2 := s1.enc(s1.ctr(1)), s2.enc(s2.ctr(1))
	g1, g2 := ghash(h1, a, ct), ghash(h2, a, ct)
	c := xor16(gfMul(h1, h1), gfMul(h2, h2))
	x := gfMul(xor16(xor16(g1, g2), xor16(e1, e2)), gfInv(c))
	copy(ct[32:], x[:])
	tag := xor16(ghash(h1, a, ct), e1)
	if tag != xor16(ghash(h2, a, ct), e2) {
		t.Fatal("test construction: tags differ")
	}
	return append(append(header, ct...), tag[:]...)
}
