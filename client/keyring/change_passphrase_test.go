package keyring

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// changePass answers Unlock with current and ChangeKey with next, and
// records the purposes asked for; anything else fails the test.
func changePass(t *testing.T, current, next string, asked *[]Purpose) PassphraseFunc {
	return func(p Purpose, _ string) ([]byte, error) {
		if asked != nil {
			*asked = append(*asked, p)
		}
		switch p {
		case Unlock:
			return []byte(current), nil
		case ChangeKey:
			return []byte(next), nil
		}
		t.Errorf("passphrase asked with purpose %d", p)
		return nil, errors.New("unexpected purpose")
	}
}

// newAlice is a file-backend keyring in home holding key "alice" under
// passphrase pass, with a patient id and a KEK.
func newAlice(t *testing.T, home, pass string) *Key {
	t.Helper()
	kr, err := Open(BackendFile, home, fixedPass(pass, "x"), WithKDF(cheap))
	if err != nil {
		t.Fatal(err)
	}
	k, err := kr.Add("alice")
	if err != nil {
		t.Fatal(err)
	}
	k.PatientID = bytes.Repeat([]byte{7}, 32)
	k.KEKs = map[uint64][]byte{1: bytes.Repeat([]byte{1}, 32)}
	if err := kr.Save(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// opensWith tells whether key "alice" of home opens with pass, and fails
// the test on any other error than a wrong passphrase.
func opensWith(t *testing.T, home, pass string) (*Key, bool) {
	t.Helper()
	kr, err := Open(BackendFile, home, fixedPass(pass, "x"), WithKDF(cheap))
	if err != nil {
		t.Fatal(err)
	}
	k, err := kr.Get("alice")
	if errors.Is(err, ErrWrongPassphrase) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return k, true
}

func TestChangePassphrase(t *testing.T) {
	home := t.TempDir()
	k := newAlice(t, home, "old passphrase")
	var asked []Purpose
	kr, _ := Open(BackendFile, home, changePass(t, "old passphrase", "new passphrase", &asked), WithKDF(cheap))
	if err := kr.ChangePassphrase("alice"); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 2 || asked[0] != Unlock || asked[1] != ChangeKey {
		t.Fatalf("asked for %v, want Unlock then ChangeKey", asked)
	}
	if _, ok := opensWith(t, home, "old passphrase"); ok {
		t.Fatal("the old passphrase still opens the key")
	}
	got, ok := opensWith(t, home, "new passphrase")
	if !ok {
		t.Fatal("the new passphrase does not open the key")
	}
	if !bytes.Equal(got.Address(), k.Address()) || !bytes.Equal(got.EncPubKey(), k.EncPubKey()) || !bytes.Equal(got.PatientSecret, k.PatientSecret) ||
		!bytes.Equal(got.PatientID, k.PatientID) || !bytes.Equal(got.KEKs[1], k.KEKs[1]) {
		t.Fatal("the key changed with its passphrase")
	}
	fi, err := os.Stat(filepath.Join(home, "keyring-file", "alice.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file after the change: %v, %v", fi, err)
	}
}

// TestChangePassphraseRefusals: a wrong current passphrase, a new one too
// short (in characters: "ééééééé" is 14 bytes), the test backend and a
// missing key change nothing: the file is byte for byte what it was, and
// the new passphrase is not asked for before the current one opened the
// key.
func TestChangePassphraseRefusals(t *testing.T) {
	home := t.TempDir()
	newAlice(t, home, "old passphrase")
	path := filepath.Join(home, "keyring-file", "alice.json")
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var asked []Purpose
	wrong, _ := Open(BackendFile, home, changePass(t, "not the passphrase", "new passphrase", &asked), WithKDF(cheap))
	if err := wrong.ChangePassphrase("alice"); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("a wrong current passphrase: %v, want ErrWrongPassphrase", err)
	}
	if len(asked) != 1 || asked[0] != Unlock {
		t.Fatalf("asked for %v with a wrong current passphrase, want Unlock only", asked)
	}
	short, _ := Open(BackendFile, home, changePass(t, "old passphrase", "ééééééé", nil), WithKDF(cheap))
	if err := short.ChangePassphrase("alice"); err == nil || !strings.Contains(err.Error(), "at least 8 characters") {
		t.Fatalf("a new passphrase of 7 characters: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Fatal("a refused change rewrote the key file")
	}
	if _, ok := opensWith(t, home, "old passphrase"); !ok {
		t.Fatal("after refused changes, the old passphrase no longer opens the key")
	}
	if err := short.ChangePassphrase("nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a missing key: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(home, "keyring-file", ".nobody.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing key got a lock file: %v", err)
	}
	if err := short.ChangePassphrase("../alice"); !errors.Is(err, ErrBadName) {
		t.Fatalf("a bad name: %v, want ErrBadName", err)
	}

	test, _ := Open(BackendTest, home, changePass(t, "old passphrase", "new passphrase", nil))
	if _, err := test.Add("script"); err != nil {
		t.Fatal(err)
	}
	testPath := filepath.Join(home, "keyring-test", "script.json")
	testBefore, _ := os.ReadFile(testPath)
	if err := test.ChangePassphrase("script"); !errors.Is(err, ErrNoPassphrase) {
		t.Fatalf("a test-backend key: %v, want ErrNoPassphrase", err)
	}
	if after, _ := os.ReadFile(testPath); !bytes.Equal(after, testBefore) {
		t.Fatal("the test-backend key file was rewritten")
	}
}

// TestChangePassphraseUpgradesTheKDF: the file is rewritten with a fresh
// salt under the keyring's KDF cost, not the file's; the same passphrase
// given again is accepted and does only that.
func TestChangePassphraseUpgradesTheKDF(t *testing.T) {
	home := t.TempDir()
	newAlice(t, home, "correct horse") // at the cheap cost
	kdfOf := func() kdfBlock {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join(home, "keyring-file", "alice.json"))
		if err != nil {
			t.Fatal(err)
		}
		var f keyFile
		if err := json.Unmarshal(raw, &f); err != nil || f.KDF == nil {
			t.Fatalf("key file: %v", err)
		}
		return *f.KDF
	}
	old := kdfOf()
	dearer := KDFParams{Time: 2, MemoryKiB: 2048, Threads: 2}
	kr, _ := Open(BackendFile, home, changePass(t, "correct horse", "correct horse", nil), WithKDF(dearer))
	if err := kr.ChangePassphrase("alice"); err != nil {
		t.Fatal(err)
	}
	now := kdfOf()
	if now.KDFParams != dearer || now.Alg != kdfArgon2id {
		t.Fatalf("KDF after the change: %s %+v, want argon2id %+v", now.Alg, now.KDFParams, dearer)
	}
	if len(now.Salt) != 16 || bytes.Equal(now.Salt, old.Salt) {
		t.Fatalf("salt %x after the change (was %x): want a fresh one", now.Salt, old.Salt)
	}
	if _, ok := opensWith(t, home, "correct horse"); !ok {
		t.Fatal("the key does not open with its (unchanged) passphrase")
	}
}

// TestSaveAfterAPassphraseChange: a run that loaded the key before another
// run changed its passphrase holds the old file key. Its Save (a rotation's
// new KEK) must not write the key back under the old passphrase: it fails
// with ErrConflict, as Refresh does, and the key opens with the new
// passphrase only. The run that changed it saves without being asked again.
func TestSaveAfterAPassphraseChange(t *testing.T) {
	home := t.TempDir()
	newAlice(t, home, "old passphrase")
	stale, _ := Open(BackendFile, home, fixedPass("old passphrase", "x"), WithKDF(cheap))
	kStale, err := stale.Get("alice")
	if err != nil {
		t.Fatal(err)
	}

	var asked []Purpose
	changer, _ := Open(BackendFile, home, changePass(t, "old passphrase", "new passphrase", &asked), WithKDF(cheap))
	kChanger, err := changer.Get("alice") // loaded before its own change
	if err != nil {
		t.Fatal(err)
	}
	if err := changer.ChangePassphrase("alice"); err != nil {
		t.Fatal(err)
	}

	kStale.KEKs[2] = bytes.Repeat([]byte{2}, 32)
	if err := stale.Save(kStale); !errors.Is(err, ErrConflict) {
		t.Fatalf("Save by a run that loaded the key before the change: %v, want ErrConflict", err)
	}
	if err := stale.Refresh(kStale); !errors.Is(err, ErrConflict) {
		t.Fatalf("Refresh by a run that loaded the key before the change: %v, want ErrConflict", err)
	}
	if _, ok := opensWith(t, home, "old passphrase"); ok {
		t.Fatal("the stale Save wrote the key back under the old passphrase")
	}
	got, ok := opensWith(t, home, "new passphrase")
	if !ok {
		t.Fatal("the key no longer opens with the new passphrase")
	}
	if _, ok := got.KEKs[2]; ok {
		t.Fatal("the stale Save's KEK was written")
	}

	asked = nil
	kChanger.KEKs[3] = bytes.Repeat([]byte{3}, 32)
	if err := changer.Save(kChanger); err != nil {
		t.Fatalf("Save by the run that changed the passphrase: %v", err)
	}
	if len(asked) != 0 {
		t.Fatalf("Save after the change asked for %v", asked)
	}
	if got, ok := opensWith(t, home, "new passphrase"); !ok || !bytes.Equal(got.KEKs[3], kChanger.KEKs[3]) {
		t.Fatal("the changer's Save is not under the new passphrase")
	}
}
