package app_test

import (
	"bytes"
	"testing"

	"github.com/emrchain/emrchain/app"
	"github.com/emrchain/emrchain/app/apptest"
)

// TestValidatorPossession: a proposal adding a validator carries the
// key's proof of possession, a signature by that key over this chain's id
// and the key; a change of an existing validator's power needs none, but
// one given must verify. CheckTx and FinalizeBlock answer alike.
func TestValidatorPossession(t *testing.T) {
	w := newRuleWorld(t, apptest.Options{})
	c := w.c
	y, z := apptest.NewActor("validator-y"), apptest.NewActor("validator-z")
	v0, v3 := apptest.Validator(0), apptest.Validator(3)
	const what = "emrchaind show validator --possession"
	signedBy := func(signer *apptest.Actor, chainID string, key []byte) []byte {
		sig, err := signer.Sign.Sign(app.ValidatorPossessionSignBytes(chainID, key))
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	cases := []ruleCase{
		{"addition with its possession", w.regA, apptest.AddValidator(y, 5), nil, nil},
		{"addition without a possession", w.regA, apptest.SetValidatorPower(y.SignPub(), 5), app.ErrInvalidMsg,
			[]string{app.ValidatorKeyText(y.SignPub()) + " is not a validator", "needs its proof of possession", what}},
		{"addition with another key's possession", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, z.Possession(apptest.ChainID)), app.ErrInvalidMsg,
			[]string{"is not a signature by validator key " + app.ValidatorKeyText(y.SignPub()), what}},
		{"addition with another key's signature over this key", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, signedBy(z, apptest.ChainID, y.SignPub())), app.ErrInvalidMsg,
			[]string{"is not a signature by validator key", what}},
		{"addition with its possession for another key", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, signedBy(y, apptest.ChainID, z.SignPub())), app.ErrInvalidMsg,
			[]string{"is not a signature by validator key", what}},
		{"addition with its possession for another chain", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, y.Possession("emrchain-other")), app.ErrInvalidMsg,
			[]string{`for chain "` + apptest.ChainID + `"`, "another chain's", what}},
		{"possession of 63 bytes", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, y.Possession(apptest.ChainID)[:63]), app.ErrInvalidMsg,
			[]string{"validator possession (an ed25519 signature) must be 64 bytes, got 63"}},
		{"possession of 65 bytes", w.regA, apptest.SetValidatorPowerWith(y.SignPub(), 5, append(y.Possession(apptest.ChainID), 0)), app.ErrInvalidMsg,
			[]string{"must be 64 bytes, got 65"}},
		{"raise an existing validator without a possession", w.regA, apptest.SetValidatorPower(v0.SignPub(), 11), nil, nil},
		{"remove an existing validator without a possession", w.regA, apptest.SetValidatorPower(v3.SignPub(), 0), nil, nil},
		{"raise an existing validator with its possession", w.regA, apptest.AddValidator(v0, 12), nil, nil},
		{"raise an existing validator with another key's possession", w.regA, apptest.SetValidatorPowerWith(v0.SignPub(), 12, y.Possession(apptest.ChainID)), app.ErrInvalidMsg,
			[]string{"is not a signature by validator key " + app.ValidatorKeyText(v0.SignPub())}},
		{"remove an existing validator with another chain's possession", w.regA, apptest.SetValidatorPowerWith(v3.SignPub(), 0, v3.Possession("emrchain-other")), app.ErrInvalidMsg,
			[]string{"another chain's"}},
	}
	for _, tc := range cases {
		tx := c.Tx(tc.signer, tc.msg)
		ruleCheck(t, tc.name+" (CheckTx)", c.App.CheckTx(tx, false), tc.want, tc.log...)
		ruleCheck(t, tc.name+" (FinalizeBlock)", c.Block(tx)[0], tc.want, tc.log...)
	}

	// The proposal keeps the possession, and once approved adds the key.
	p := ruleProposal(c, 1).Proposal
	if set := p.Change.GetSetValidatorPower(); !bytes.Equal(set.GetPubKey(), y.SignPub()) || !bytes.Equal(set.GetPossession(), y.Possession(apptest.ChainID)) {
		t.Fatalf("proposal 1 = %v, want y's addition with its possession", p.Change)
	}
	c.Must(w.regB, apptest.Approve(1))
	if res := c.Must(w.regR, apptest.Approve(1)); len(res.ValidatorUpdates) != 1 || !bytes.Equal(res.ValidatorUpdates[0].PubKey, y.SignPub()) {
		t.Fatalf("approving the addition: validator updates %v", res.ValidatorUpdates)
	}
}

// TestValidatorPossessionSignBytes: the sign bytes are fixed (a node and
// the chain must agree byte for byte) and bind the chain id and the key.
func TestValidatorPossessionSignBytes(t *testing.T) {
	key := apptest.Validator(0).SignPub()
	want := append([]byte("emrchain/v1/validator-possession\x00emrchain-test\x00"), key...)
	if got := app.ValidatorPossessionSignBytes(apptest.ChainID, key); !bytes.Equal(got, want) {
		t.Fatalf("sign bytes %q, want %q", got, want)
	}
	v := apptest.Validator(0)
	for _, tc := range []struct {
		name       string
		chainID    string
		key, proof []byte
		ok         bool
	}{
		{"its own", apptest.ChainID, key, v.Possession(apptest.ChainID), true},
		{"another chain's", "emrchain-test2", key, v.Possession(apptest.ChainID), false},
		{"another key", apptest.ChainID, apptest.Validator(1).SignPub(), v.Possession(apptest.ChainID), false},
		{"empty", apptest.ChainID, key, nil, false},
		{"short key", apptest.ChainID, key[:31], v.Possession(apptest.ChainID), false},
	} {
		if got := app.VerifyValidatorPossession(tc.chainID, tc.key, tc.proof); got != tc.ok {
			t.Errorf("%s: verifies %v, want %v", tc.name, got, tc.ok)
		}
	}
}
