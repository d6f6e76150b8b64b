package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emrchain/emrchain/testnet/manifest"
)

// TestInterruptedTestnetIsRecoverable: a testnet whose writing is stopped
// after the node homes and before testnet.json (Ctrl-C, a kill) leaves a
// directory that "emrchaind testnet" refuses without --force, saying so,
// and deletes and writes anew with --force (as make localnet does).
// Without the mark of a partial testnet, --force refused it as "not a
// testnet" and only an rm -rf by hand got the user on.
func TestInterruptedTestnetIsRecoverable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	stopped := filepath.Join(t.TempDir(), "stopped")
	testnetHomesWritten = func(out string) {
		// What a kill at this point leaves.
		if err := os.CopyFS(stopped, os.DirFS(out)); err != nil {
			t.Errorf("copy the half-written testnet: %v", err)
		}
	}
	t.Cleanup(func() { testnetHomesWritten = nil })
	if out, err := run(t, "testnet", "--output", dir, "--validators", "2", "--base-port", "30400"); err != nil {
		t.Fatalf("testnet: %v\n%s", err, out)
	}
	testnetHomesWritten = nil
	if _, err := os.Stat(filepath.Join(dir, testnetPartialFile)); !os.IsNotExist(err) {
		t.Errorf("a testnet written whole keeps %s (%v)", testnetPartialFile, err)
	}
	if _, err := os.Stat(filepath.Join(stopped, manifest.File)); !os.IsNotExist(err) {
		t.Fatalf("the stopped testnet holds %s already (%v): the hook ran too late", manifest.File, err)
	}

	_, err := run(t, "testnet", "--output", stopped, "--validators", "2", "--base-port", "30400")
	if err == nil || !strings.Contains(err.Error(), "stopped part way") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("rerun into the half-written DIR: %v; want the refusal that says it stopped part way and points at --force", err)
	}
	if out, err := run(t, "testnet", "--output", stopped, "--validators", "2", "--base-port", "30400", "--force"); err != nil {
		t.Fatalf("testnet --force on the DIR an interrupted testnet left: %v\n%s", err, out)
	}
	readTestnet(t, stopped)

	// --force still refuses a directory that is no testnet at all.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "testnet", "--output", other, "--validators", "2", "--base-port", "30400", "--force"); err == nil || !strings.Contains(err.Error(), "not a testnet") {
		t.Errorf("--force on a directory of other files: %v; want it refused as not a testnet", err)
	}
}

// TestInterruptedForceIsRecoverable: "testnet --force" marks the old
// testnet as partial before it deletes anything, so that a deletion
// stopped part way (os.RemoveAll goes in directory order, and a localnet
// that ran holds block and blob stores) leaves a directory that --force
// still deletes. A re-review found the mark made only after the deletion:
// stopped once testnet.json was gone, the node homes left were "not a
// testnet" to --force, and only an rm -rf by hand got the user on.
func TestInterruptedForceIsRecoverable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net")
	if out, err := run(t, "testnet", "--output", dir, "--validators", "2", "--base-port", "30400"); err != nil {
		t.Fatalf("testnet: %v\n%s", err, out)
	}
	stopped := filepath.Join(t.TempDir(), "stopped")
	testnetRemoving = func(out, name string) {
		if _, err := os.Stat(filepath.Join(out, testnetPartialFile)); err != nil {
			t.Errorf("removing %s of the old testnet, %s is not there: %v", name, testnetPartialFile, err)
		}
		// What a kill leaves once testnet.json is gone and some homes are not.
		if _, err := os.Stat(filepath.Join(out, manifest.File)); os.IsNotExist(err) && !fileExists(stopped) {
			if err := os.CopyFS(stopped, os.DirFS(out)); err != nil {
				t.Errorf("copy the half-deleted testnet: %v", err)
			}
		}
	}
	t.Cleanup(func() { testnetRemoving = nil })
	if out, err := run(t, "testnet", "--output", dir, "--validators", "2", "--base-port", "30400", "--force"); err != nil {
		t.Fatalf("testnet --force: %v\n%s", err, out)
	}
	testnetRemoving = nil
	if !fileExists(stopped) {
		t.Fatal("the hook never saw the old testnet without its testnet.json")
	}
	if out, err := run(t, "testnet", "--output", stopped, "--validators", "2", "--base-port", "30400", "--force"); err != nil {
		t.Fatalf("testnet --force on what an interrupted --force left: %v\n%s", err, out)
	}
	readTestnet(t, stopped)
}
