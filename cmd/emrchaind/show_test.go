package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cmtcfg "github.com/cometbft/cometbft/config"
	cmtjson "github.com/cometbft/cometbft/libs/json"
	"github.com/cometbft/cometbft/p2p"
	"github.com/cometbft/cometbft/privval"
	cmttypes "github.com/cometbft/cometbft/types"

	"github.com/emrchain/emrchain/app"
)

// initShowHome is a home init wrote for chain emr-dev, and its config.
func initShowHome(t *testing.T) (string, *cmtcfg.Config) {
	t.Helper()
	home := t.TempDir()
	if out, err := run(t, "init", "--home", home, "--chain-id", "emr-dev", "--moniker", "st-mary"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	conf, err := loadCometConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	return home, conf
}

// TestShow: show node-id is the id peers allow, and show validator is the
// node's entry of the genesis init wrote, as a genesis holds it; neither
// prints a private key.
func TestShow(t *testing.T) {
	home, conf := initShowHome(t)
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
	useRemoteSigner(t, conf.RootDir)
	if out, err := run(t, "show", "validator", "--home", home); err == nil || !strings.Contains(err.Error(), "remote signer") {
		t.Fatalf("show validator with a remote signer: %v\n%s", err, out)
	}
}

// TestShowPossession: show validator --possession prints the node's
// consensus key's proof of possession for the chain of its genesis and
// change count 0 (a key never a validator), or --changes N, which the
// chain accepts for that key and count (app.VerifyValidatorPossession)
// and for no other chain or count; --json prints it with the chain id,
// the key and the count. The private key is printed nowhere.
func TestShowPossession(t *testing.T) {
	home, conf := initShowHome(t)
	pv := new(privval.FilePVKey)
	if err := readKeyFile("validator key", conf.PrivValidatorKeyFile(), pv); err != nil {
		t.Fatal(err)
	}
	pub := pv.PubKey.Bytes()
	priv := base64.StdEncoding.EncodeToString(pv.PrivKey.Bytes())
	showOut := func(args ...string) (stdout, stderr string) {
		t.Helper()
		cmd := newRootCmd()
		var out, errOut bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		cmd.SetArgs(append([]string{"show", "validator", "--home", home}, args...))
		if err := cmd.Execute(); err != nil {
			t.Fatalf("show validator %v: %v\n%s%s", args, err, out.String(), errOut.String())
		}
		if all := out.String() + errOut.String(); strings.Contains(all, priv[:20]) {
			t.Fatalf("show validator %v prints the private key:\n%s", args, all)
		}
		return out.String(), errOut.String()
	}

	out, note := showOut("--possession")
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil || len(sig) != 64 {
		t.Fatalf("show validator --possession: %q (%v), want one base64 signature", out, err)
	}
	if !app.VerifyValidatorPossession("emr-dev", pub, 0, sig) {
		t.Fatalf("the possession %q does not verify for the node's key on emr-dev at change count 0", out)
	}
	if app.VerifyValidatorPossession("emr-other", pub, 0, sig) {
		t.Fatal("the possession verifies for another chain")
	}
	if app.VerifyValidatorPossession("emr-dev", pub, 2, sig) {
		t.Fatal("the possession for change count 0 verifies for count 2")
	}
	if !strings.Contains(note, app.ValidatorKeyText(pub)) || !strings.Contains(note, `"emr-dev" at change count 0`) {
		t.Fatalf("stderr %q does not name the key, the chain and the count", note)
	}

	// --changes: the possession for re-adding a key after its changes.
	out, note = showOut("--possession", "--changes", "2")
	sig2, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil || !app.VerifyValidatorPossession("emr-dev", pub, 2, sig2) || app.VerifyValidatorPossession("emr-dev", pub, 0, sig2) {
		t.Fatalf("show validator --possession --changes 2: %q (%v) is not the key's possession for count 2 only", out, err)
	}
	if !strings.Contains(note, "at change count 2") {
		t.Fatalf("stderr %q does not name the count", note)
	}
	if out, err := run(t, "show", "validator", "--changes", "2", "--home", home); err == nil || !strings.Contains(err.Error(), "--changes is the change count of --possession") {
		t.Fatalf("show validator --changes without --possession: %v\n%s", err, out)
	}

	out, _ = showOut("--possession", "--json")
	var got map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("show validator --possession --json: %v\n%s", err, out)
	}
	want := map[string]any{"chain_id": "emr-dev", "pub_key": app.ValidatorKeyText(pub), "changes": float64(0), "possession": base64.StdEncoding.EncodeToString(sig)}
	if !maps.Equal(got, want) {
		t.Fatalf("show validator --possession --json: %v, want %v", got, want)
	}
	out, _ = showOut("--possession", "--json", "--changes", "2")
	if err := json.Unmarshal([]byte(out), &got); err != nil || got["changes"] != float64(2) || got["possession"] != base64.StdEncoding.EncodeToString(sig2) {
		t.Fatalf("show validator --possession --json --changes 2: %v\n%s", err, out)
	}

	// Without --possession: the genesis entry, as before.
	out, _ = showOut()
	if strings.Contains(out, want["possession"].(string)) {
		t.Fatalf("show validator prints the possession without --possession:\n%s", out)
	}

	// A remote signer's key is not in the home: nothing to sign with.
	useRemoteSigner(t, home)
	if out, err := run(t, "show", "validator", "--possession", "--home", home); err == nil || !strings.Contains(err.Error(), "only the signer can make") {
		t.Fatalf("show validator --possession with a remote signer: %v\n%s", err, out)
	}
}

// useRemoteSigner makes the node of home sign through a remote signer
// (config.toml's priv_validator_laddr): its key is not in the home.
func useRemoteSigner(t *testing.T, home string) {
	t.Helper()
	path := filepath.Join(home, "config", "config.toml")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.Replace(raw, []byte(`priv_validator_laddr = ""`), []byte(`priv_validator_laddr = "tcp://127.0.0.1:26659"`), 1)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}
