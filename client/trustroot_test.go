package client_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrchain/emrchain/client"
)

// TestATrustRootHashOfAnotherLengthIsRefused: trust.json's hash must be
// the hex of a 32-byte header hash. With a light store, the client never
// decodes it again (it builds the light client from the store), so a
// damaged one would otherwise only be shown, and compared as text.
func TestATrustRootHashOfAnotherLengthIsRefused(t *testing.T) {
	home := t.TempDir()
	for _, hash := range []string{strings.Repeat("AB", 31), strings.Repeat("AB", 33)} {
		raw := `{"chain_id": "emr-test", "height": 1, "hash": "` + hash + `", "period_ns": 3600000000000}`
		if err := os.WriteFile(filepath.Join(home, "trust.json"), []byte(raw), 0o600); err != nil {
			t.Fatal(err)
		}
		if tr, err := client.ReadTrustRoot(home); err == nil {
			t.Errorf("trust.json with a %d-byte hash: %+v, want an error", len(hash)/2, tr)
		}
	}
	raw := `{"chain_id": "emr-test", "height": 1, "hash": "` + strings.Repeat("ab", 32) + `", "period_ns": 3600000000000}`
	if err := os.WriteFile(filepath.Join(home, "trust.json"), []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := client.ReadTrustRoot(home); err != nil {
		t.Errorf("trust.json with a 32-byte hash in lower case: %v", err)
	}
}
