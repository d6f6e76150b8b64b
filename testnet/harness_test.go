package testnet

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cometbft/cometbft/crypto/ed25519"
	"github.com/cometbft/cometbft/mempool"

	"github.com/emrchain/emrchain/internal/freeport"
)

// The harness's own pieces, without a testnet (these run under -short).

func TestInvalidTxError(t *testing.T) {
	err := fmt.Errorf("RPC error -32603 - Internal error: broadcast error on transaction validation: %w",
		mempool.ErrInvalidTx{Code: 13, Log: "no permission: it's 'quoted', over\ntwo lines", Codespace: "emrchain", Hash: []byte{1, 2}})
	m := invalidTxRE.FindStringSubmatch(err.Error())
	if m == nil || m[1] != "13" || m[2] != "no permission: it's 'quoted', over\ntwo lines" {
		t.Fatalf("parsed %q from %q", m, err)
	}
	if invalidTxRE.MatchString(errors.New("tx already exists in cache").Error()) {
		t.Fatal("a cache hit parsed as a refusal")
	}
}

func TestLoadKey(t *testing.T) {
	sign := ed25519.GenPrivKey()
	enc, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	write := func(addr string) string {
		raw, _ := json.Marshal(map[string]any{
			"name": "registrar-x", "address": addr, "sign_priv_key": sign.Bytes(), "sign_pub_key": sign.PubKey().Bytes(),
			"enc_priv_key": enc.Bytes(), "enc_pub_key": enc.PublicKey().Bytes(), "role": "registrar", "organization_id": "x",
		})
		p := filepath.Join(t.TempDir(), "k.json")
		if err := os.WriteFile(p, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, err := LoadKey(write(hex.EncodeToString(sign.PubKey().Address())))
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "registrar-x" || string(a.SignPub()) != string(sign.PubKey().Bytes()) || string(a.EncPub()) != string(enc.PublicKey().Bytes()) {
		t.Fatalf("loaded actor %+v does not hold the file's keys", a)
	}
	if _, err := LoadKey(write("00")); err == nil {
		t.Fatal("a key file whose address does not match its key was loaded")
	}
}

func TestFreeBasePort(t *testing.T) {
	// A joiner's block, as a testnet's: Isolate finds a node's spare port
	// from the block's start, a multiple of portStride.
	base, err := FreePorts()
	if err != nil {
		t.Fatal(err)
	}
	if base < freeport.Low || base+portStride > freeport.High || base%portStride != 0 {
		t.Fatalf("base port %d outside [%d, %d) or not a multiple of %d", base, freeport.Low, freeport.High, portStride)
	}
}
