package keyring

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emrchain/emrchain/app"
)

// cheap keeps the tests fast; one test uses DefaultKDF.
var cheap = KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}

// fixedPass answers every prompt with pass (export/import with export).
func fixedPass(pass, export string) PassphraseFunc {
	return func(p Purpose, _ string) ([]byte, error) {
		if p == ExportKey || p == ImportKey {
			return []byte(export), nil
		}
		return []byte(pass), nil
	}
}

func TestFileBackendRoundTripAndModes(t *testing.T) {
	home := t.TempDir()
	kr, err := Open(BackendFile, home, fixedPass("correct horse", "x"), WithKDF(cheap))
	if err != nil {
		t.Fatal(err)
	}
	k, err := kr.Add("alice")
	if err != nil {
		t.Fatal(err)
	}
	k.PatientID = bytes.Repeat([]byte{7}, 32)
	k.KEKs = map[uint64][]byte{1: bytes.Repeat([]byte{1}, 32), 2: bytes.Repeat([]byte{2}, 32)}
	if err := kr.Save(k); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(filepath.Join(home, "keyring-file", "alice.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Join(home, "keyring-file"))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("keyring dir mode %v, want 0700", di.Mode().Perm())
	}
	raw, _ := os.ReadFile(filepath.Join(home, "keyring-file", "alice.json"))
	if bytes.Contains(raw, []byte("sign_priv_key")) || bytes.Contains(raw, []byte("patient_secret")) {
		t.Fatal("file backend wrote secrets in the clear")
	}

	// A fresh keyring (new process) reads it back with the passphrase.
	kr2, _ := Open(BackendFile, home, fixedPass("correct horse", "x"))
	got, err := kr2.Get("alice")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Address(), k.Address()) || !bytes.Equal(got.EncPubKey(), k.EncPubKey()) ||
		!bytes.Equal(got.PatientSecret, k.PatientSecret) || !bytes.Equal(got.PatientID, k.PatientID) || len(got.KEKs) != 2 {
		t.Fatalf("round trip lost data: %+v", got)
	}
	msg := []byte("hello")
	sig, _ := got.Sign(msg)
	if len(sig) != 64 || !bytes.Equal(app.AddressOf(got.PubKey()), got.Address()) {
		t.Fatal("bad signer")
	}
	infos, err := kr2.List()
	if err != nil || len(infos) != 1 || infos[0].Name != "alice" || !bytes.Equal(infos[0].Address, k.Address()) {
		t.Fatalf("List = %+v, %v", infos, err)
	}
	if _, err := kr2.Add("alice"); !errors.Is(err, ErrExists) {
		t.Fatalf("Add over an existing key: %v, want ErrExists", err)
	}
	if err := kr2.Delete("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := kr2.Get("alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
}

func TestWrongPassphrase(t *testing.T) {
	home := t.TempDir()
	// The real cost, once: this is what users get.
	kr, _ := Open(BackendFile, home, fixedPass("the right one", "x"))
	if _, err := kr.Add("bob"); err != nil {
		t.Fatal(err)
	}
	wrong, _ := Open(BackendFile, home, fixedPass("the wrong one", "x"))
	_, err := wrong.Get("bob")
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v, want ErrWrongPassphrase", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line: %q", err)
	}
	// The file is untouched and still opens with the right passphrase.
	if _, err := kr.Get("bob"); err != nil {
		t.Fatal(err)
	}
}

func TestShortPassphraseRefused(t *testing.T) {
	kr, _ := Open(BackendFile, t.TempDir(), fixedPass("short", "x"), WithKDF(cheap))
	if _, err := kr.Add("c"); err == nil || !strings.Contains(err.Error(), "at least") {
		t.Fatalf("short passphrase: %v", err)
	}
}

func TestTamperedFileFails(t *testing.T) {
	home := t.TempDir()
	kr, _ := Open(BackendFile, home, fixedPass("correct horse", "x"), WithKDF(cheap))
	kr.Add("a")
	b, _ := kr.Add("b")
	path := filepath.Join(home, "keyring-file", "a.json")
	raw, _ := os.ReadFile(path)
	var f map[string]any
	_ = json.Unmarshal(raw, &f)

	// Swap in b's public keys: the header is authenticated.
	f["sign_pub_key"] = hexOf(b.PubKey())
	f["address"] = hexOf(b.Address())
	out, _ := json.Marshal(f)
	_ = os.WriteFile(path, out, 0o600)
	if _, err := kr.Get("a"); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("swapped public key: %v", err)
	}
	// Weaken the KDF: authenticated as well.
	_ = json.Unmarshal(raw, &f)
	f["kdf"].(map[string]any)["time"] = 2
	out, _ = json.Marshal(f)
	_ = os.WriteFile(path, out, 0o600)
	if _, err := kr.Get("a"); err == nil {
		t.Fatal("changed KDF parameters accepted")
	}
	// Anything after the object: a second object, or leftovers.
	for _, tail := range []string{"{}", "x", "}", "\n" + string(raw)} {
		_ = os.WriteFile(path, append(bytes.Clone(raw), tail...), 0o600)
		if _, err := kr.Get("a"); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("file followed by %.10q: %v, want ErrCorrupt", tail, err)
		}
	}
	// White space after it is fine (the writer ends the file with a newline).
	_ = os.WriteFile(path, append(bytes.Clone(raw), " \n\t\n"...), 0o600)
	if _, err := kr.Get("a"); err != nil {
		t.Fatalf("file followed by white space: %v", err)
	}
	// Rename b.json to a.json: the name inside does not match.
	_ = os.Rename(filepath.Join(home, "keyring-file", "b.json"), path)
	if _, err := kr.Get("a"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("renamed file: %v", err)
	}
}

// TestTamperedPatientIDFails: the patient id in the clear (what commands
// that need no passphrase show and query) is not associated data; a key
// whose clear id is not its encrypted one, changed or removed, does not
// open.
func TestTamperedPatientIDFails(t *testing.T) {
	home := t.TempDir()
	kr, _ := Open(BackendFile, home, fixedPass("correct horse", "x"), WithKDF(cheap))
	k, err := kr.Add("alice")
	if err != nil {
		t.Fatal(err)
	}
	k.PatientID = bytes.Repeat([]byte{7}, 32)
	if err := kr.Save(k); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(home, "keyring-file", "alice.json")
	raw, _ := os.ReadFile(path)
	for _, forged := range []string{hexOf(bytes.Repeat([]byte{9}, 32)), ""} {
		var f map[string]any
		_ = json.Unmarshal(raw, &f)
		f["patient_id"] = forged
		out, _ := json.Marshal(f)
		_ = os.WriteFile(path, out, 0o600)
		if _, err := kr.Get("alice"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("clear patient id %q (the key's is 07…): %v, want ErrCorrupt", forged, err)
		}
	}
	_ = os.WriteFile(path, raw, 0o600)
	if got, err := kr.Get("alice"); err != nil || !bytes.Equal(got.PatientID, k.PatientID) {
		t.Fatalf("the untouched file: %v", err)
	}
}

func TestExportImportSameAddress(t *testing.T) {
	src, _ := Open(BackendFile, t.TempDir(), fixedPass("correct horse", "export-pass"), WithKDF(cheap))
	k, _ := src.Add("carol")
	k.PatientID = bytes.Repeat([]byte{3}, 32)
	k.KEKs = map[uint64][]byte{1: bytes.Repeat([]byte{9}, 32)}
	if err := src.Save(k); err != nil {
		t.Fatal(err)
	}
	blob, err := src.Export("carol")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, []byte("sign_priv_key")) {
		t.Fatal("export holds secrets in the clear")
	}
	for _, backend := range []string{BackendFile, BackendTest} {
		dst, _ := Open(backend, t.TempDir(), fixedPass("another passphrase", "export-pass"), WithKDF(cheap))
		got, err := dst.Import("carol2", blob)
		if err != nil {
			t.Fatalf("%s: import: %v", backend, err)
		}
		again, err := dst.Get("carol2")
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range []*Key{got, again} {
			if !bytes.Equal(g.Address(), k.Address()) || !bytes.Equal(g.EncPubKey(), k.EncPubKey()) ||
				!bytes.Equal(g.PatientSecret, k.PatientSecret) || !bytes.Equal(g.KEKs[1], k.KEKs[1]) {
				t.Fatalf("%s: imported key differs", backend)
			}
		}
		bad, _ := Open(backend, t.TempDir(), fixedPass("another passphrase", "not-the-export-pass"), WithKDF(cheap))
		if _, err := bad.Import("x", blob); !errors.Is(err, ErrWrongPassphrase) {
			t.Fatalf("%s: import with a wrong export passphrase: %v", backend, err)
		}
	}
}

func TestTestBackendIsClearAndNamed(t *testing.T) {
	home := t.TempDir()
	kr, _ := Open(BackendTest, home, nil)
	k, err := kr.Add("script")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(home, "keyring-test", "script.json"))
	if !bytes.Contains(raw, []byte("UNENCRYPTED")) {
		t.Fatal("test backend file does not say it is unencrypted")
	}
	fi, _ := os.Stat(filepath.Join(home, "keyring-test", "script.json"))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	got, err := kr.Get("script")
	if err != nil || !bytes.Equal(got.Address(), k.Address()) {
		t.Fatalf("Get: %v", err)
	}
	// The file backend does not see test keys.
	fkr, _ := Open(BackendFile, home, fixedPass("correct horse", "x"))
	if _, err := fkr.Get("script"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("file backend sees a test key: %v", err)
	}
}

func TestImportDev(t *testing.T) {
	k, _ := Generate("registrar")
	dev := DevKey{
		Name: "registrar", Address: hexOf(k.Address()), SignPrivKey: k.sign.Bytes(), SignPubKey: k.PubKey(),
		EncPrivKey: k.enc.Bytes(), EncPubKey: k.EncPubKey(), Role: "registrar", OrganizationID: "dev-hospital",
	}
	raw, _ := json.Marshal(dev)
	kr, _ := Open(BackendTest, t.TempDir(), nil)
	got, d, err := kr.ImportDev("", raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "registrar" || !bytes.Equal(got.Address(), k.Address()) || d.OrganizationID != "dev-hospital" {
		t.Fatalf("ImportDev = %v %+v", got.Name, d)
	}
	if _, _, err := kr.ImportDev("again", append(raw, `{"name":"other"}`...)); err == nil {
		t.Fatal("a dev key file followed by a second object accepted")
	}
	dev.EncPubKey = k.PubKey() // wrong
	raw, _ = json.Marshal(dev)
	if _, _, err := kr.ImportDev("other", raw); err == nil {
		t.Fatal("inconsistent dev key accepted")
	}
}

func TestBadNames(t *testing.T) {
	kr, _ := Open(BackendTest, t.TempDir(), nil)
	for _, name := range []string{"", "../x", "a/b", ".hidden", strings.Repeat("a", 65)} {
		if _, err := kr.Add(name); !errors.Is(err, ErrBadName) {
			t.Errorf("Add(%q) = %v, want ErrBadName", name, err)
		}
	}
}

// TestConcurrentSavesKeepEveryKEK: two emrcli runs load the same key; one
// adds KEK version 2 and saves, then the other adds version 3 and saves.
// Both versions stay (before, the second save wrote back the key as it had
// loaded it, and version 2, with every record re-wrapped under it, was
// lost). A version stored with other bytes is refused, not overwritten.
func TestConcurrentSavesKeepEveryKEK(t *testing.T) {
	home := t.TempDir()
	open := func() *Keyring {
		kr, err := Open(BackendFile, home, fixedPass("correct horse", "x"), WithKDF(cheap))
		if err != nil {
			t.Fatal(err)
		}
		return kr
	}
	// load is one emrcli run: a keyring of its own, the key loaded.
	load := func() (*Keyring, *Key) {
		kr := open()
		k, err := kr.Get("alice")
		if err != nil {
			t.Fatal(err)
		}
		return kr, k
	}
	save := func(kr *Keyring, k *Key) {
		if err := kr.Save(k); err != nil {
			t.Fatal(err)
		}
	}
	kr0 := open()
	k0, err := kr0.Add("alice")
	if err != nil {
		t.Fatal(err)
	}
	k0.KEKs = map[uint64][]byte{1: bytes.Repeat([]byte{1}, 32)}
	save(kr0, k0)
	krA, kA := load()
	krB, kB := load()
	kA.KEKs[2] = bytes.Repeat([]byte{2}, 32)
	save(krA, kA)
	kB.KEKs[3] = bytes.Repeat([]byte{3}, 32)
	save(krB, kB)
	if _, k := load(); !slices.Equal(k.KEKVersions(), []uint64{1, 2, 3}) {
		t.Fatalf("KEK versions after two saves: %v, want [1 2 3]", k.KEKVersions())
	}

	krC, kC := load()
	krD, kD := load()
	kC.KEKs[4] = bytes.Repeat([]byte{4}, 32)
	kD.KEKs[4] = bytes.Repeat([]byte{5}, 32)
	save(krC, kC)
	if err := krD.Save(kD); !errors.Is(err, ErrConflict) {
		t.Fatalf("a second key for version 4: %v, want ErrConflict", err)
	}
	if _, k := load(); !bytes.Equal(k.KEKs[4], kC.KEKs[4]) {
		t.Fatal("the stored version 4 was overwritten")
	}
}

// TestListSkipsAnUnreadableKey: one corrupted key file does not hide the
// others; List names it in its error.
func TestListSkipsAnUnreadableKey(t *testing.T) {
	kr, _ := Open(BackendTest, t.TempDir(), nil)
	for _, name := range []string{"alice", "bob"} {
		if _, err := kr.Add(name); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(kr.Dir(), "broken.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	infos, err := kr.List()
	if len(infos) != 2 || infos[0].Name != "alice" || infos[1].Name != "bob" {
		t.Fatalf("List = %+v, want alice and bob", infos)
	}
	if err == nil || !strings.Contains(err.Error(), "broken.json") {
		t.Fatalf("List error = %v, want one naming broken.json", err)
	}
}

// TestPassphrasesCleared: every passphrase the keyring asks for (a new
// key, an unlock, an export and its import) is zeroed once used.
func TestPassphrasesCleared(t *testing.T) {
	var given [][]byte
	pass := func(p Purpose, _ string) ([]byte, error) {
		b := []byte("correct horse battery")
		given = append(given, b)
		return b, nil
	}
	home := t.TempDir()
	kr, err := Open(BackendFile, home, pass, WithKDF(cheap))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Add("alice"); err != nil {
		t.Fatal(err)
	}
	kr2, _ := Open(BackendFile, home, pass, WithKDF(cheap))
	if _, err := kr2.Get("alice"); err != nil {
		t.Fatal(err)
	}
	if err := kr2.ChangePassphrase("alice"); err != nil { // current and new
		t.Fatal(err)
	}
	exported, err := kr2.Export("alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr2.Import("alice-2", exported); err != nil {
		t.Fatal(err)
	}
	if len(given) < 4 {
		t.Fatalf("%d passphrases asked, want at least 4", len(given))
	}
	for i, b := range given {
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Fatalf("passphrase %d of %d not cleared: %q", i+1, len(given), b)
		}
	}
}
