package client

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/emrchain/emrchain/offchain/crypto"
	"github.com/emrchain/emrchain/offchain/sidecar"
	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestRefusalOnlyFromTheService: KeyNotReleasedError.Refusal ("the
// emergency service refused for good": emrcli's hint then says a retry
// will not help) is taken only from a sidecar whose /healthz names the
// service. A sidecar before it that does not run it and answers some
// other 4xx (one of a release before break-glass: "404 page not found"; a
// proxy's 403; an impostor's 403 "opt-in revoked") is not the service's
// word, while the service itself only said "not now" (503).
func TestRefusalOnlyFromTheService(t *testing.T) {
	clinician, err := crypto.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	service := testServiceMember()
	rec := &emrv1.Record{PatientId: bytes.Repeat([]byte{7}, 32), Sequence: 3, KeyVersion: 1, Category: testCategory}
	for _, tc := range []struct {
		name  string
		first func(int32, http.ResponseWriter)
	}{
		{"older sidecar without the route", func(_ int32, w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte("404 page not found\n"))
		}},
		{"impostor says revoked", func(_ int32, w http.ResponseWriter) {
			writeJSON(w, http.StatusForbidden, sidecar.ErrorBody{Code: "forbidden",
				Error: "the patient's opt-in to emergency service E5E5: permission revoked at height 31"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, _ := emergencySidecar(t, tc.first)
			// The service: momentarily unable (its node behind, overloaded).
			svc, svcAsked := emergencySidecar(t, func(_ int32, w http.ResponseWriter) {
				writeJSON(w, http.StatusServiceUnavailable, sidecar.ErrorBody{Error: "the node is behind", Code: sidecar.CodeChainBehind})
			})
			opts := TransferOptions{Sidecars: []string{first.URL, svc.URL}, RetryDelay: 5 * time.Millisecond}
			_, _, err := emergencyKey(context.Background(), testSigner, clinician, rec, service, nil, anyKeyOpens, opts, true)
			var kn *KeyNotReleasedError
			if !errors.As(err, &kn) {
				t.Fatalf("err = %v", err)
			}
			if kn.Refusal != nil {
				t.Fatalf("Refusal = %d %q (%s), from %s, which is not the emergency service; the service (asked %d times) only said 503 %s: "+
					"the physician is told a retry will not help", kn.Refusal.StatusCode, kn.Refusal.Code, kn.Refusal.Reason, first.URL,
					svcAsked.Load(), sidecar.CodeChainBehind)
			}
		})
	}
}

// TestTheServicesRefusalIsFinal: the service's own refusal for good (a
// sidecar whose /healthz names it answers 403) is the error's Refusal, and
// it is asked only once.
func TestTheServicesRefusalIsFinal(t *testing.T) {
	clinician, _, service, rec, _ := emergencyFixture(t)
	svc, asked := emergencySidecar(t, func(_ int32, w http.ResponseWriter) {
		writeJSON(w, http.StatusForbidden, sidecar.ErrorBody{Code: "forbidden", Error: "permission revoked at height 31"})
	})
	opts := TransferOptions{Sidecars: []string{svc.URL}, RetryDelay: 5 * time.Millisecond}
	_, _, err := emergencyKey(context.Background(), testSigner, clinician, rec, service, map[string]bool{svc.URL: true}, anyKeyOpens, opts, true)
	var kn *KeyNotReleasedError
	if !errors.As(err, &kn) || kn.Refusal == nil || kn.Refusal.StatusCode != http.StatusForbidden {
		t.Fatalf("err = %v; want a KeyNotReleasedError whose Refusal is the 403", err)
	}
	if asked.Load() != 1 {
		t.Fatalf("the service was asked %d times after refusing for good", asked.Load())
	}
}
