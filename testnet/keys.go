package testnet

import (
	"crypto/ecdh"
	"encoding/json"
	"fmt"
	"os"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app/apptest"
)

// keyFile is the development key file format of emrchaind (see
// `emrchaind init --help`); only the fields the harness needs.
type keyFile struct {
	Name        string `json:"name"`
	Address     string `json:"address"`
	SignPrivKey []byte `json:"sign_priv_key"`
	EncPrivKey  []byte `json:"enc_priv_key"`
}

// LoadKey reads a development key file as an apptest actor, so the
// testnet's registrars sign like any other test actor.
func LoadKey(path string) (*apptest.Actor, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var k keyFile
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(k.SignPrivKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%s: sign_priv_key has %d bytes, want %d", path, len(k.SignPrivKey), ed25519.PrivateKeySize)
	}
	sign := ed25519.PrivKey(k.SignPrivKey)
	enc, err := ecdh.X25519().NewPrivateKey(k.EncPrivKey)
	if err != nil {
		return nil, fmt.Errorf("%s: enc_priv_key: %w", path, err)
	}
	a := &apptest.Actor{Name: k.Name, Sign: sign, Enc: enc, Address: sign.PubKey().Address()}
	if got := fmt.Sprintf("%x", a.Address); got != k.Address {
		return nil, fmt.Errorf("%s: address %s does not match the key (%s)", path, k.Address, got)
	}
	return a, nil
}
