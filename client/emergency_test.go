package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// keyAnswer is a sidecar's release of dataKey for rec to testSigner, as
// service, sealed by seal.
func keyAnswer(t *testing.T, rec *emrv1.Record, service, dataKey []byte, seal func(binding crypto.EnvelopeBinding) []byte) sidecar.EmergencyKey {
	t.Helper()
	return sidecar.EmergencyKey{
		Record:     fmt.Sprintf("%x/%d", rec.PatientId, rec.Sequence),
		Service:    hex.EncodeToString(service),
		KeyVersion: rec.KeyVersion,
		Envelope:   seal(crypto.EmergencyKeyBinding(rec.PatientId, testSigner.Address(), rec.Sequence)),
	}
}

// emergencySidecar serves GET sidecar.EmergencyKeyPath with answer (called
// with the request's number, from 1), counting the requests.
func emergencySidecar(t *testing.T, answer func(n int32, w http.ResponseWriter)) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != sidecar.EmergencyKeyPath {
			http.NotFound(w, r)
			return
		}
		answer(n.Add(1), w)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func notService(code string) func(int32, http.ResponseWriter) {
	return func(_ int32, w http.ResponseWriter) {
		writeJSON(w, http.StatusNotFound, sidecar.ErrorBody{Error: "this sidecar runs no such emergency service", Code: code})
	}
}

// emergencyFixture is a clinician's encryption key, a record's data key,
// an emergency service's address, the record, and seal, which seals the
// data key to the clinician with a binding.
func emergencyFixture(t *testing.T) (*ecdh.PrivateKey, []byte, []byte, *emrv1.Record, func(crypto.EnvelopeBinding) []byte) {
	t.Helper()
	clinician, err := crypto.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	dataKey, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	rec := &emrv1.Record{PatientId: bytes.Repeat([]byte{7}, 32), Sequence: 3, KeyVersion: 2, Category: testCategory}
	seal := func(b crypto.EnvelopeBinding) []byte {
		env, err := crypto.SealEnvelope(clinician.PublicKey(), dataKey, b)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	return clinician, dataKey, bytes.Repeat([]byte{0xE5}, 20), rec, seal
}

// TestEmergencyKeyAsksTheSidecarsInOrder: the sidecars that do not run the
// service (404 no_emergency_service, other_emergency_service) are passed
// over, asked once each; one whose node is behind (503 chain_behind) is
// asked again in the next round; the key released opens with the
// clinician's key and is the record's.
func TestEmergencyKeyAsksTheSidecarsInOrder(t *testing.T) {
	clinician, dataKey, service, rec, seal := emergencyFixture(t)
	none, noneAsked := emergencySidecar(t, notService(sidecar.CodeNoEmergencyService))
	other, otherAsked := emergencySidecar(t, notService(sidecar.CodeOtherEmergencyService))
	svc, svcAsked := emergencySidecar(t, func(n int32, w http.ResponseWriter) {
		if n == 1 {
			writeJSON(w, http.StatusServiceUnavailable, sidecar.ErrorBody{Error: "node behind", Code: sidecar.CodeChainBehind})
			return
		}
		writeJSON(w, http.StatusOK, keyAnswer(t, rec, service, dataKey, seal))
	})
	opts := TransferOptions{Sidecars: []string{none.URL, other.URL, svc.URL}, RetryDelay: 10 * time.Millisecond}
	got, url, err := emergencyKey(context.Background(), testSigner, clinician, rec, service, nil, anyKeyOpens, opts, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, dataKey) || url != svc.URL {
		t.Fatalf("key %x from %s; want %x from %s", got, url, dataKey, svc.URL)
	}
	if noneAsked.Load() != 1 || otherAsked.Load() != 1 || svcAsked.Load() != 2 {
		t.Fatalf("asked %d, %d, %d times; want 1, 1, 2", noneAsked.Load(), otherAsked.Load(), svcAsked.Load())
	}
}

// TestEmergencyKeyRefusesAnAnswerNotForTheRead: an answer that names
// another service, another key version, or does not open with the
// clinician's key (sealed to another record) releases nothing: the error
// matches ErrEmergencyKeyNotReleased and says why.
func TestEmergencyKeyRefusesAnAnswerNotForTheRead(t *testing.T) {
	clinician, dataKey, service, rec, seal := emergencyFixture(t)
	for _, tc := range []struct {
		name   string
		change func(k *sidecar.EmergencyKey)
		want   string
	}{
		{"another service", func(k *sidecar.EmergencyKey) { k.Service = strings.Repeat("ab", 20) }, "released by emergency service"},
		{"another key version", func(k *sidecar.EmergencyKey) { k.KeyVersion = 1 }, "patient key version 1"},
		{"sealed for another record", func(k *sidecar.EmergencyKey) {
			k.Envelope = seal(crypto.EmergencyKeyBinding(rec.PatientId, testSigner.Address(), rec.Sequence+1))
		}, "does not open with your encryption key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, asked := emergencySidecar(t, func(int32, http.ResponseWriter) {})
			srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				asked.Add(1)
				k := keyAnswer(t, rec, service, dataKey, seal)
				tc.change(&k)
				writeJSON(w, http.StatusOK, k)
			})
			opts := TransferOptions{Sidecars: []string{srv.URL}, RetryDelay: 10 * time.Millisecond}
			_, _, err := emergencyKey(context.Background(), testSigner, clinician, rec, service, nil, anyKeyOpens, opts, true)
			if !errors.Is(err, ErrEmergencyKeyNotReleased) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrEmergencyKeyNotReleased saying %q", err, tc.want)
			}
			if asked.Load() != 1 {
				t.Fatalf("a sidecar that answered wrongly was asked %d times", asked.Load())
			}
		})
	}
}

// TestEmergencyKeyNoServiceAmongTheSidecars: when no sidecar runs the
// service, each is asked once, and the error says so.
func TestEmergencyKeyNoServiceAmongTheSidecars(t *testing.T) {
	clinician, _ := crypto.GenerateEncryptionKey()
	none, asked := emergencySidecar(t, notService(sidecar.CodeNoEmergencyService))
	rec := &emrv1.Record{PatientId: bytes.Repeat([]byte{7}, 32), Sequence: 1}
	_, _, err := emergencyKey(context.Background(), testSigner, clinician, rec, bytes.Repeat([]byte{1}, 20), nil, anyKeyOpens,
		TransferOptions{Sidecars: []string{none.URL}, RetryDelay: time.Millisecond}, true)
	if !errors.Is(err, ErrEmergencyKeyNotReleased) || !strings.Contains(err.Error(), "no such emergency service") {
		t.Fatalf("err = %v", err)
	}
	if asked.Load() != 1 {
		t.Fatalf("asked %d times; want 1", asked.Load())
	}
}

// anyKeyOpens takes every released key for the ciphertext's.
func anyKeyOpens([]byte) error { return nil }
