package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/emrchain/emrchain/client"
	"github.com/emrchain/emrchain/offchain/sidecar"
)

// TestEmergencyHintOnDefinitiveRefusal: when the emergency service
// itself refused to release the data key for a reason a retry cannot
// change (409 key_version: the record is wrapped under an older key version
// than the opt-in holds; 403: the opt-in was revoked, the emergency window
// passed; 500 emergency_key_mismatch: the sidecar holds the wrong key), the
// hint must not tell the physician to "retry with --reuse-access": in an
// emergency that sends them round in circles. It says why, as the download
// path's refusedHint does; a service that did not answer is worth a retry.
func TestEmergencyHintOnDefinitiveRefusal(t *testing.T) {
	for _, refusal := range []*sidecar.Error{
		{StatusCode: http.StatusConflict, Code: "key_version", Reason: "record 4's data key is wrapped under the patient's key version 1, and the patient's opt-in to emergency service AB holds version 2"},
		{StatusCode: http.StatusForbidden, Code: "forbidden", Reason: "the patient's opt-in to emergency service AB: permission revoked at height 31"},
		{StatusCode: http.StatusForbidden, Code: "forbidden", Reason: "your access event (height 9) is older than the emergency window 1h0m0s"},
		{StatusCode: http.StatusInternalServerError, Code: "emergency_key_mismatch", Reason: "this emergency service cannot release keys: the chain has encryption key ..."},
	} {
		// As client.emergencyKey and saveDecrypted return it.
		err := fmt.Errorf("record 4: the read is logged (height 12) and its ciphertext fetched, but: %w",
			&client.KeyNotReleasedError{Service: []byte{0xAB}, Failures: []error{fmt.Errorf("http://127.0.0.1:7070: %w", refusal)}, Refusal: refusal})
		h := hint(err)
		if !strings.Contains(h, "will not help") || !strings.Contains(h, refusal.Reason) {
			t.Errorf("service refused with %d %s; the hint does not say a retry cannot succeed, and why:\n%s", refusal.StatusCode, refusal.Code, h)
		}
	}
	// A service that was down or not among the sidecars: a retry may work.
	down := &client.KeyNotReleasedError{Service: []byte{0xAB}, Failures: []error{fmt.Errorf("http://127.0.0.1:7070: connection refused")}}
	if h := hint(down); !strings.Contains(h, "retry with --reuse-access") {
		t.Errorf("no refusal, yet no retry advised: %s", h)
	}
}
