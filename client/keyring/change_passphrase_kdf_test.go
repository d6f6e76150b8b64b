package keyring

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestChangePassphraseNeverLowersTheKDFCost: ChangePassphrase
// rewrites the file "under the keyring's KDF cost, whatever cost the file
// had". When the file's cost is higher (written by a later emrcli whose
// DefaultKDF was raised, or with WithKDF), an older or differently set
// emrcli silently lowers the key's brute-force cost. The key's new cost
// should be at least the file's, parameter by parameter.
func TestChangePassphraseNeverLowersTheKDFCost(t *testing.T) {
	home := t.TempDir()
	dearer := KDFParams{Time: 3, MemoryKiB: 4096, Threads: 2}
	kr, _ := Open(BackendFile, home, fixedPass("old passphrase", "x"), WithKDF(dearer))
	if _, err := kr.Add("alice"); err != nil {
		t.Fatal(err)
	}
	changer, _ := Open(BackendFile, home, changePass(t, "old passphrase", "new passphrase", nil), WithKDF(cheap))
	if err := changer.ChangePassphrase("alice"); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(home, "keyring-file", "alice.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f keyFile
	if err := json.Unmarshal(raw, &f); err != nil || f.KDF == nil {
		t.Fatal(err)
	}
	if p := f.KDF.KDFParams; p.Time < dearer.Time || p.MemoryKiB < dearer.MemoryKiB || p.Threads < dearer.Threads {
		t.Fatalf("the passphrase change lowered the key's argon2id cost from %+v to %+v", dearer, p)
	}
}
