package main

import (
	"bytes"
	"testing"

	"github.com/emrchain/emrchain/client/keyring"
)

// TestKEKMadeByAnotherRun: two emrcli runs of one patient load the key;
// one rotation makes KEK version 2. The other run finds that version in the
// keyring instead of making a second, different one (which the keyring
// would refuse, and whose grantees could not read), and a command that only
// uses KEKs finds it too.
func TestKEKMadeByAnotherRun(t *testing.T) {
	home := t.TempDir()
	// load is one emrcli run: a keyring of its own, the key loaded.
	load := func() (*keyring.Keyring, *keyring.Key) {
		kr, err := keyring.Open(keyring.BackendTest, home, nil)
		if err != nil {
			t.Fatal(err)
		}
		k, err := kr.Get("ada")
		if err != nil {
			t.Fatal(err)
		}
		return kr, k
	}
	kr0, err := keyring.Open(keyring.BackendTest, home, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr0.Add("ada"); err != nil {
		t.Fatal(err)
	}
	krA, kA := load()
	krB, kB := load()
	made, err := ensureKEK(krA, kA, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ensureKEK(krB, kB, 2)
	if err != nil || !bytes.Equal(got, made) {
		t.Fatalf("the other run's version 2: %x %v, want the one already made", got, err)
	}
	krC, kC := load()
	if _, err := ensureKEK(krA, kA, 3); err != nil {
		t.Fatal(err)
	}
	if kek, err := existingKEK(krC, kC)(3); err != nil || kek == nil {
		t.Fatalf("version 3, made after this run loaded the key: %v", err)
	}
	if _, err := existingKEK(krC, kC)(4); err == nil {
		t.Fatal("a version nobody made was found")
	}
}
