package keyring

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/emrchain/emrchain/app"
)

// DevKey is the development key file `emrchaind init` writes to
// HOME/dev-keys/NAME.json (unencrypted; see emrchaind init --help).
type DevKey struct {
	Name           string `json:"name"`
	Address        string `json:"address"`
	SignPrivKey    []byte `json:"sign_priv_key"`
	SignPubKey     []byte `json:"sign_pub_key"`
	EncPrivKey     []byte `json:"enc_priv_key"`
	EncPubKey      []byte `json:"enc_pub_key"`
	Role           string `json:"role"`
	OrganizationID string `json:"organization_id"`
}

// ParseDevKey parses and checks a dev key file: the public keys and the
// address must match the private keys.
func ParseDevKey(raw []byte) (*DevKey, error) {
	var d DevKey
	if err := decodeJSONStrict(raw, &d); err != nil {
		return nil, fmt.Errorf("dev key file: %w", err)
	}
	k, err := FromKeys("dev", d.SignPrivKey, d.EncPrivKey, nil)
	if err != nil {
		return nil, fmt.Errorf("dev key file: %w", err)
	}
	if !bytes.Equal(k.PubKey(), d.SignPubKey) || !bytes.Equal(k.EncPubKey(), d.EncPubKey) {
		return nil, fmt.Errorf("dev key file: public keys do not match the private keys")
	}
	if !strings.EqualFold(hex.EncodeToString(app.AddressOf(d.SignPubKey)), d.Address) {
		return nil, fmt.Errorf("dev key file: address %s does not match the signing key", d.Address)
	}
	return &d, nil
}

// ImportDev stores a dev key file's keys as name ("" = the file's name),
// with a fresh patient secret.
func (kr *Keyring) ImportDev(name string, raw []byte) (*Key, *DevKey, error) {
	d, err := ParseDevKey(raw)
	if err != nil {
		return nil, nil, err
	}
	if name == "" {
		name = d.Name
	}
	k, err := FromKeys(name, d.SignPrivKey, d.EncPrivKey, nil)
	if err != nil {
		return nil, nil, err
	}
	return k, d, kr.Create(k)
}
