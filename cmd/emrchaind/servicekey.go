package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/cometbft/cometbft/libs/log"
	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/internal/fileowner"
	"github.com/emrchain/emrchain/offchain/sidecar"
)

// defaultServiceKeyringBackend is the backend of a service's keyring unless
// app.toml says otherwise.
const defaultServiceKeyringBackend = keyring.BackendFile

// serviceKey is a member key the sidecar acts as, held in an emrcli
// keyring: the emergency service's (emergency_*, emergency.go) or the
// storage service's (storage_*). Its fields point into sidecarConfig.
type serviceKey struct {
	prefix string // of the settings and flags: "emergency"
	what   string // for messages: "emergency service"
	env    string // the passphrase's environment variable

	name, home, backend, passFile *string
}

// envEmergencyPassphrase and envStoragePassphrase hold the passphrase of
// a service's key when no *_passphrase_file is set.
const (
	envEmergencyPassphrase = "EMRCHAIND_EMERGENCY_PASSPHRASE"
	envStoragePassphrase   = "EMRCHAIND_STORAGE_PASSPHRASE"
)

func (c *sidecarConfig) emergencyKey() serviceKey {
	return serviceKey{prefix: "emergency", what: "emergency service", env: envEmergencyPassphrase,
		name: &c.EmergencyKey, home: &c.EmergencyKeyringHome, backend: &c.EmergencyKeyringBackend, passFile: &c.EmergencyPassphraseFile}
}

func (c *sidecarConfig) storageKey() serviceKey {
	return serviceKey{prefix: "storage", what: "storage service", env: envStoragePassphrase,
		name: &c.StorageKey, home: &c.StorageKeyringHome, backend: &c.StorageKeyringBackend, passFile: &c.StoragePassphraseFile}
}

// resolve checks the settings, with relative paths rooted at home
// (nothing to check without a key name).
func (k serviceKey) resolve(home string) error {
	if *k.name == "" {
		return nil
	}
	if err := keyring.CheckName(*k.name); err != nil {
		return fmt.Errorf("sidecar: %s_key: %w", k.prefix, err)
	}
	switch *k.backend {
	case keyring.BackendFile, keyring.BackendTest:
	default:
		return fmt.Errorf("sidecar: %s_keyring_backend %q: want %q or %q", k.prefix, *k.backend, keyring.BackendFile, keyring.BackendTest)
	}
	if *k.home == "" {
		return fmt.Errorf("sidecar: %s_key needs %s_keyring_home, the emrcli home whose keyring holds it", k.prefix, k.prefix)
	}
	*k.home = underHome(home, *k.home, "")
	if *k.passFile != "" {
		*k.passFile = underHome(home, *k.passFile, "")
	}
	return nil
}

// load reads the key from its keyring (nil without a key name). It never
// creates the keyring, and asks for no passphrase on a terminal: a "file"
// key's comes from *_passphrase_file, else from the environment.
func (k serviceKey) load(logger log.Logger) (*keyring.Key, error) {
	if *k.name == "" {
		return nil, nil
	}
	dir := filepath.Join(*k.home, "keyring-"+*k.backend)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("sidecar: the %s's keyring: %w", k.what, err)
	}
	kr, err := keyring.Open(*k.backend, *k.home, k.passphrase)
	if err != nil {
		return nil, fmt.Errorf("sidecar: the %s's keyring: %w", k.what, err)
	}
	key, err := kr.Get(*k.name)
	if err != nil {
		return nil, fmt.Errorf("sidecar: %s key %q of %s: %w", k.prefix, *k.name, dir, err)
	}
	if *k.backend == keyring.BackendTest {
		logger.Error("the "+k.what+"'s key is in an UNENCRYPTED (test) keyring: use a file keyring outside tests", "keyring", dir)
	}
	return key, nil
}

// passphrase answers the keyring: the first line of *_passphrase_file, or
// the environment variable.
func (k serviceKey) passphrase(_ keyring.Purpose, name string) ([]byte, error) {
	if *k.passFile == "" {
		if v := os.Getenv(k.env); v != "" {
			return []byte(v), nil
		}
		return nil, fmt.Errorf("key %q is encrypted: set %s_passphrase_file (--%s-passphrase-file) or %s", name, k.prefix, k.prefix, k.env)
	}
	raw, err := readPassphraseFile(*k.passFile)
	if err != nil {
		return nil, fmt.Errorf("%s_passphrase_file: %w", k.prefix, err)
	}
	defer clear(raw)
	line, _, _ := bytes.Cut(raw, []byte("\n"))
	return bytes.Clone(bytes.TrimSuffix(line, []byte("\r"))), nil
}

// maxPassphraseFile bounds what is read of a passphrase file.
const maxPassphraseFile = 4 << 10

// readPassphraseFile reads a passphrase file that only its owner may read
// or write (privateFile): a regular file of at most maxPassphraseFile
// bytes. The passphrase unlocks a service key that opens every opted-in
// patient's key, and "echo ... > file" under the usual umask makes the
// file readable by every local user. It is opened without blocking (a
// FIFO put in its place would otherwise hold the sidecar's start until
// someone writes to it), and every check is made on the open file.
func readPassphraseFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	switch {
	case !info.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, info.Mode().Type())
	case info.Size() > maxPassphraseFile:
		return nil, fmt.Errorf("%s has %d bytes; a passphrase file holds at most %d", path, info.Size(), maxPassphraseFile)
	}
	if err := privateFile(path, info); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxPassphraseFile+1))
	if err == nil && len(raw) > maxPassphraseFile {
		err = fmt.Errorf("%s grew past %d bytes while it was read", path, maxPassphraseFile)
	}
	if err != nil {
		clear(raw)
		return nil, err
	}
	return raw, nil
}

// privateFile returns nil when the file info describes (at path) is
// private enough to hold a secret, by PostgreSQL's rule for its key
// files: owned by this process's user, no access for group or others
// (0600, 0400); owned by root, group read at most (0640, 0440: a
// Kubernetes Secret mounted with an fsGroup, which cannot be made 0400).
// Where the owner is not known (Windows) the mode says nothing and is not
// checked.
func privateFile(path string, info os.FileInfo) error {
	uid, _, known := fileowner.Of(info)
	if !known {
		return nil
	}
	perm := info.Mode().Perm()
	switch me := os.Geteuid(); {
	case uid == me && perm&0o077 == 0:
		return nil
	case uid == 0 && perm&0o037 == 0:
		return nil
	case uid != me && uid != 0:
		return fmt.Errorf("%s is owned by user %d, neither this process's user (%d) nor root: that user may read or change it", path, uid, me)
	}
	return fmt.Errorf("%s has mode %04o, so other users may read or change it: chmod 600 %s (owned by root, 0640 will do)", path, perm, path)
}

// addFlags gives the sidecar command the key's flags; role says what the
// key makes the sidecar.
func (k serviceKey) addFlags(cmd *cobra.Command, role string) {
	f := cmd.Flags()
	f.String(k.prefix+"-key", "", role+" whose key has this name in an emrcli keyring (default: app.toml "+k.prefix+"_key; empty: not the "+k.what+")")
	f.String(k.prefix+"-keyring-home", "", "emrcli home holding that keyring (default: app.toml "+k.prefix+"_keyring_home)")
	f.String(k.prefix+"-keyring-backend", "", `backend of that keyring: "file" (encrypted) or "test" (UNENCRYPTED) (default: app.toml, else file)`)
	f.String(k.prefix+"-passphrase-file", "", "file whose first line is the passphrase of a file-backend "+k.prefix+" key, readable by its owner only (chmod 600) (default: app.toml, else "+k.env+")")
}

// flags are the flags of addFlags and the settings they override; paths
// are those of them that are paths.
func (k serviceKey) flags() (all map[string]*string, paths []string) {
	return map[string]*string{
		k.prefix + "-key": k.name, k.prefix + "-keyring-home": k.home,
		k.prefix + "-keyring-backend": k.backend, k.prefix + "-passphrase-file": k.passFile,
	}, []string{k.prefix + "-keyring-home", k.prefix + "-passphrase-file"}
}

// resolveServiceKeys checks both services' settings. A sidecar is not
// both services: one process would hold the key that opens opted-in
// patients' keys and a copy of every blob. A storage service copies from
// the peers, so it needs some.
func (c *sidecarConfig) resolveServiceKeys(home string) error {
	switch {
	case c.EmergencyKey != "" && c.StorageKey != "":
		return errors.New(`sidecar: emergency_key and storage_key are both set: a sidecar is its organization's emergency service or its storage service, not both (one process would hold the key that opens opted-in patients' keys and a copy of every blob); run the emergency service as a sidecar of its own (emrchaind sidecar --emergency-key NAME --storage-key "")`)
	case c.StorageKey != "" && len(c.Peers) == 0:
		return errors.New("sidecar: storage_key is set but peers is empty: a storage service copies every committed blob from the other hospitals' sidecars, which peers lists")
	}
	return errors.Join(c.emergencyKey().resolve(home), c.storageKey().resolve(home))
}

// loadServiceKeys loads the keys the sidecar acts as: the emergency
// service's member address and X25519 key become Options.Emergency, the
// storage service's key (its signing key, and the X25519 key the peers
// seal replicas to) Options.Storage.
func (c *sidecarConfig) loadServiceKeys(logger log.Logger) error {
	k, err := c.emergencyKey().load(logger)
	if err != nil {
		return err
	}
	if k != nil {
		c.emergency = &sidecar.EmergencyService{Signer: k, Key: k.EncPrivKey()}
	}
	if k, err = c.storageKey().load(logger); err != nil {
		return err
	}
	if k != nil {
		c.storage = k
	}
	return nil
}
