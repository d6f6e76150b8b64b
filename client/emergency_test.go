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

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// testService is the emergency service of the fixtures: its key signs
// the releases (sidecar.EmergencyKeySignBytes).
var testService = sidecar.KeySigner{Key: ed25519.GenPrivKeyFromSecret([]byte("emergency service"))}

// testServiceMember is testService as the chain has it.
func testServiceMember() *emrv1.Member {
	return &emrv1.Member{Address: testService.Address(), SignPubKey: testService.PubKey(), Role: emrv1.Role_ROLE_EMERGENCY_SERVICE,
		Status: emrv1.MemberStatus_MEMBER_STATUS_ACTIVE}
}

// keyAnswer is a sidecar's release of dataKey for rec to clinician, as
// service, sealed by seal and signed by signer.
func keyAnswer(t *testing.T, signer sidecar.Signer, clinician []byte, rec *emrv1.Record, service *emrv1.Member, seal func(binding crypto.EnvelopeBinding) []byte) sidecar.EmergencyKey {
	t.Helper()
	k := sidecar.EmergencyKey{
		Record:     fmt.Sprintf("%x/%d", rec.PatientId, rec.Sequence),
		Service:    hex.EncodeToString(service.Address),
		KeyVersion: rec.KeyVersion,
		Envelope:   seal(crypto.EmergencyKeyBinding(rec.PatientId, clinician, rec.Sequence)),
	}
	sig, err := signer.Sign(sidecar.EmergencyKeySignBytes(&k, clinician))
	if err != nil {
		t.Fatal(err)
	}
	k.Signature = sig
	return k
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
// the emergency service (testServiceMember), the record, and seal, which
// seals the data key to the clinician with a binding.
func emergencyFixture(t *testing.T) (*ecdh.PrivateKey, []byte, *emrv1.Member, *emrv1.Record, func(crypto.EnvelopeBinding) []byte) {
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
	return clinician, dataKey, testServiceMember(), rec, sealWith(t, clinician.PublicKey(), dataKey)
}

// sealWith seals dataKey to the clinician's public key with a binding.
func sealWith(t *testing.T, clinician *ecdh.PublicKey, dataKey []byte) func(crypto.EnvelopeBinding) []byte {
	return func(b crypto.EnvelopeBinding) []byte {
		env, err := crypto.SealEnvelope(clinician, dataKey, b)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
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
		writeJSON(w, http.StatusOK, keyAnswer(t, testService, testSigner.Address(), rec, service, seal))
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
	clinician, _, service, rec, seal := emergencyFixture(t)
	resign := func(k *sidecar.EmergencyKey) {
		k.Signature, _ = testService.Sign(sidecar.EmergencyKeySignBytes(k, testSigner.Address()))
	}
	for _, tc := range []struct {
		name   string
		change func(k *sidecar.EmergencyKey)
		want   string
	}{
		{"another service", func(k *sidecar.EmergencyKey) { k.Service = strings.Repeat("ab", 20) }, "released by emergency service"},
		{"another key version", func(k *sidecar.EmergencyKey) { k.KeyVersion = 1; resign(k) }, "patient key version 1"},
		{"sealed for another record", func(k *sidecar.EmergencyKey) {
			k.Envelope = seal(crypto.EmergencyKeyBinding(rec.PatientId, testSigner.Address(), rec.Sequence+1))
			resign(k)
		}, "does not open with your encryption key"},
		{"unsigned", func(k *sidecar.EmergencyKey) { k.Signature = nil }, "not signed by the emergency service's key on chain"},
		{"signed by another key", func(k *sidecar.EmergencyKey) {
			*k = keyAnswer(t, testSigner, testSigner.Address(), rec, service, seal)
		}, "not signed by the emergency service's key on chain"},
		{"signed for another clinician", func(k *sidecar.EmergencyKey) {
			k.Signature, _ = testService.Sign(sidecar.EmergencyKeySignBytes(k, testService.Address()))
		}, "not signed by the emergency service's key on chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, asked := emergencySidecar(t, func(int32, http.ResponseWriter) {})
			srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				asked.Add(1)
				k := keyAnswer(t, testService, testSigner.Address(), rec, service, seal)
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
	_, _, err := emergencyKey(context.Background(), testSigner, clinician, rec, testServiceMember(), nil, anyKeyOpens,
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

// TestNoKeyFromAServiceOutOfUse (the session-45 re-review): a service
// suspended or retired releases nothing (its sidecar refuses), so a
// release signed with its key comes from whoever kept that key, and is
// not taken: with ReuseAccess the client may hold the member record of a
// service out of use.
func TestNoKeyFromAServiceOutOfUse(t *testing.T) {
	for _, status := range []emrv1.MemberStatus{emrv1.MemberStatus_MEMBER_STATUS_SUSPENDED, emrv1.MemberStatus_MEMBER_STATUS_RETIRED} {
		t.Run(status.String(), func(t *testing.T) {
			clinician, _, service, rec, seal := emergencyFixture(t)
			service.Status = status
			answer := keyAnswer(t, testService, testSigner.Address(), rec, service, seal)
			srv, _ := emergencySidecar(t, func(_ int32, w http.ResponseWriter) { writeJSON(w, http.StatusOK, answer) })
			opts := TransferOptions{Sidecars: []string{srv.URL}, RetryDelay: time.Millisecond}
			_, _, err := emergencyKey(context.Background(), testSigner, clinician, rec, service, nil, anyKeyOpens, opts, false)
			if !errors.Is(err, ErrEmergencyKeyNotReleased) || !strings.Contains(err.Error(), "it releases no data keys") {
				t.Fatalf("a release signed by a %s emergency service's key: err %v; want it refused", status, err)
			}
		})
	}
}
