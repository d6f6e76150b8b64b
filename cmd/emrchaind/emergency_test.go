package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cometbft/cometbft/libs/log"

	"github.com/emrchain/emrchain/client/keyring"
)

// cheapKDF keeps the test keyrings' argon2id cheap.
var cheapKDF = keyring.KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}

// emergencyKeyring makes an emrcli home whose keyring of backend holds a
// key named "er", protected by pass for the file backend.
func emergencyKeyring(t *testing.T, backend, pass string) (string, *keyring.Key) {
	t.Helper()
	home := t.TempDir()
	kr, err := keyring.Open(backend, home, func(keyring.Purpose, string) ([]byte, error) { return []byte(pass), nil }, keyring.WithKDF(cheapKDF))
	if err != nil {
		t.Fatal(err)
	}
	k, err := kr.Add("er")
	if err != nil {
		t.Fatal(err)
	}
	return home, k
}

// TestSidecarEmergencyKey: the emergency service's key is read from an
// emrcli keyring, a file key with its passphrase from a file (relative to
// the home) or the environment, and reaches the sidecar's Options; a
// missing keyring is not created, and a wrong or missing passphrase, or a
// bad setting, is refused with what to fix.
func TestSidecarEmergencyKey(t *testing.T) {
	nodeHome := t.TempDir()
	load := func(c sidecarConfig) (sidecarConfig, error) {
		if err := c.resolve(nodeHome); err != nil {
			return c, err
		}
		return c, c.loadServiceKeys(log.NewNopLogger())
	}
	if c, err := load(defaultSidecarConfig()); err != nil || c.options().Emergency != nil {
		t.Fatalf("no emergency_key: %v, %+v", err, c.options().Emergency)
	}

	testHome, testKey := emergencyKeyring(t, keyring.BackendTest, "")
	c := defaultSidecarConfig()
	c.EmergencyKey, c.EmergencyKeyringHome, c.EmergencyKeyringBackend = "er", testHome, keyring.BackendTest
	c, err := load(c)
	if err != nil {
		t.Fatal(err)
	}
	if e := c.options().Emergency; e == nil || !bytes.Equal(e.Address(), testKey.Address()) || !bytes.Equal(e.Key.PublicKey().Bytes(), testKey.EncPubKey()) {
		t.Fatalf("test keyring: options %+v, want the key of %X", e, testKey.Address())
	}

	const pass = "correct horse battery"
	fileHome, fileKey := emergencyKeyring(t, keyring.BackendFile, pass)
	if err := os.WriteFile(filepath.Join(nodeHome, "er-passphrase"), []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := defaultSidecarConfig()
	file.EmergencyKey, file.EmergencyKeyringHome = "er", fileHome
	t.Setenv(envEmergencyPassphrase, "")
	if _, err := load(file); err == nil || !strings.Contains(err.Error(), envEmergencyPassphrase) {
		t.Fatalf("no passphrase: %v", err)
	}
	t.Setenv(envEmergencyPassphrase, "not the passphrase")
	if _, err := load(file); !errors.Is(err, keyring.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	t.Setenv(envEmergencyPassphrase, pass)
	if c, err := load(file); err != nil || !bytes.Equal(c.options().Emergency.Address(), fileKey.Address()) {
		t.Fatalf("passphrase from the environment: %v", err)
	}
	t.Setenv(envEmergencyPassphrase, "")
	file.EmergencyPassphraseFile = "er-passphrase" // under the node's home
	if c, err := load(file); err != nil || !bytes.Equal(c.options().Emergency.Address(), fileKey.Address()) {
		t.Fatalf("passphrase from a file: %v", err)
	}
	// A passphrase file others may read or change, or that is not a file,
	// or is too long to be one, unlocks nothing (the session-47 review:
	// "echo ... > file" under umask 022 made the passphrase of the key that
	// opens every opted-in patient's KEK readable by every local user). A
	// root-owned file may be group-readable (a Kubernetes Secret with an
	// fsGroup), as PostgreSQL allows its key files.
	passFile := filepath.Join(nodeHome, "er-passphrase")
	modes := map[os.FileMode]bool{0o600: true, 0o400: true, 0o644: false, 0o604: false, 0o620: false, 0o660: false}
	rootOwned := os.Geteuid() == 0 // the test's files are the test's user's
	modes[0o640], modes[0o440] = rootOwned, rootOwned
	for mode, ok := range modes {
		if err := os.Chmod(passFile, mode); err != nil {
			t.Fatal(err)
		}
		_, err := load(file)
		if ok && err != nil {
			t.Errorf("passphrase file of mode %04o (root-owned: %v): %v", mode, rootOwned, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "chmod 600")) {
			t.Errorf("passphrase file of mode %04o (root-owned: %v): %v; want it refused, naming chmod 600", mode, rootOwned, err)
		}
	}
	if err := os.Chmod(passFile, 0o600); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(t.TempDir(), "long")
	if err := os.WriteFile(long, append([]byte(pass+"\n"), bytes.Repeat([]byte("x"), maxPassphraseFile)...), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ what, path, why string }{
		{"a directory", t.TempDir(), "is not a regular file"},
		{"too long (the right first line)", long, fmt.Sprintf("a passphrase file holds at most %d", maxPassphraseFile)},
	} {
		c := file
		c.EmergencyPassphraseFile = bad.path
		if _, err := load(c); err == nil || !strings.Contains(err.Error(), bad.why) {
			t.Errorf("passphrase file that is %s: %v; want it refused: %s", bad.what, err, bad.why)
		}
	}

	missing := defaultSidecarConfig()
	missing.EmergencyKey, missing.EmergencyKeyringHome = "er", filepath.Join(nodeHome, "no-such-home")
	if _, err := load(missing); err == nil {
		t.Fatal("a missing keyring was accepted")
	}
	if _, err := os.Stat(missing.EmergencyKeyringHome); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("loading created the missing keyring: %v", err)
	}
	for name, bad := range map[string]func(*sidecarConfig){
		"bad name":    func(c *sidecarConfig) { c.EmergencyKey = "../er" },
		"bad backend": func(c *sidecarConfig) { c.EmergencyKeyringBackend = "os" },
		"no home":     func(c *sidecarConfig) { c.EmergencyKeyringHome = "" },
	} {
		c := file
		bad(&c)
		if err := c.resolve(nodeHome); err == nil || !strings.HasPrefix(err.Error(), "sidecar: emergency") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestSidecarEmergencyConfig: the emergency settings round-trip through
// app.toml, and the sidecar command's flags override them, their paths
// relative to the working directory.
func TestSidecarEmergencyConfig(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	want := defaultSidecarConfig()
	want.EmergencyKey, want.EmergencyKeyringHome = "er", "/etc/emrchain/er"
	want.EmergencyKeyringBackend, want.EmergencyPassphraseFile = keyring.BackendTest, "er/passphrase"
	sidecarConfigRoundTrip(t, home, want)

	cmd := newSidecarCmd()
	if err := cmd.ParseFlags([]string{"--home", home, "--emergency-key", "er2", "--emergency-keyring-home", "keys",
		"--emergency-keyring-backend", keyring.BackendFile, "--emergency-passphrase-file", "pass"}); err != nil {
		t.Fatal(err)
	}
	c, err := sidecarFromFlags(cmd, home)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if c.EmergencyKey != "er2" || c.EmergencyKeyringBackend != keyring.BackendFile ||
		c.EmergencyKeyringHome != filepath.Join(wd, "keys") || c.EmergencyPassphraseFile != filepath.Join(wd, "pass") {
		t.Fatalf("flags: %+v", c)
	}
	help := cmd.Flags().FlagUsages()
	for _, flag := range []string{"--emergency-key", "--emergency-keyring-home", "--emergency-keyring-backend", "--emergency-passphrase-file"} {
		if !strings.Contains(help, flag) {
			t.Errorf("--help lacks %s", flag)
		}
	}
}

// TestSidecarStorageConfig: the storage service's settings round-trip
// through app.toml; its key, read from an emrcli keyring as the emergency
// service's is, reaches the sidecar's Options as its signer; the flags
// override the settings (an empty --storage-key turns it off); and a
// replica_interval of 0s disables the passes.
func TestSidecarStorageConfig(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o700); err != nil {
		t.Fatal(err)
	}
	keysHome, key := emergencyKeyring(t, keyring.BackendTest, "")
	want := defaultSidecarConfig()
	want.StorageKey, want.StorageKeyringHome, want.StorageKeyringBackend = "er", keysHome, keyring.BackendTest
	want.StoragePassphraseFile, want.ReplicaInterval, want.ReplicaBytesPerSecond = "storage/passphrase", 0, 1<<20
	want.Peers = []string{"http://127.0.0.1:7071"}
	got := sidecarConfigRoundTrip(t, home, want)
	if err := got.resolve(home); err != nil {
		t.Fatal(err)
	}
	if err := got.loadServiceKeys(log.NewNopLogger()); err != nil {
		t.Fatal(err)
	}
	o := got.options()
	if o.Storage == nil || !bytes.Equal(o.Storage.Address(), key.Address()) || o.Emergency != nil ||
		o.ReplicaInterval >= 0 || o.ReplicaBytesPerSecond != 1<<20 {
		t.Fatalf("options: storage %v, emergency %v, replica interval %v, %d B/s", o.Storage, o.Emergency, o.ReplicaInterval, o.ReplicaBytesPerSecond)
	}

	for _, c := range []struct {
		args []string
		key  string
	}{
		{[]string{"--storage-key", "st2", "--storage-keyring-home", "keys", "--storage-passphrase-file", "pass"}, "st2"},
		{[]string{"--storage-key", ""}, ""},
	} {
		cmd := newSidecarCmd()
		if err := cmd.ParseFlags(append([]string{"--home", home}, c.args...)); err != nil {
			t.Fatal(err)
		}
		got, err := sidecarFromFlags(cmd, home)
		if err != nil {
			t.Fatal(err)
		}
		wd, _ := os.Getwd()
		if got.StorageKey != c.key || (c.key != "" && (got.StorageKeyringHome != filepath.Join(wd, "keys") || got.StoragePassphraseFile != filepath.Join(wd, "pass"))) {
			t.Fatalf("flags %v: %+v", c.args, got)
		}
	}
	bad := defaultSidecarConfig()
	bad.StorageKey, bad.StorageKeyringBackend, bad.StorageKeyringHome, bad.Peers = "st", "os", keysHome, want.Peers
	if err := bad.resolve(home); err == nil || !strings.HasPrefix(err.Error(), "sidecar: storage_keyring_backend") {
		t.Fatalf("a bad backend: %v", err)
	}
}

// TestServiceKeysRefused: a storage key without peers would copy nothing,
// and one sidecar holding both the emergency key (which opens opted-in
// patients' keys) and a storage key (a copy of every blob) is refused.
func TestServiceKeysRefused(t *testing.T) {
	nodeHome := t.TempDir()
	erHome, _ := emergencyKeyring(t, keyring.BackendTest, "")
	stHome, _ := emergencyKeyring(t, keyring.BackendTest, "")
	noPeers := defaultSidecarConfig()
	noPeers.StorageKey, noPeers.StorageKeyringHome, noPeers.StorageKeyringBackend = "er", stHome, keyring.BackendTest
	if err := noPeers.resolve(nodeHome); err == nil || !strings.Contains(err.Error(), "peers is empty") {
		t.Fatalf("a storage key without peers: %v", err)
	}
	both := noPeers
	both.Peers = []string{"http://127.0.0.1:1"}
	both.EmergencyKey, both.EmergencyKeyringHome, both.EmergencyKeyringBackend = "er", erHome, keyring.BackendTest
	if err := both.resolve(nodeHome); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("an emergency and a storage key on one sidecar: %v", err)
	}
}
