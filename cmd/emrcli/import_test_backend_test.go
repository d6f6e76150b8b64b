package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportIntoTestKeyringWarns: an export is a real key (signing and
// encryption keys, patient secret, every KEK) under a passphrase. "keys
// import" into the test keyring (--keyring-backend test, or
// EMRCLI_KEYRING_BACKEND=test left set from scripting) writes all of it
// to disk in the clear, so it says so (the session-47 review: it said
// nothing, and the output read as a normal import).
func TestImportIntoTestKeyringWarns(t *testing.T) {
	home := t.TempDir()
	t.Setenv(envPassphrase, "correct horse battery")
	t.Setenv(envExportPassphrase, "export passphrase")
	t.Setenv(envKeyringBackend, "")
	cli := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append([]string{"--home", home}, args...), strings.NewReader(""), &out, &errOut)
		return out.String(), errOut.String(), code
	}
	if out, errOut, code := cli("keys", "add", "alice"); code != exitOK {
		t.Fatalf("keys add: %d %s %s", code, out, errOut)
	}
	export := filepath.Join(t.TempDir(), "alice.key")
	if out, errOut, code := cli("keys", "export", "alice", "--output", export); code != exitOK {
		t.Fatalf("keys export: %d %s %s", code, out, errOut)
	}
	out, errOut, code := cli("keys", "import", "alice", export, "--keyring-backend", "test")
	if code != exitOK {
		t.Fatalf("keys import into the test keyring: %d %s %s", code, out, errOut)
	}
	raw, err := os.ReadFile(filepath.Join(home, "keyring-test", "alice.json"))
	if err != nil || !bytes.Contains(raw, []byte("sign_priv_key")) {
		t.Fatalf("expected the imported key in the clear in keyring-test: %v", err)
	}
	if !strings.Contains(strings.ToUpper(out+errOut), "UNENCRYPTED") {
		t.Fatalf("keys import wrote an exported (real) key UNENCRYPTED to the test keyring without a word:\nstdout: %s\nstderr: %s", out, errOut)
	}
}
