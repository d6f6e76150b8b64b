package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestChangePassphraseNoteOnlyWhenTheEnvironmentIsStale: with
// EMRCLI_PASSPHRASE set, the note that it still holds the old passphrase
// comes when the new one differs, and not when the same passphrase is
// given again (the way to move an old key to the current KDF cost).
func TestChangePassphraseNoteOnlyWhenTheEnvironmentIsStale(t *testing.T) {
	home := t.TempDir()
	t.Setenv(envKeyringBackend, "")
	t.Setenv(envPassphrase, "")
	t.Setenv(envNewPassphrase, "")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--home", home, "keys", "add", "alice"}, strings.NewReader("same passphrase\nsame passphrase\n"), &out, &errOut); code != exitOK {
		t.Fatalf("keys add: %d %s", code, errOut.String())
	}
	t.Setenv(envPassphrase, "same passphrase")
	out.Reset()
	errOut.Reset()
	code := run(context.Background(), []string{"--home", home, "keys", "change-passphrase", "alice"}, strings.NewReader("same passphrase\nsame passphrase\n"), &out, &errOut)
	if code != exitOK {
		t.Fatalf("change-passphrase: %d %s", code, errOut.String())
	}
	if strings.Contains(errOut.String(), "still holds the old passphrase") {
		t.Fatalf("the passphrase did not change, yet stderr says %q", errOut.String())
	}
	errOut.Reset()
	code = run(context.Background(), []string{"--home", home, "keys", "change-passphrase", "alice"}, strings.NewReader("another passphrase\nanother passphrase\n"), &out, &errOut)
	if code != exitOK || !strings.Contains(errOut.String(), "EMRCLI_PASSPHRASE still holds the old passphrase") {
		t.Fatalf("change-passphrase to another: exit %d, stderr %q: want the note", code, errOut.String())
	}
}
