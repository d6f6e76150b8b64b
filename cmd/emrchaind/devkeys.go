package main

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/client/keyring"
	"github.com/emrchain/emrchain/internal/durable"
	emrchainv1 "github.com/emrchain/emrchain/proto/emrchain/v1"
)

// devKeysDir is where init writes development member keys, under HOME.
const devKeysDir = "dev-keys"

// devKeyFormatHelp documents the dev key file for --help; emrcli reads it.
const devKeyFormatHelp = `Development key files (HOME/dev-keys/NAME.json, mode 0600) are JSON:

  {
    "name":            "registrar",
    "address":         "<40 hex chars: first 20 bytes of SHA-256(sign_pub_key)>",
    "sign_priv_key":   "<base64, 64 bytes: ed25519 private key, seed || public key>",
    "sign_pub_key":    "<base64, 32 bytes: ed25519 public key>",
    "enc_priv_key":    "<base64, 32 bytes: X25519 private key (crypto/ecdh)>",
    "enc_pub_key":     "<base64, 32 bytes: X25519 public key>",
    "role":            "registrar",
    "organization_id": "dev-hospital"
  }

role is the member's role as the chain names it, without "ROLE_" and in
lower case; init and testnet write registrars' keys only. The keys
are generated on this machine and written in the clear: they are for
development and testing, never for a production consortium.`

// devKey is the dev key file format (see devKeyFormatHelp): emrcli's
// keyring.DevKey, which it reads, with what init and testnet do with one.
type devKey struct{ keyring.DevKey }

// keyNameRE keeps key names usable as file names on every platform.
var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// newDevKey generates a signing and an encryption key pair for a member.
func newDevKey(name string, role emrchainv1.Role, orgID string) (*devKey, error) {
	if !keyNameRE.MatchString(name) {
		return nil, fmt.Errorf("key name %q: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	sign := ed25519.GenPrivKey()
	enc, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate X25519 key: %w", err)
	}
	pub := sign.PubKey().Bytes()
	return &devKey{keyring.DevKey{
		Name:           name,
		Address:        hex.EncodeToString(app.AddressOf(pub)),
		SignPrivKey:    sign.Bytes(),
		SignPubKey:     pub,
		EncPrivKey:     enc.Bytes(),
		EncPubKey:      enc.PublicKey().Bytes(),
		Role:           roleName(role),
		OrganizationID: orgID,
	}}, nil
}

// genesisMember is the key's entry in GenesisState.members.
func (k *devKey) genesisMember(role emrchainv1.Role) *emrchainv1.GenesisMember {
	return &emrchainv1.GenesisMember{
		SignPubKey:     k.SignPubKey,
		EncPubKey:      k.EncPubKey,
		Role:           role,
		OrganizationId: k.OrganizationID,
		CredentialRef:  "dev-key:" + k.Name,
	}
}

// path is the key's file under home.
func (k *devKey) path(home string) string {
	return filepath.Join(home, devKeysDir, k.Name+".json")
}

// write saves the key file under home with mode 0600, refusing to overwrite
// one.
func (k *devKey) write(home string) error {
	return writeKeyFile(filepath.Join(home, devKeysDir), k)
}

// writeKeyFile writes k as dir/NAME.json (mode 0600), refusing to overwrite.
func writeKeyFile(dir string, k *devKey) error {
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return err
	}
	return durable.CreateFile(filepath.Join(dir, k.Name+".json"), append(b, '\n'), 0o600)
}

// roleName is the short lowercase name of a role ("registrar").
func roleName(r emrchainv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}
