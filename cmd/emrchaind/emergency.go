package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cometbft/cometbft/libs/log"
	"github.com/spf13/cobra"

	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/offchain/sidecar"
)

// envEmergencyPassphrase holds the passphrase of the emergency service's
// key when no emergency_passphrase_file is set.
const envEmergencyPassphrase = "EMRCHAIND_EMERGENCY_PASSPHRASE"

// defaultEmergencyKeyringBackend is the backend of the emergency service's
// keyring unless app.toml says otherwise.
const defaultEmergencyKeyringBackend = keyring.BackendFile

// emergencyCheckTimeout bounds the start-up check of the emergency
// service's key against the chain.
const emergencyCheckTimeout = 30 * time.Second

// resolveEmergency checks the emergency service's settings, with
// relative paths rooted at home (nothing to check without emergency_key).
func (c *sidecarConfig) resolveEmergency(home string) error {
	if c.EmergencyKey == "" {
		return nil
	}
	if err := keyring.CheckName(c.EmergencyKey); err != nil {
		return fmt.Errorf("sidecar: emergency_key: %w", err)
	}
	switch c.EmergencyKeyringBackend {
	case keyring.BackendFile, keyring.BackendTest:
	default:
		return fmt.Errorf("sidecar: emergency_keyring_backend %q: want %q or %q", c.EmergencyKeyringBackend, keyring.BackendFile, keyring.BackendTest)
	}
	if c.EmergencyKeyringHome == "" {
		return errors.New("sidecar: emergency_key needs emergency_keyring_home, the emrcli home whose keyring holds it")
	}
	c.EmergencyKeyringHome = underHome(home, c.EmergencyKeyringHome, "")
	if c.EmergencyPassphraseFile != "" {
		c.EmergencyPassphraseFile = underHome(home, c.EmergencyPassphraseFile, "")
	}
	return nil
}

// loadEmergency loads the emergency service's key from its keyring (none
// without emergency_key): its member address and X25519 key become the
// sidecar's Options.Emergency. It never creates the keyring, and asks for
// no passphrase on a terminal: a "file" key's comes from
// emergency_passphrase_file, else from EMRCHAIND_EMERGENCY_PASSPHRASE.
func (c *sidecarConfig) loadEmergency(logger log.Logger) error {
	if c.EmergencyKey == "" {
		return nil
	}
	dir := filepath.Join(c.EmergencyKeyringHome, "keyring-"+c.EmergencyKeyringBackend)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("sidecar: the emergency service's keyring: %w", err)
	}
	kr, err := keyring.Open(c.EmergencyKeyringBackend, c.EmergencyKeyringHome, c.emergencyPassphrase)
	if err != nil {
		return fmt.Errorf("sidecar: the emergency service's keyring: %w", err)
	}
	k, err := kr.Get(c.EmergencyKey)
	if err != nil {
		return fmt.Errorf("sidecar: emergency key %q of %s: %w", c.EmergencyKey, dir, err)
	}
	if c.EmergencyKeyringBackend == keyring.BackendTest {
		logger.Error("the emergency service's key is in an UNENCRYPTED (test) keyring: use a file keyring outside tests", "keyring", dir)
	}
	c.emergency = &sidecar.EmergencyService{Address: k.Address(), Key: k.EncPrivKey()}
	return nil
}

// emergencyPassphrase answers the keyring: the first line of
// emergency_passphrase_file, or EMRCHAIND_EMERGENCY_PASSPHRASE.
func (c *sidecarConfig) emergencyPassphrase(_ keyring.Purpose, name string) ([]byte, error) {
	if c.EmergencyPassphraseFile == "" {
		if v := os.Getenv(envEmergencyPassphrase); v != "" {
			return []byte(v), nil
		}
		return nil, fmt.Errorf("key %q is encrypted: set emergency_passphrase_file (--emergency-passphrase-file) or %s", name, envEmergencyPassphrase)
	}
	raw, err := os.ReadFile(c.EmergencyPassphraseFile)
	if err != nil {
		return nil, fmt.Errorf("emergency_passphrase_file: %w", err)
	}
	defer clear(raw)
	line, _, _ := bytes.Cut(raw, []byte("\n"))
	return bytes.Clone(bytes.TrimSuffix(line, []byte("\r"))), nil
}

// checkEmergencyService logs whether the chain has the sidecar's emergency
// key as its service's (sidecar.Server.CheckEmergencyService): a wrong key
// releases nothing, and the operator should know before a clinician needs
// it. It does not stop the sidecar: the service may be registered, or its
// key rotated, after the sidecar starts.
func checkEmergencyService(ctx context.Context, srv *sidecar.Server, c sidecarConfig, logger log.Logger) {
	if c.emergency == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, emergencyCheckTimeout)
	defer cancel()
	if err := srv.CheckEmergencyService(ctx); err != nil {
		logger.Error("the emergency service cannot release data keys until this is fixed", "service", fmt.Sprintf("%X", c.emergency.Address), "err", err)
		return
	}
	logger.Info("emergency service ready: releasing data keys against committed emergency reads", "service", fmt.Sprintf("%X", c.emergency.Address))
}

// addEmergencyFlags gives the sidecar command the emergency service's
// flags.
func addEmergencyFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("emergency-key", "", "act as the organization's emergency (break-glass) service whose key has this name in an emrcli keyring (default: app.toml emergency_key; empty: not an emergency service)")
	f.String("emergency-keyring-home", "", "emrcli home holding that keyring (default: app.toml emergency_keyring_home)")
	f.String("emergency-keyring-backend", "", `backend of that keyring: "file" (encrypted) or "test" (UNENCRYPTED) (default: app.toml, else file)`)
	f.String("emergency-passphrase-file", "", "file whose first line is the passphrase of a file-backend emergency key (default: app.toml, else "+envEmergencyPassphrase+")")
}

// emergencyFlags are the flags of addEmergencyFlags and the settings they
// override.
func (c *sidecarConfig) emergencyFlags() map[string]*string {
	return map[string]*string{
		"emergency-key": &c.EmergencyKey, "emergency-keyring-home": &c.EmergencyKeyringHome,
		"emergency-keyring-backend": &c.EmergencyKeyringBackend, "emergency-passphrase-file": &c.EmergencyPassphraseFile,
	}
}
