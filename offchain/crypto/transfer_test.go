package crypto

import (
	"bytes"
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"io"
	"os"
	"testing"
)

// TestTransferKeyVectors: the Go code reproduces every byte of the
// transfer-key envelopes testdata/gen_transfer_vectors.py (pyca/cryptography)
// pinned, and opens them. A failure means the wire format changed.
func TestTransferKeyVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/transfer_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		TransferKey []struct {
			Name                     string
			RecipientPrivate         hexBytes `json:"recipient_private"`
			RecipientPublic          hexBytes `json:"recipient_public"`
			EphemeralPrivate         hexBytes `json:"ephemeral_private"`
			EphemeralPublic          hexBytes `json:"ephemeral_public"`
			Nonce, Context, Envelope hexBytes
			DataKey                  hexBytes `json:"data_key"`
			SharedSecret             hexBytes `json:"shared_secret"`
			EnvelopeKey              hexBytes `json:"envelope_key"`
		} `json:"transfer_key"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.TransferKey) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range file.TransferKey {
		t.Run(v.Name, func(t *testing.T) {
			recipient, eph := katKeys(t, v.RecipientPrivate, v.EphemeralPrivate, v.RecipientPublic, v.EphemeralPublic)
			shared, err := recipient.ECDH(eph.PublicKey())
			if err != nil || !bytes.Equal(shared, v.SharedSecret) {
				t.Fatalf("shared secret mismatch: %x, %v", shared, err)
			}
			key, err := sealingKey(transferLabel, shared, eph.PublicKey().Bytes(), v.RecipientPublic)
			if err != nil || !bytes.Equal(key, v.EnvelopeKey) {
				t.Fatalf("envelope key mismatch: %x, %v", key, err)
			}
			got, err := sealTransferKey(recipient.PublicKey(), v.DataKey, v.Context, eph, v.Nonce)
			if err != nil || !bytes.Equal(got, v.Envelope) {
				t.Fatalf("envelope mismatch, %v\n got %x\nwant %x", err, got, []byte(v.Envelope))
			}
			dataKey, err := OpenTransferKey(recipient, v.Envelope, v.Context)
			if err != nil || !bytes.Equal(dataKey, v.DataKey) {
				t.Fatalf("OpenTransferKey(vector) = %x, %v", dataKey, err)
			}
		})
	}
}

// TestTransferKeySealsAStream: a transfer sealed to one key is read by
// that key's holder under the same context only; nobody else, no other
// context, no KEK envelope passed off as one.
func TestTransferKeySealsAStream(t *testing.T) {
	recipient, other := mustGenerate(t), mustGenerate(t)
	context := []byte("/v1/replicas/owner/sum")
	payload := bytes.Repeat([]byte("ciphertext of a discharge letter "), 5000) // several segments

	dataKey, envelope, err := SealTransferKey(recipient.PublicKey(), context)
	if err != nil {
		t.Fatal(err)
	}
	if len(envelope) != EnvelopeSize || len(dataKey) != KeySize {
		t.Fatalf("envelope %d bytes, data key %d", len(envelope), len(dataKey))
	}
	var wire bytes.Buffer
	w, err := NewEncryptWriter(&wire, dataKey, context)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(payload); err != nil || w.Close() != nil {
		t.Fatal(err)
	}
	if int64(wire.Len()) != CiphertextSize(int64(len(payload))) {
		t.Fatalf("%d bytes on the wire, CiphertextSize says %d", wire.Len(), CiphertextSize(int64(len(payload))))
	}

	opened, err := OpenTransferKey(recipient, envelope, context)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewDecryptReader(bytes.NewReader(wire.Bytes()), opened, context)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("recipient read %d of %d bytes: %v", len(got), len(payload), err)
	}

	if _, err := OpenTransferKey(other, envelope, context); !errors.Is(err, ErrDecrypt) {
		t.Errorf("another key opened the envelope: %v", err)
	}
	if _, err := OpenTransferKey(recipient, envelope, []byte("/v1/replicas/owner/other")); !errors.Is(err, ErrDecrypt) {
		t.Errorf("the envelope opened under another context: %v", err)
	}
	if _, err := OpenTransferKey(recipient, envelope, nil); err == nil {
		t.Error("an empty context was accepted")
	}
	if _, _, err := SealTransferKey(recipient.PublicKey(), nil); err == nil {
		t.Error("sealed to an empty context")
	}
	kekEnvelope, err := SealEnvelope(recipient.PublicKey(), dataKey, EnvelopeBinding{PatientID: context, Grantee: make([]byte, GranteeAddressSize)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenTransferKey(recipient, kekEnvelope, context); !errors.Is(err, ErrDecrypt) {
		t.Errorf("a KEK envelope opened as a transfer key: %v", err)
	}
	if _, err := OpenEnvelope(recipient, envelope, EnvelopeBinding{PatientID: context, Grantee: make([]byte, GranteeAddressSize)}); !errors.Is(err, ErrDecrypt) {
		t.Errorf("a transfer key opened as a KEK envelope: %v", err)
	}
}

func mustGenerate(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Fixed values of FuzzOpenTransferKey; testdata/gen_transfer_vectors.py
// uses the same.
var fuzzTransferContext = []byte("/v1/replicas/fuzz-owner/fuzz-sum")

func FuzzOpenTransferKey(f *testing.F) {
	recipient, err := ParseEncryptionPrivateKey(fuzzRecipientKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := OpenTransferKey(recipient, data, fuzzTransferContext)
		if err != nil {
			if key != nil {
				t.Fatal("data key returned with an error")
			}
			if !errors.Is(err, ErrBadFormat) && !errors.Is(err, ErrUnsupportedVersion) && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("unclassified error %q", err)
			}
			return
		}
		if len(key) != KeySize || len(data) != EnvelopeSize {
			t.Fatalf("opened a %d-byte envelope into a %d-byte key", len(data), len(key))
		}
		if _, err := OpenTransferKey(recipient, data, []byte("/v1/replicas/fuzz-owner/other")); !errors.Is(err, ErrDecrypt) {
			t.Fatal("envelope opened under another context")
		}
	})
}
