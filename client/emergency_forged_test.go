package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/crypto"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// forgedKeyScenario is a break-glass read of the record whose ciphertext
// the blob sidecar of e holds (rec, blob) as EmergencyDownload does it
// after the read is logged (saveDecrypted composed with emergencyKey):
// a forger's sidecar, listed first, answers with forged (sealed to the
// clinician, and signed with the forger's own key); the blob sidecar runs
// no service; the honest service, listed last, releases dataKey signed
// with the service's key. It returns what the read wrote, and its error.
func forgedKeyScenario(t *testing.T, e *blobEnv, rec *emrv1.Record, blob chainBlob, dataKey, forged []byte) ([]byte, error) {
	t.Helper()
	clinician, err := crypto.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	service := testServiceMember()
	// The forger knows only public things: the clinician's registered
	// X25519 key, the clinician's address, the record and the service.
	forgedAnswer := keyAnswer(t, e.signer, e.signer.Address(), rec, service, sealWith(t, clinician.PublicKey(), forged))
	forger, _ := emergencySidecar(t, func(_ int32, w http.ResponseWriter) { writeJSON(w, http.StatusOK, forgedAnswer) })
	honestAnswer := keyAnswer(t, testService, e.signer.Address(), rec, service, sealWith(t, clinician.PublicKey(), dataKey))
	honest, _ := emergencySidecar(t, func(_ int32, w http.ResponseWriter) { writeJSON(w, http.StatusOK, honestAnswer) })

	opts := TransferOptions{Sidecars: []string{forger.URL, e.urls[0], honest.URL}, RetryDelay: 10 * time.Millisecond}
	ctx := context.Background()
	released := func(opens func([]byte) error) ([]byte, error) {
		k, _, err := emergencyKey(ctx, e.signer, clinician, rec, service, nil, opens, opts, false)
		return k, err
	}
	out := filepath.Join(t.TempDir(), "allergies.out")
	if _, err := saveDecrypted(ctx, e.signer, "record 1", blob, released, RecordStreamAAD(e.patientID, testCategory), out, false, nil, opts); err != nil {
		return nil, err
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return got, nil
}

// TestAForgedEmergencyKeyIsPassedOver: anyone can seal a key to a
// clinician's public X25519 key and claim to be the emergency service, so
// a sidecar listed before the service's (another organization's, a
// read-through peer, an attacker on a plain-HTTP URL) answers with a key of
// its choosing. The client must take only a key the service signed, and
// ask on: the forger is passed over and the service's key used.
func TestAForgedEmergencyKeyIsPassedOver(t *testing.T) {
	e := newBlobEnv(t, 1)
	plain := []byte("allergies: penicillin (anaphylaxis)\n")
	sl, dataKey := e.upload(t, plain, TransferOptions{Sidecars: e.urls})
	ref := e.view.ref(sl.sum)
	rec := &emrv1.Record{PatientId: ref.PatientID, Sequence: ref.Sequence, KeyVersion: 1, Category: testCategory}
	forged, _ := crypto.GenerateKey()
	got, err := forgedKeyScenario(t, e, rec, chainBlob{ref, sl.sum[:], uint64(sl.size)}, dataKey, forged)
	if err != nil {
		t.Fatalf("a sidecar that is not the emergency service, listed first, defeated the break-glass read: %v", err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("the output is %q, want the record", got)
	}
}

// TestAForgedKeyThatDecryptsIsPassedOver (the session-45 review): the
// stream's AES-GCM segments do not commit to their key, so the uploader of
// a record, who chooses its ciphertext, can make it authenticate in full
// under the data key it wraps on chain (k1: what the patient, every
// grantee and the service read) and under a second key k2 that decrypts
// to other contents. An accomplice's sidecar listed before the service
// releases k2. Taking a key because it decrypts, the client wrote
// "allergies: none" as the record; it must take the service's signed k1.
func TestAForgedKeyThatDecryptsIsPassedOver(t *testing.T) {
	e := newBlobEnv(t, 1)
	aad := RecordStreamAAD(e.patientID, testCategory)
	k1, _ := crypto.GenerateKey()
	k2, _ := crypto.GenerateKey()
	var p1, p2 [16]byte
	copy(p1[:], "penicillin:anaph")
	copy(p2[:], "allergies: none\n")
	stream := twoKeyStream(t, k1, k2, aad, p1, p2)
	want := decryptAll(t, stream, k1, aad)
	if forgedPlain := decryptAll(t, stream, k2, aad); bytes.Equal(forgedPlain, want) {
		t.Fatal("the construction: both keys read the same plaintext")
	}

	f, err := newScratch(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Discard)
	if _, err := f.Write(stream); err != nil {
		t.Fatal(err)
	}
	sl := &sealed{file: f, sum: sha256.Sum256(stream), size: int64(len(stream))}
	if _, _, err := putBlob(context.Background(), e.signer, e.patientID, testCategory, false, sl, TransferOptions{Sidecars: e.urls}); err != nil {
		t.Fatal(err)
	}
	e.view.addBlob(sl.sum, sl.size)
	ref := e.view.ref(sl.sum)
	rec := &emrv1.Record{PatientId: ref.PatientID, Sequence: ref.Sequence, KeyVersion: 1, Category: testCategory}
	got, err := forgedKeyScenario(t, e, rec, chainBlob{ref, sl.sum[:], uint64(sl.size)}, k1, k2)
	if err != nil {
		t.Fatalf("the break-glass read failed: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the break-glass read wrote %q, not the record's contents %q: a forged key that also decrypts the ciphertext was taken", got, want)
	}
}

// decryptAll decrypts a whole stream with key, or fails the test.
func decryptAll(t *testing.T, stream, key, aad []byte) []byte {
	t.Helper()
	r, err := crypto.NewDecryptReader(bytes.NewReader(stream), key, aad)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("the construction: a key does not open the two-key stream: %v", err)
	}
	return plain
}
