package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"strings"
	"testing"

	cmtjson "github.com/cometbft/cometbft/libs/json"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	cmttypes "github.com/cometbft/cometbft/types"
)

// TestShow: show node-id is the id peers allow, and show validator is the
// node's entry of the genesis init wrote, as a genesis holds it; neither
// prints a private key.
func TestShow(t *testing.T) {
	home := t.TempDir()
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-dev", "--moniker", "st-mary"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	conf, err := loadCometConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	nodeKey, err := p2p.LoadNodeKey(conf.NodeKeyFile())
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "show", "node-id", "--home", home)
	if err != nil || strings.TrimSpace(out) != string(nodeKey.ID()) {
		t.Fatalf("show node-id: %q, %v; want %s", out, err, nodeKey.ID())
	}
	out, err = run(t, "show", "validator", "--home", home)
	if err != nil {
		t.Fatalf("show validator: %v\n%s", err, out)
	}
	var got cmttypes.GenesisValidator
	if err := cmtjson.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("show validator: %v\n%s", err, out)
	}
	// Nothing of the private key: its base64 is not in the output.
	pv := new(privval.FilePVKey)
	if err := readKeyFile("validator key", conf.PrivValidatorKeyFile(), pv); err != nil {
		t.Fatal(err)
	}
	if priv := base64.StdEncoding.EncodeToString(pv.PrivKey.Bytes()); strings.Contains(out, priv) || strings.Contains(out, priv[:20]) {
		t.Fatalf("show validator prints the private key:\n%s", out)
	}
	doc, _ := readGenesis(t, home)
	want := doc.Validators[0]
	if !bytes.Equal(got.PubKey.Bytes(), want.PubKey.Bytes()) || !bytes.Equal(got.Address, want.Address) || got.Power != want.Power || got.Name != "st-mary" {
		t.Fatalf("show validator: %+v, want the genesis entry %+v", got, want)
	}
	if out, err := run(t, "show", "node-id", "--home", t.TempDir()); err == nil || !strings.Contains(out+err.Error(), "not initialized") {
		t.Fatalf("show node-id of an empty home: %v\n%s", err, out)
	}
	// A remote signer's key is not in the home.
	path := conf.RootDir + "/config/config.toml"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.Replace(raw, []byte(`priv_validator_laddr = ""`), []byte(`priv_validator_laddr = "tcp://127.0.0.1:26659"`), 1)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "show", "validator", "--home", home); err == nil || !strings.Contains(err.Error(), "remote signer") {
		t.Fatalf("show validator with a remote signer: %v\n%s", err, out)
	}
}
