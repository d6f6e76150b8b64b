package client

import (
	"context"
	"strings"
	"testing"

	emrv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// TestEmergencyDownloadNeedsAReason: a new break-glass read gives a known
// reason, and a reused one none, or nothing is asked of anyone: the
// Client here has no node, and a request that went on would fail on it.
func TestEmergencyDownloadNeedsAReason(t *testing.T) {
	opts := TransferOptions{Sidecars: []string{"http://127.0.0.1:1"}}
	for _, c := range []struct {
		name   string
		reason emrv1.EmergencyReason
		reuse  bool
		want   string
	}{
		{"none", 0, false, "an emergency read gives its reason"},
		{"unknown", 7, false, "got 7"},
		{"a reason with a reused read", emrv1.EmergencyReason_EMERGENCY_REASON_IMMEDIATE_THREAT, true, "gives no new reason"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := (&Client{}).EmergencyDownload(context.Background(), testSigner, EmergencyDownloadRequest{
				PatientID: make([]byte, 32), Record: 1, Reason: c.reason, ReuseAccess: c.reuse, Output: t.TempDir() + "/out",
			}, opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("EmergencyDownload: %v; want an error saying %q", err, c.want)
			}
		})
	}
}
