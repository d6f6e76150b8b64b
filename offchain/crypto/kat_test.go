package crypto

// Known-answer tests.
//
// testdata/vectors.json was produced ONCE by testdata/gen_vectors.py, a
// separate implementation of the byte layouts in doc.go written in Python
// on pyca/cryptography (not on this package, not on Go). The vectors are
// pinned: no test and no flag regenerates them. The Go code must reproduce
// every byte (encryption with the fixed salt / nonce / ephemeral key the
// vector records) and must decrypt the pinned ciphertexts.
//
// If one of these tests fails, the on-disk or on-chain format changed, which
// would make every stored file, wrapped key and envelope unreadable. Do not
// regenerate the vectors to make the test pass: introduce a new version byte
// and add vectors for it.

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"testing"
)

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

type katFile struct {
	Stream []struct {
		Name             string
		Key, Salt, AAD   hexBytes
		SegmentSize      int      `json:"segment_size"`
		Plaintext        hexBytes // empty when PlaintextPatternLen is set
		PatternLen       int      `json:"plaintext_pattern_len"`
		Ciphertext       hexBytes
		CiphertextLen    int      `json:"ciphertext_len"`
		CiphertextSHA256 hexBytes `json:"ciphertext_sha256"`
	}
	FileKeyAAD []struct {
		PatientID  hexBytes `json:"patient_id"`
		Category   string
		KeyVersion string `json:"key_version"`
		AAD        hexBytes
	} `json:"file_key_aad"`
	Wrap []struct {
		Name                          string
		KEK, Nonce, Key, AAD, Wrapped hexBytes
	}
	Envelope []struct {
		Name             string
		RecipientPrivate hexBytes `json:"recipient_private"`
		RecipientPublic  hexBytes `json:"recipient_public"`
		EphemeralPrivate hexBytes `json:"ephemeral_private"`
		EphemeralPublic  hexBytes `json:"ephemeral_public"`
		Nonce, KEK       hexBytes
		PatientID        hexBytes `json:"patient_id"`
		Grantee          hexBytes
		KeyVersion       string   `json:"key_version"`
		SharedSecret     hexBytes `json:"shared_secret"`
		EnvelopeKey      hexBytes `json:"envelope_key"`
		Envelope         hexBytes
	}
}

func loadKAT(t *testing.T) *katFile {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var k katFile
	if err := json.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	if len(k.Stream) == 0 || len(k.FileKeyAAD) == 0 || len(k.Wrap) == 0 || len(k.Envelope) == 0 {
		t.Fatal("vectors.json is missing a section")
	}
	return &k
}

func mustUint64(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestKATStream(t *testing.T) {
	for _, v := range loadKAT(t).Stream {
		t.Run(v.Name, func(t *testing.T) {
			pt := []byte(v.Plaintext)
			if v.PatternLen > 0 {
				pt = pattern(v.PatternLen)
			}
			ct := mustEncrypt(t, v.Key, v.AAD, pt, v.SegmentSize, v.Salt)
			if v.Ciphertext != nil {
				if !bytes.Equal(ct, v.Ciphertext) {
					t.Fatalf("ciphertext mismatch\n got %x\nwant %x", ct, []byte(v.Ciphertext))
				}
			} else {
				sum := sha256.Sum256(ct)
				if len(ct) != v.CiphertextLen || !bytes.Equal(sum[:], v.CiphertextSHA256) {
					t.Fatalf("ciphertext mismatch: %d bytes, sha256 %x", len(ct), sum)
				}
			}
			if v.SegmentSize == DefaultSegmentSize {
				if got := CiphertextSize(int64(len(pt))); got != int64(len(ct)) {
					t.Fatalf("CiphertextSize = %d, vector is %d bytes", got, len(ct))
				}
			}
			// Decrypt the pinned bytes (or, for digest-only vectors, the
			// bytes just checked against the digest).
			src := []byte(v.Ciphertext)
			if src == nil {
				src = ct
			}
			got, err := decryptAll(bytes.NewReader(src), v.Key, v.AAD)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("decrypting the vector: %v", err)
			}
		})
	}
}

func TestKATFileKeyAAD(t *testing.T) {
	for _, v := range loadKAT(t).FileKeyAAD {
		got := FileKeyAAD(v.PatientID, v.Category, mustUint64(t, v.KeyVersion))
		if !bytes.Equal(got, v.AAD) {
			t.Errorf("FileKeyAAD(%x, %q, %s)\n got %x\nwant %x", []byte(v.PatientID), v.Category, v.KeyVersion, got, []byte(v.AAD))
		}
	}
}

func TestKATWrap(t *testing.T) {
	for _, v := range loadKAT(t).Wrap {
		t.Run(v.Name, func(t *testing.T) {
			got, err := wrapKey(v.KEK, v.Key, v.AAD, v.Nonce)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, v.Wrapped) {
				t.Fatalf("wrapped key mismatch\n got %x\nwant %x", got, []byte(v.Wrapped))
			}
			key, err := UnwrapKey(v.KEK, v.Wrapped, v.AAD)
			if err != nil || !bytes.Equal(key, v.Key) {
				t.Fatalf("UnwrapKey(vector) = %x, %v", key, err)
			}
		})
	}
}

func TestKATEnvelope(t *testing.T) {
	for _, v := range loadKAT(t).Envelope {
		t.Run(v.Name, func(t *testing.T) {
			recipient, eph := katKeys(t, v.RecipientPrivate, v.EphemeralPrivate, v.RecipientPublic, v.EphemeralPublic)
			shared, err := recipient.ECDH(eph.PublicKey())
			if err != nil || !bytes.Equal(shared, v.SharedSecret) {
				t.Fatalf("shared secret mismatch: %x, %v", shared, err)
			}
			key, err := envelopeKey(shared, v.EphemeralPublic, v.RecipientPublic)
			if err != nil || !bytes.Equal(key, v.EnvelopeKey) {
				t.Fatalf("envelope key mismatch: %x, %v", key, err)
			}
			binding := EnvelopeBinding{PatientID: v.PatientID, Grantee: v.Grantee, KeyVersion: mustUint64(t, v.KeyVersion)}
			got, err := sealEnvelope(recipient.PublicKey(), v.KEK, binding, eph, v.Nonce)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, v.Envelope) {
				t.Fatalf("envelope mismatch\n got %x\nwant %x", got, []byte(v.Envelope))
			}
			kek, err := OpenEnvelope(recipient, v.Envelope, binding)
			if err != nil || !bytes.Equal(kek, v.KEK) {
				t.Fatalf("OpenEnvelope(vector) = %x, %v", kek, err)
			}
		})
	}
}

// Guard against the vector file being emptied or replaced by something
// trivially self-consistent: its size and digest are pinned here too.
func TestKATFilePinned(t *testing.T) {
	f, err := os.Open("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	const want = "a19bd00b61fc12527decdc8857e5ecf0d6357192efbbc37cad0bd439c8d3c4a8"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Fatalf("testdata/vectors.json changed: sha256 %s, pinned %s", got, want)
	}
}

// katKeys parses a vector's recipient and ephemeral private keys and
// checks that they give the vector's public keys.
func katKeys(t *testing.T, recipientPriv, ephPriv, recipientPub, ephPub []byte) (recipient, eph *ecdh.PrivateKey) {
	t.Helper()
	recipient, err := ParseEncryptionPrivateKey(recipientPriv)
	if err != nil {
		t.Fatal(err)
	}
	if eph, err = ecdh.X25519().NewPrivateKey(ephPriv); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(MarshalEncryptionPublicKey(recipient.PublicKey()), recipientPub) || !bytes.Equal(eph.PublicKey().Bytes(), ephPub) {
		t.Fatal("public key derivation mismatch")
	}
	return recipient, eph
}
