package keyring

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"
)

// TestChangePassphraseDoesNotHoldTheLockWhileAsking: the key's
// lock is documented (lock) as held "only while it saves the key", and
// waited for without end (context.Background(); emrcli's SIGINT/SIGTERM
// are caught by signal.NotifyContext, so a waiting run cannot even be
// interrupted). ChangePassphrase takes it before asking for the current
// passphrase and keeps it through the new passphrase's prompts: a Save by
// another run (a rotation's new KEK, a patient id) waits for as long as a
// human sits at the prompt. Here a Save made while a prompt is open must
// finish promptly, and its KEK must be in the re-encrypted key.
func TestChangePassphraseDoesNotHoldTheLockWhileAsking(t *testing.T) {
	for _, blocked := range []Purpose{Unlock, ChangeKey} {
		name := map[Purpose]string{Unlock: "current passphrase prompt", ChangeKey: "new passphrase prompt"}[blocked]
		t.Run(name, func(t *testing.T) {
			home := t.TempDir()
			newAlice(t, home, "old passphrase")
			other, _ := Open(BackendFile, home, fixedPass("old passphrase", "x"), WithKDF(cheap))
			k, err := other.Get("alice")
			if err != nil {
				t.Fatal(err)
			}
			asking, release := make(chan struct{}), make(chan struct{})
			changer, _ := Open(BackendFile, home, func(p Purpose, _ string) ([]byte, error) {
				if p == blocked {
					close(asking)
					<-release // the user is typing
				}
				if p == Unlock {
					return []byte("old passphrase"), nil
				}
				return []byte("new passphrase"), nil
			}, WithKDF(cheap))
			done := make(chan error, 1)
			go func() { done <- changer.ChangePassphrase("alice") }()
			<-asking

			k.KEKs[2] = bytes.Repeat([]byte{2}, 32)
			saved := make(chan error, 1)
			go func() { saved <- other.Save(k) }()
			select {
			case err := <-saved:
				if err != nil {
					t.Fatalf("Save while change-passphrase is at its prompt: %v", err)
				}
			case <-time.After(3 * time.Second):
				close(release)
				<-done
				err := <-saved
				t.Fatalf("a Save by another run waited %s+ for change-passphrase's %s (the key's lock is held while a human types); once the prompt returned it got: %v", 3*time.Second, name, err)
			}
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			got, ok := opensWith(t, home, "new passphrase")
			if !ok || !bytes.Equal(got.KEKs[2], k.KEKs[2]) {
				t.Fatal("the KEK saved while the prompt was open is not in the re-encrypted key")
			}
		})
	}
}

// TestChangePassphraseConflictsWithARewrite: a key file written anew while
// the new passphrase is typed (here another run's change of passphrase:
// another salt) fails the change with ErrConflict and is left as the other
// run wrote it, not sealed over under the passphrase typed.
func TestChangePassphraseConflictsWithARewrite(t *testing.T) {
	home := t.TempDir()
	newAlice(t, home, "old passphrase")
	asking, release := make(chan struct{}), make(chan struct{})
	changer, _ := Open(BackendFile, home, func(p Purpose, _ string) ([]byte, error) {
		if p == ChangeKey {
			close(asking)
			<-release // the user is typing
			return []byte("new passphrase"), nil
		}
		return []byte("old passphrase"), nil
	}, WithKDF(cheap))
	done := make(chan error, 1)
	go func() { done <- changer.ChangePassphrase("alice") }()
	<-asking
	other, _ := Open(BackendFile, home, func(p Purpose, _ string) ([]byte, error) {
		if p == ChangeKey {
			return []byte("other passphrase"), nil
		}
		return []byte("old passphrase"), nil
	}, WithKDF(cheap))
	if err := other.ChangePassphrase("alice"); err != nil {
		t.Fatal(err)
	}
	written, err := os.ReadFile(other.Path("alice"))
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; !errors.Is(err, ErrConflict) {
		t.Fatalf("a change of passphrase over a file rewritten meanwhile: %v, want ErrConflict", err)
	}
	if now, err := os.ReadFile(other.Path("alice")); err != nil || !bytes.Equal(now, written) {
		t.Fatalf("the conflicting change rewrote the key file (%v)", err)
	}
	if _, ok := opensWith(t, home, "other passphrase"); !ok {
		t.Fatal("the key no longer opens with the passphrase the other run set")
	}
}
