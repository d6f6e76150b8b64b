package testnet

import (
	"crypto/ecdh"
	"fmt"
	"os"

	"github.com/cometbft/cometbft/crypto/ed25519"

	"github.com/emrchain/emrchain/app/apptest"
	"github.com/emrchain/emrchain/client/keyring"
)

// LoadKey reads a development key file (see `emrchaind init --help`) as an
// apptest actor, so the testnet's registrars sign like any other test actor.
// The file is checked as emrcli checks it (keyring.ParseDevKey).
func LoadKey(path string) (*apptest.Actor, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := keyring.ParseDevKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sign := ed25519.PrivKey(k.SignPrivKey)
	enc, err := ecdh.X25519().NewPrivateKey(k.EncPrivKey)
	if err != nil {
		return nil, fmt.Errorf("%s: enc_priv_key: %w", path, err)
	}
	return &apptest.Actor{Name: k.Name, Sign: sign, Enc: enc, Address: sign.PubKey().Address()}, nil
}
