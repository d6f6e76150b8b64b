package keyring

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emrchain/emrchain/internal/filelock"
)

// TestDeleteWaitsForASaveInProgress: Save (a rotation in another
// emrcli run writing a new KEK) checks that the key exists and rewrites
// it under the key's lock, but Delete takes no lock. A "keys delete" that
// lands between Save's check and its write is undone: the key file is
// written back after emrcli said "Deleted key". Holding the key's lock, as
// a Save in progress does, Delete must wait.
func TestDeleteWaitsForASaveInProgress(t *testing.T) {
	kr, err := Open(BackendTest, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Add("alice"); err != nil {
		t.Fatal(err)
	}
	// Another run's Save, between its Has check and its write.
	release, err := filelock.Lock(context.Background(), filepath.Join(kr.Dir(), ".alice.lock"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- kr.Delete("alice") }()
	select {
	case err := <-done:
		release()
		t.Fatalf("Delete ran (%v) while a Save of the key held its lock; that Save then writes the deleted key back", err)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(kr.Path("alice")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("key file after Delete: %v", err)
	}
}
