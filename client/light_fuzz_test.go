package client

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// trustRootSeed is a trust.json as openLight writes it.
func trustRootSeed(t testing.TB) []byte {
	t.Helper()
	home := t.TempDir()
	if err := writeTrustRoot(home, &TrustRoot{
		ChainID: "emrchain-test", Height: 12, Hash: "3F0B1E7A5C9D2E4F6A8B0C1D2E3F405162738495A6B7C8D9EAFB0C1D2E3F4050",
		Period: DefaultTrustPeriod, Created: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
	}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(home, trustFileName))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// FuzzReadTrustRoot: ReadTrustRoot never panics on a trust.json of any
// content. A root it accepts is complete (a chain id, a positive height
// and trusting period, the hex of a 32-byte header hash), and
// writeTrustRoot writes it back to a file that reads as the same root.
func FuzzReadTrustRoot(f *testing.F) {
	seed := trustRootSeed(f)
	f.Add(seed)
	f.Add(bytes.Replace(seed, []byte(`"height": 12`), []byte(`"height": 0`), 1))
	f.Add(bytes.Replace(seed, []byte(`"period_ns": `), []byte(`"period_ns": -`), 1))
	f.Add(bytes.Replace(seed, []byte(`"hash": "3F`), []byte(`"hash": "ZZ`), 1))
	f.Add([]byte(`{"chain_id":"c","height":1,"hash":"","period_ns":1,"created":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"chain_id":"c","height":9223372036854775807,"hash":"` + strings.Repeat("ab", 32) + `","period_ns":1,"created":"9999-12-31T23:59:59.999999999+23:59"}`))
	f.Add([]byte("null"))
	f.Add([]byte("{}"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, raw []byte) {
		home := t.TempDir()
		if err := os.WriteFile(filepath.Join(home, trustFileName), raw, 0o600); err != nil {
			t.Fatal(err)
		}
		tr, err := ReadTrustRoot(home)
		if err != nil {
			if tr != nil {
				t.Fatalf("ReadTrustRoot returned a root and an error: %v", err)
			}
			return
		}
		if tr == nil {
			t.Fatal("no root and no error for an existing trust.json")
		}
		if tr.ChainID == "" || tr.Height <= 0 || tr.Period <= 0 {
			t.Fatalf("accepted an incomplete trust root %+v", tr)
		}
		if hash, err := hex.DecodeString(tr.Hash); err != nil || len(hash) != 32 {
			t.Fatalf("accepted trust root hash %q: not the hex of a 32-byte header hash", tr.Hash)
		}
		again := t.TempDir()
		if err := writeTrustRoot(again, tr); err != nil {
			t.Fatalf("an accepted trust root does not write back: %v", err)
		}
		tr2, err := ReadTrustRoot(again)
		if err != nil || tr2 == nil {
			t.Fatalf("a written trust root does not read back: %v", err)
		}
		if tr2.ChainID != tr.ChainID || tr2.Height != tr.Height || tr2.Hash != tr.Hash || tr2.Period != tr.Period || !tr2.Created.Equal(tr.Created) {
			a, _ := json.Marshal(tr)
			b, _ := json.Marshal(tr2)
			t.Fatalf("a trust root does not survive a round trip:\n%s\n%s", a, b)
		}
	})
}
