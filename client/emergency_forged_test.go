package client

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestAForgedEmergencyKeyIsPassedOver: anyone can seal a key to a
// clinician's public X25519 key and claim to be the emergency service, so
// a sidecar listed before the service's (another organization's, a
// read-through peer, an attacker on a plain-HTTP URL) answers with a key of
// its choosing. The client must take only a key that decrypts the
// chain-verified ciphertext, and ask on: the forger is passed over and the
// service's key used. (Composes saveDecrypted with emergencyKey as
// EmergencyDownload does, after the read is logged.)
func TestAForgedEmergencyKeyIsPassedOver(t *testing.T) {
	e := newBlobEnv(t, 1)
	plain := []byte("allergies: penicillin (anaphylaxis)\n")
	sl, dataKey := e.upload(t, plain, TransferOptions{Sidecars: e.urls})
	ref := e.view.ref(sl.sum)
	rec := &emrv1.Record{PatientId: ref.PatientID, Sequence: ref.Sequence, KeyVersion: 1, Category: testCategory}
	clinician, err := crypto.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	service := bytes.Repeat([]byte{0xE5}, 20)
	answer := func(key []byte) sidecar.EmergencyKey {
		env, err := crypto.SealEnvelope(clinician.PublicKey(), key, crypto.EmergencyKeyBinding(rec.PatientId, e.signer.Address(), rec.Sequence))
		if err != nil {
			t.Fatal(err)
		}
		return sidecar.EmergencyKey{Record: fmt.Sprintf("%x/%d", rec.PatientId, rec.Sequence), Service: hex.EncodeToString(service), KeyVersion: rec.KeyVersion, Envelope: env}
	}
	// The forger knows only public things: the clinician's registered
	// X25519 key, the clinician's address, the record and the service.
	forged, _ := crypto.GenerateKey()
	forger, _ := emergencySidecar(t, func(_ int32, w http.ResponseWriter) { writeJSON(w, http.StatusOK, answer(forged)) })
	honest, honestAsked := emergencySidecar(t, func(_ int32, w http.ResponseWriter) { writeJSON(w, http.StatusOK, answer(dataKey)) })

	// The blob sidecar (e.urls[0]) runs no service; the honest service is last.
	opts := TransferOptions{Sidecars: []string{forger.URL, e.urls[0], honest.URL}, RetryDelay: 10 * time.Millisecond}
	ctx := context.Background()
	released := func(opens func([]byte) error) ([]byte, error) {
		k, _, err := emergencyKey(ctx, e.signer, clinician, rec, service, nil, opens, opts, false)
		return k, err
	}
	out := filepath.Join(t.TempDir(), "allergies.out")
	_, err = saveDecrypted(ctx, e.signer, "record 1", chainBlob{ref, sl.sum[:], uint64(sl.size)}, released,
		RecordStreamAAD(e.patientID, "lab-results"), out, false, nil, opts)
	if err != nil {
		t.Fatalf("a sidecar that is not the emergency service, listed first, defeated the break-glass read "+
			"(the honest service was asked %d times): %v", honestAsked.Load(), err)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("the output is %q (%v), want the record", got, err)
	}
}
