package crypto

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
)

func testBinding() EnvelopeBinding {
	return EnvelopeBinding{
		PatientID:  []byte("patient-42"),
		Grantee:    bytes.Repeat([]byte{0xab}, GranteeAddressSize),
		KeyVersion: 3,
	}
}

func mustKeyPair(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEnvelopeRoundTrip(t *testing.T) {
	recipient := mustKeyPair(t)
	kek, _ := GenerateKey()
	b := testBinding()
	e1, err := SealEnvelope(recipient.PublicKey(), kek, b)
	if err != nil {
		t.Fatal(err)
	}
	e2, _ := SealEnvelope(recipient.PublicKey(), kek, b)
	if len(e1) != EnvelopeSize {
		t.Fatalf("envelope is %d bytes, want %d", len(e1), EnvelopeSize)
	}
	if bytes.Equal(e1[1:33], e2[1:33]) || bytes.Equal(e1, e2) {
		t.Fatal("ephemeral key reused across envelopes")
	}
	if bytes.Contains(e1, kek) {
		t.Fatal("KEK visible in envelope")
	}
	for _, e := range [][]byte{e1, e2} {
		got, err := OpenEnvelope(recipient, e, b)
		if err != nil || !bytes.Equal(got, kek) {
			t.Fatalf("OpenEnvelope = %x, %v", got, err)
		}
	}
	// The recipient can also come from its serialized form.
	priv, err := ParseEncryptionPrivateKey(MarshalEncryptionPrivateKey(recipient))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := OpenEnvelope(priv, e1, b); err != nil || !bytes.Equal(got, kek) {
		t.Fatalf("OpenEnvelope with parsed key = %x, %v", got, err)
	}
}

func TestOpenEnvelopeRejects(t *testing.T) {
	recipient, other := mustKeyPair(t), mustKeyPair(t)
	kek := testKey(0x31)
	b := testBinding()
	env, err := SealEnvelope(recipient.PublicKey(), kek, b)
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(*EnvelopeBinding)) EnvelopeBinding {
		c := testBinding()
		f(&c)
		return c
	}
	smallOrderEph := bytes.Clone(env)
	clear(smallOrderEph[1:33])
	for _, tc := range []struct {
		name     string
		priv     *ecdh.PrivateKey
		envelope []byte
		binding  EnvelopeBinding
		want     error
	}{
		{"wrong recipient", other, env, b, ErrDecrypt},
		{"wrong patient", recipient, env, with(func(b *EnvelopeBinding) { b.PatientID = []byte("patient-43") }), ErrDecrypt},
		{"patient id prefix", recipient, env, with(func(b *EnvelopeBinding) { b.PatientID = []byte("patient-4") }), ErrDecrypt},
		{"wrong grantee", recipient, env, with(func(b *EnvelopeBinding) { b.Grantee = bytes.Repeat([]byte{0xac}, 20) }), ErrDecrypt},
		{"older key version", recipient, env, with(func(b *EnvelopeBinding) { b.KeyVersion = 2 }), ErrDecrypt},
		{"newer key version", recipient, env, with(func(b *EnvelopeBinding) { b.KeyVersion = 4 }), ErrDecrypt},
		{"small-order ephemeral key", recipient, smallOrderEph, b, ErrDecrypt},
		{"empty", recipient, nil, b, ErrBadFormat},
		{"truncated", recipient, env[:EnvelopeSize-1], b, ErrBadFormat},
		{"extended", recipient, append(bytes.Clone(env), 0), b, ErrBadFormat},
		{"version 2", recipient, append([]byte{2}, env[1:]...), b, ErrUnsupportedVersion},
		{"version 0", recipient, append([]byte{0}, env[1:]...), b, ErrUnsupportedVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := OpenEnvelope(tc.priv, tc.envelope, tc.binding)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("OpenEnvelope = %x, %v; want error %v", got, err, tc.want)
			}
		})
	}
	// Every truncation.
	for n := range EnvelopeSize {
		if _, err := OpenEnvelope(recipient, env[:n], b); !errors.Is(err, ErrBadFormat) {
			t.Fatalf("truncated to %d: got %v, want ErrBadFormat", n, err)
		}
	}
}

// Every single-bit flip must fail, including bit 255 of the ephemeral key,
// which X25519 itself ignores: the transmitted key bytes are bound in HKDF.
func TestOpenEnvelopeBitFlips(t *testing.T) {
	recipient := mustKeyPair(t)
	b := testBinding()
	env, _ := SealEnvelope(recipient.PublicKey(), testKey(0x32), b)
	for bit := 0; bit < 8*len(env); bit++ {
		e := bytes.Clone(env)
		e[bit/8] ^= 1 << (bit % 8)
		want := ErrDecrypt
		if bit < 8 {
			want = ErrUnsupportedVersion
		}
		if _, err := OpenEnvelope(recipient, e, b); !errors.Is(err, want) {
			t.Fatalf("bit %d flipped: got %v, want %v", bit, err, want)
		}
	}
}

func TestSealEnvelopeInvalidInput(t *testing.T) {
	recipient := mustKeyPair(t)
	p256, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	smallOrder, err := ecdh.X25519().NewPublicKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	kek := testKey(0x33)
	good := testBinding()
	for _, tc := range []struct {
		name    string
		pub     *ecdh.PublicKey
		kek     []byte
		binding EnvelopeBinding
		want    error // nil: any error
	}{
		{"nil recipient", nil, kek, good, ErrInvalidKey},
		{"P-256 recipient", p256.PublicKey(), kek, good, ErrInvalidKey},
		{"small-order recipient", smallOrder, kek, good, ErrInvalidKey},
		{"short KEK", recipient.PublicKey(), kek[:16], good, ErrInvalidKey},
		{"empty patient", recipient.PublicKey(), kek, EnvelopeBinding{Grantee: good.Grantee}, nil},
		{"short grantee", recipient.PublicKey(), kek, EnvelopeBinding{PatientID: good.PatientID, Grantee: good.Grantee[:19]}, nil},
		{"long grantee", recipient.PublicKey(), kek, EnvelopeBinding{PatientID: good.PatientID, Grantee: make([]byte, 32)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := SealEnvelope(tc.pub, tc.kek, tc.binding)
			if err == nil || env != nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("SealEnvelope = %x, %v; want error %v", env, err, tc.want)
			}
		})
	}
	env, _ := SealEnvelope(recipient.PublicKey(), kek, good)
	if _, err := OpenEnvelope(nil, env, good); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("OpenEnvelope(nil key): got %v", err)
	}
	if _, err := OpenEnvelope(p256, env, good); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("OpenEnvelope(P-256 key): got %v", err)
	}
	if _, err := OpenEnvelope(recipient, env, EnvelopeBinding{PatientID: good.PatientID}); err == nil {
		t.Error("OpenEnvelope accepted a binding without grantee")
	}
}

func TestEncryptionKeyEncoding(t *testing.T) {
	k := mustKeyPair(t)
	pub := MarshalEncryptionPublicKey(k.PublicKey())
	priv := MarshalEncryptionPrivateKey(k)
	if len(pub) != X25519KeySize || len(priv) != X25519KeySize {
		t.Fatalf("encodings are %d and %d bytes", len(pub), len(priv))
	}
	p, err := ParseEncryptionPublicKey(pub)
	if err != nil || !p.Equal(k.PublicKey()) {
		t.Fatalf("public key round trip: %v", err)
	}
	s, err := ParseEncryptionPrivateKey(priv)
	if err != nil || !s.Equal(k) {
		t.Fatalf("private key round trip: %v", err)
	}
	for _, n := range []int{0, 31, 33, 65} {
		if _, err := ParseEncryptionPublicKey(make([]byte, n)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%d-byte public key: got %v", n, err)
		}
		if _, err := ParseEncryptionPrivateKey(make([]byte, n)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%d-byte private key: got %v", n, err)
		}
	}
}

// Small-order points (the list from libsodium / RFC 7748 discussions,
// including non-canonical encodings) must be refused at parse time.
func TestParseEncryptionPublicKeyRejectsSmallOrder(t *testing.T) {
	for _, h := range append(slices.Clone(smallOrderHex),
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p (= 0)
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // p+1 (= 1)
		"0000000000000000000000000000000000000000000000000000000000000080", // 0, top bit set
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880", // order 8, top bit set
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7", // order 8, top bit set
	) {
		if _, err := ParseEncryptionPublicKey(mustHex(h)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("small-order point %s accepted (err %v)", h, err)
		}
	}
	// A real key with its (ignored) top bit set, or a u not below p, is
	// refused: an envelope to it binds other bytes than its opener derives,
	// and could never be opened.
	priv, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	high := append([]byte(nil), priv.PublicKey().Bytes()...)
	high[31] |= 0x80
	pMinusOne, _ := hex.DecodeString("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	pPlus2, _ := hex.DecodeString("efffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	for name, b := range map[string][]byte{"top bit": high, "p+2": pPlus2} {
		if _, err := ParseEncryptionPublicKey(b); !errors.Is(err, ErrInvalidKey) || CanonicalX25519(b) {
			t.Errorf("%s: non-canonical key accepted (err %v)", name, err)
		}
	}
	if !CanonicalX25519(pMinusOne) || !CanonicalX25519(priv.PublicKey().Bytes()) {
		t.Error("a canonical encoding is refused")
	}
	// The base point (u = 9) is fine.
	nine := make([]byte, 32)
	nine[0] = 9
	if _, err := ParseEncryptionPublicKey(nine); err != nil {
		t.Errorf("base point rejected: %v", err)
	}
}

// TestEmergencyKeyBinding: an emergency data-key envelope opens for its
// own (patient, clinician, record) only, and never as the clinician's KEK
// envelope of the same number.
func TestEmergencyKeyBinding(t *testing.T) {
	clin, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	patient, clinician, other := []byte("patient-1"), make([]byte, GranteeAddressSize), make([]byte, GranteeAddressSize)
	other[0] = 1
	dataKey, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	env, err := SealEnvelope(clin.PublicKey(), dataKey, EmergencyKeyBinding(patient, clinician, 7))
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenEnvelope(clin, env, EmergencyKeyBinding(patient, clinician, 7))
	if err != nil || string(got) != string(dataKey) {
		t.Fatalf("open with its own binding: %v", err)
	}
	for name, b := range map[string]EnvelopeBinding{
		"other record":      EmergencyKeyBinding(patient, clinician, 8),
		"other clinician":   EmergencyKeyBinding(patient, other, 7),
		"other patient":     EmergencyKeyBinding([]byte("patient-2"), clinician, 7),
		"as a KEK envelope": {PatientID: patient, Grantee: clinician, KeyVersion: 7},
	} {
		if _, err := OpenEnvelope(clin, env, b); err == nil {
			t.Errorf("%s: the envelope opened", name)
		}
	}
}
