package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrchain/emrchain/client/keyring"
)

// TestKeysChangePassphrase drives keys change-passphrase as a user does:
// passphrases as lines of standard input (the current one, then the new
// one twice), then from the environment (EMRCLI_PASSPHRASE the current,
// EMRCLI_NEW_PASSPHRASE the new). A repeat that does not match, a wrong
// current passphrase, or EMRCLI_PASSPHRASE alone (it is never taken for
// the new one) change nothing.
func TestKeysChangePassphrase(t *testing.T) {
	home := t.TempDir()
	t.Setenv(envKeyringBackend, "")
	t.Setenv(envPassphrase, "")
	t.Setenv(envNewPassphrase, "")
	cli := func(stdin string, args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"--home", home}, args...), strings.NewReader(stdin), &out, &errOut)
		return out.String(), errOut.String(), code
	}
	opens := func(pass string) bool {
		t.Helper()
		kr, err := keyring.Open(keyring.BackendFile, home, func(keyring.Purpose, string) ([]byte, error) { return []byte(pass), nil })
		if err != nil {
			t.Fatal(err)
		}
		_, err = kr.Get("alice")
		if errors.Is(err, keyring.ErrWrongPassphrase) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		return true
	}
	path := filepath.Join(home, "keyring-file", "alice.json")
	unchanged := func(what string, before []byte) {
		t.Helper()
		if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
			t.Fatalf("%s rewrote the key file (%v)", what, err)
		}
	}
	if out, errOut, code := cli("old passphrase\nold passphrase\n", "keys", "add", "alice"); code != exitOK {
		t.Fatalf("keys add: %d %s %s", code, out, errOut)
	}

	out, errOut, code := cli("old passphrase\nstdin passphrase\nstdin passphrase\n", "keys", "change-passphrase", "alice")
	if code != exitOK || !strings.Contains(out, `Changed the passphrase of key "alice"`) {
		t.Fatalf("keys change-passphrase from stdin: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if opens("old passphrase") || !opens("stdin passphrase") {
		t.Fatal("after the change from stdin, the key does not open with the new passphrase only")
	}

	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, errOut, code = cli("stdin passphrase\nfirst new passphrase\nsecond new passphrase\n", "keys", "change-passphrase", "alice")
	if code != exitFailure || !strings.Contains(errOut, "do not match") {
		t.Fatalf("a repeat that does not match: exit %d, stderr %q", code, errOut)
	}
	unchanged("a repeat that does not match", before)
	_, errOut, code = cli("old passphrase\nnew passphrase\nnew passphrase\n", "keys", "change-passphrase", "alice")
	if code != exitFailure || !strings.Contains(errOut, "wrong passphrase") {
		t.Fatalf("a wrong current passphrase: exit %d, stderr %q", code, errOut)
	}
	unchanged("a wrong current passphrase", before)

	t.Setenv(envPassphrase, "stdin passphrase")
	t.Setenv(envNewPassphrase, "env passphrase")
	out, errOut, code = cli("", "--json", "keys", "change-passphrase", "alice")
	var got map[string]string
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil || got["passphrase_changed"] != "alice" || got["file"] != path {
		t.Fatalf("keys change-passphrase --json from the environment: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if !strings.Contains(errOut, envPassphrase+" still holds the old passphrase") {
		t.Fatalf("no word that %s is now out of date: %q", envPassphrase, errOut)
	}
	if opens("stdin passphrase") || !opens("env passphrase") {
		t.Fatal("after the change from the environment, the key does not open with the new passphrase only")
	}

	// EMRCLI_PASSPHRASE is the current passphrase: with no
	// EMRCLI_NEW_PASSPHRASE, the new one is asked for, never taken from it.
	t.Setenv(envPassphrase, "env passphrase")
	t.Setenv(envNewPassphrase, "")
	before, _ = os.ReadFile(path)
	_, errOut, code = cli("", "keys", "change-passphrase", "alice")
	if code != exitFailure || !strings.Contains(errOut, envNewPassphrase) {
		t.Fatalf("no new passphrase given: exit %d, stderr %q; want a failure naming %s", code, errOut, envNewPassphrase)
	}
	unchanged("a change with no new passphrase", before)
}
